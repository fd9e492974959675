"""Errors lowshot raises for bad input. Each message names what was wrong, where, and the fix."""


class LowshotError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class DataError(LowshotError, ValueError):
    """A data set, file, folder or field is unusable as given."""


class BackboneError(LowshotError, ValueError):
    """A backbone name, checkpoint or weights file is unusable."""


class RunError(LowshotError, RuntimeError):
    """A run folder is missing, incomplete or from an incompatible version."""


class ConfigError(LowshotError, ValueError):
    """A method name, hyper-parameter or option value is not valid."""


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception (the CLI installs the handler), so that ``finally`` blocks,
    atomic writes and checkpoints finish as they do for Ctrl-C; the CLI exits 143."""

    received = False
