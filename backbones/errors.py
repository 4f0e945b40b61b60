"""Errors raised by the backbone layer; each message says what, where and how to fix it."""


class BackboneError(ValueError):
    """Base class: a backbone or its weights cannot be built as asked."""


class UnknownBackboneError(BackboneError):
    """A backbone name that is not in the registry."""


class WeightsError(BackboneError):
    """Weights that cannot be found, read or matched to the architecture."""
