"""One writer per run folder: an OS file lock, and a record naming its holder.

Two files in the run folder:

- ``.run.flock``: held with an exclusive ``flock`` through :mod:`filelock` while a
  process writes the folder. The kernel drops it when the process ends, however it ends
  (SIGKILL, an OOM kill, a container stopped), so a lock is never left stale, and no pid
  has to be guessed alive or dead (a pid can be reused, and another container's pids are
  not this one's). A release removes the file; one that a killed process left is empty
  and means nothing.
- ``run.lock``: while the lock is held, a JSON object naming its holder, so that a
  refused process can say who holds the folder::

      {"pid": 12345, "host": "node-3", "started": "2025-06-01T12:00:00+00:00",
       "command": "balgrad compare --resume ..."}

  It is removed on release (exit, errors, Ctrl-C, interpreter exit). One left behind
  means its process died holding the folder: the next process says so with a warning
  and takes over, since the free ``flock`` proves that process gone. Except a record
  from another host: some shared file systems do not carry ``flock`` between machines,
  so that process may be alive; it is never taken over (delete ``run.lock`` when you
  know it is gone). A record written by balgrad before 0.2 (which had no ``flock``) is
  read the same way.

Under torchrun only rank 0, the one process that writes the run folder, takes it.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import socket
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from balgrad.atomic import write_text
from balgrad.errors import BalgradError

log = logging.getLogger("balgrad")

LOCK_NAME = "run.lock"
FLOCK_NAME = ".run.flock"


class RunFolderLocked(BalgradError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder for the block.

    Args:
        run_dir: The run folder.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.record: dict | None = None
        self._flock = FileLock(self.path.parent / FLOCK_NAME, timeout=0, thread_local=False)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        """Whether this lock holds the folder."""
        return self.record is not None

    def acquire(self) -> None:
        """Take the run folder (a no-op when held already).

        Raises:
            RunFolderLocked: Another live process holds it (the message names it).
        """
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._flock.acquire()
        except Timeout:
            raise RunFolderLocked(self._locked_message(self._read_holder())) from None
        try:
            self._take_over_leftover()
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
            }
            write_text(self.path, json.dumps(record))  # WriteError names run.lock
        except BaseException:
            self._flock.release()
            raise
        self.record = record
        atexit.register(self.release)

    def release(self) -> None:
        """Remove the holder record and drop the lock, if this object holds it."""
        if not self.held:
            return
        self.path.unlink(missing_ok=True)
        # removed while still held: a process that opens it after this creates a new file,
        # and one that opened the old file cannot take it (filelock refuses a lock on an
        # unlinked file), so no two processes ever hold the folder at once
        (self.path.parent / FLOCK_NAME).unlink(missing_ok=True)
        self._flock.release()
        self.record = None
        atexit.unregister(self.release)

    def _take_over_leftover(self) -> None:
        """A record on disk while the flock is free: its process ended holding the folder."""
        if not self.path.exists():
            return
        holder = self._read_holder()
        if holder is not None and holder.get("host") != socket.gethostname():
            raise RunFolderLocked(self._locked_message(holder))
        log.warning(
            "%s: taking over a stale lock (%s); its process is no longer running",
            self.path,
            _describe(holder) if holder else "unreadable",
        )

    def _read_holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # not written yet, or gone
        return holder if isinstance(holder, dict) else None

    def _locked_message(self, holder: dict | None) -> str:
        who = _describe(holder) if holder else "its record is not written yet"
        message = (
            f"run folder {self.path.parent} is in use by another balgrad process ({who}); "
            "wait for it to finish, or stop it"
        )
        if holder is not None and holder.get("host") != socket.gethostname():
            message += f". If no such process exists any more, delete {self.path}"
        return message


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
        f", command: {holder.get('command', '?')}"
    )
