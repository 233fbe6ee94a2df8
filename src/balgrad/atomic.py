"""Atomic file writes: every file balgrad writes is either its old or its new complete
version, never a cut-off one.

The content goes to a temporary file in the target's folder (so the rename never
crosses file systems), is synced to disk, then renamed over the target. A failed write
(a full disk, an exception in the writer) removes the temporary and leaves the target
as it was, and raises :class:`~balgrad.errors.WriteError` naming the target and the
system's reason (so the CLI prints one ``balgrad: error:`` line). Append-only logs (``metrics.jsonl``) are the exception: they append, and a
resume cuts them back to the checkpoint (:mod:`balgrad.train._metrics_log`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from balgrad.errors import WriteError

#: temporaries are named ``.<target name>.<random>.tmp``
TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; written files get the permissions open() would give them
_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write the whole of ``path`` to; renamed over ``path`` when the
    block ends normally, removed when it raises.

    Args:
        path: The file.

    Returns:
        A context manager giving the temporary path.

    Raises:
        WriteError: The temporary cannot be created or renamed.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise WriteError(path, err) from err
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _MODE)
        _fsync(tmp)  # a full disk may only tell here (delayed allocation, NFS)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(path, err) from err
        raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator:
    """``open(path, mode)`` whose content replaces ``path`` only once it is complete.

    Args:
        path: The file.
        mode: ``open``'s mode (a write mode).
        **kwargs: ``open``'s other arguments (``encoding``...).

    Returns:
        A context manager giving the open file.

    Raises:
        WriteError: The file cannot be written.
    """
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, as UTF-8.

    Args:
        path: The file.
        text: Its content.

    Raises:
        WriteError: The file cannot be written.
    """
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: The file.
        data: Its content.

    Raises:
        WriteError: The file cannot be written.
    """
    with atomic_open(path, "wb") as f:
        f.write(data)


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporaries of ``path`` that a killed process left behind.

    Args:
        path: The file.

    Returns:
        Their paths, sorted.
    """
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """The rename itself reaches the disk (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
