"""slmprof's exceptions. Messages name the file, key, tensor or value and what is wrong.

Each error says what kind of failure it is; `cli.main` turns that kind into the exit code (the
only place exit codes are chosen) and prints the message as one line, without a traceback.
"""


class SlmprofError(Exception):
    """Base of every error slmprof raises on purpose."""


class UsageError(SlmprofError, ValueError):
    """A bad command-line argument or combination of arguments; the message names the option."""


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


class OutputError(SlmprofError, OSError):
    """An output file that cannot be written; the message names the path the user gave."""


class CommandNotStarted(SlmprofError, OSError):
    """A command `stat` was asked to run could not be started (not found, not executable)."""

    def __init__(self, message, errno_):
        super().__init__(message)
        self.errno = errno_


class CheckFailed(SlmprofError):
    """The command ran and wrote its results, and what it checked did not hold (validate found
    a wrong kernel, no backend could run): the run failed, not the arguments."""
