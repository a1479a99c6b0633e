"""slmprof: how fast a small language model runs here, where each layer's time goes, and
whether each layer waits on memory or on arithmetic."""

__version__ = "0.1.0"

from slmprof.errors import (  # noqa: F401
    ContextOverflowError,
    ModelFileError,
    ModelNotFoundError,
    ShapeError,
    SlmprofError,
    UnavailableError,
    UnsupportedError,
)
