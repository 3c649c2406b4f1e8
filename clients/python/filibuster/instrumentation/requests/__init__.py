from filibuster.instrumentation import NoOpInstrumentor


class RequestsInstrumentor(NoOpInstrumentor):
    """The original tool's requests instrumentation: a no-op here."""
