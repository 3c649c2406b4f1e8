"""Kept so that services written for the original Filibuster start
unchanged. The agent sees their calls from the kernel: nothing to do here."""


class NoOpInstrumentor:
    def instrument(self, *args, **kwargs):
        pass

    def instrument_app(self, *args, **kwargs):
        pass

    def uninstrument(self, *args, **kwargs):
        pass
