"""Exceptions raised by balgrad. Every message names the option, field, file or line at fault."""


class BalgradError(Exception):
    """Base class of every error balgrad raises on purpose."""


class ConfigError(BalgradError, ValueError):
    """A bad option, config field or command-line flag."""


class DataError(BalgradError, ValueError):
    """A dataset on disk that is missing, malformed or inconsistent (names file and line)."""


class BackboneError(BalgradError, ValueError):
    """A backbone that cannot be resolved or loaded (offline, unknown name, bad checkpoint)."""


class NonFiniteLossError(BalgradError, FloatingPointError):
    """A loss or gradient became NaN or infinite; the message names which one."""


class Interrupted(BalgradError):
    """Ctrl-C: the command stopped; the message says what it saved (the CLI exits 130)."""
