"""One writer per run folder: ``<run folder>/run.lock``.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic: of two processes, exactly
one creates it) and holds one JSON object naming its holder::

    {"pid": 12345, "host": "node-3", "started": "2025-06-01T12:00:00+00:00",
     "command": "balgrad compare --resume ..."}

A second process gets a :class:`RunFolderLocked` error naming the holder. A lock left by
a process that died without releasing it (SIGKILL, power loss) is *stale*: when its
host is this host and its pid is no longer alive, the next process takes it over with a
warning. A lock from another host cannot be checked and is never taken over. The lock is
released on exit, including on errors, Ctrl-C and interpreter exit (``atexit``). Under
torchrun only rank 0, the one process that writes the run folder, takes it.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import logging
import os
import socket
import sys
from pathlib import Path

from balgrad.errors import BalgradError, WriteError

log = logging.getLogger("balgrad")

LOCK_NAME = "run.lock"


class RunFolderLocked(BalgradError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/run.lock`` for the block."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.record: dict | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self.record is not None

    def acquire(self) -> None:
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
        }
        with _folder_mutex(self.path.parent):  # serialises concurrent stale take-overs
            if not self._create(record):
                holder = self._read_holder()
                if holder is not None and not _is_stale(holder):
                    raise RunFolderLocked(self._locked_message(holder))
                log.warning(
                    "%s: taking over a stale lock (%s); its process is no longer running",
                    self.path,
                    _describe(holder) if holder else "unreadable",
                )
                self.path.unlink(missing_ok=True)
                if not self._create(record):  # pragma: no cover - only without flock
                    raise RunFolderLocked(self._locked_message(self._read_holder() or {}))
        self.record = record
        atexit.register(self.release)

    def release(self) -> None:
        """Remove the lock if this object holds it (and it is still ours on disk)."""
        if not self.held:
            return
        with contextlib.suppress(OSError):
            if self._read_holder() == self.record:
                self.path.unlink()
        self.record = None
        atexit.unregister(self.release)

    def _create(self, record: dict) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:  # a full disk: no half-written lock is left behind
            self.path.unlink(missing_ok=True)
            raise WriteError(self.path, err) from err
        return True

    def _read_holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # gone, or half-written by a process killed in _create
        return holder if isinstance(holder, dict) else None

    def _locked_message(self, holder: dict) -> str:
        return (
            f"run folder {self.path.parent} is in use by another balgrad process "
            f"({_describe(holder)}); wait for it to finish, or stop it. If no such process "
            f"exists any more, delete {self.path}"
        )


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
        f", command: {holder.get('command', '?')}"
    )


def _is_stale(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False  # another machine's process cannot be checked from here
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child that its parent has not reaped yet still answers ``kill(pid, 0)``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


@contextlib.contextmanager
def _folder_mutex(folder: Path):
    """An exclusive ``flock`` on the folder itself, where the platform has one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock
