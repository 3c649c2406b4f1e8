from filibuster.instrumentation import NoOpInstrumentor


class FlaskInstrumentor(NoOpInstrumentor):
    """The original tool's flask instrumentation: a no-op here."""
