"""slmprof's exceptions. Messages name the file, key, tensor or value and what is wrong."""


class SlmprofError(Exception):
    """Base of every error slmprof raises on purpose."""


class ModelFileError(SlmprofError, ValueError):
    """A model file is corrupt, truncated or inconsistent; the message names file and field."""


class UnsupportedError(SlmprofError, ValueError):
    """An architecture, tensor type or feature that slmprof does not support."""


class ShapeError(SlmprofError, ValueError):
    """Shapes that do not agree."""


class NumericalError(SlmprofError, ArithmeticError):
    """A computation gave NaN or infinity where a number is needed (corrupt weights, overflow)."""


class ContextOverflowError(SlmprofError, ValueError):
    """A prompt or generation longer than the context the model was loaded with."""


class UnavailableError(SlmprofError):
    """Something this machine cannot provide (a PMU, a sensor, a kernel path); says why."""


class ModelNotFoundError(SlmprofError, LookupError):
    """A model name that the registry cannot resolve, or a download that cannot be made."""
