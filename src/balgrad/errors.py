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


class WriteError(BalgradError, OSError):
    """A file balgrad writes could not be written (a full disk, a file-size limit, a
    read-only folder). Names the file and the system's reason; the file's old version,
    if any, is left whole (:mod:`balgrad.atomic`). An ``OSError``, so code that degrades
    on unwritable folders (the caches) still catches it.

    Args:
        path: The file that could not be written.
        err: The ``OSError`` (its errno and reason are kept).
    """

    def __init__(self, path: object, err: OSError) -> None:
        reason = err.strerror or str(err) or type(err).__name__
        super().__init__(err.errno, f"cannot write {path}: {reason}")
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror
