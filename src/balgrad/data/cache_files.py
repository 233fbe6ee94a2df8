"""The files of balgrad's caches: generated data (digits ``.npz``), frozen-backbone
features and the file-hash index behind them.

A cache is an optimisation, never a source of truth, so it fails soft in both directions:

- a damaged or mismatched entry is a miss with a :class:`CacheWarning` (the caller then
  recomputes it and overwrites the entry);
- a cache folder that cannot be written (read-only, full, a file, ...) is reported with
  one :class:`CacheWarning` by its :class:`CacheWriter`, which then stops trying, and the
  run goes on with what it computed in memory.

Writes are atomic (:func:`atomic_write`), so a crash or a concurrent writer never leaves
a half-written entry under an entry's name.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from balgrad.atomic import atomic_open


class CacheWarning(RuntimeWarning):
    """A cache entry was unusable (a miss), or a cache folder could not be written."""


def cache_warning(message: str, stacklevel: int = 2) -> None:
    warnings.warn(message, CacheWarning, stacklevel=stacklevel + 1)


def atomic_write(target: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(file)`` into a temporary file in ``target``'s folder, renamed over
    ``target`` once complete (:mod:`balgrad.atomic`, as every file balgrad writes); on any
    failure the temporary file is removed and the error raised."""
    with atomic_open(target, "wb") as f:
        write(f)


class CacheWriter:
    """Writes the entries of one cache under ``root``. The first write that fails (any
    ``OSError``: read-only, no space, ``root`` is a file, ...) gives one warning naming
    the folder and the error; later writes are skipped, so the run keeps its results in
    memory instead of failing or warning once per entry."""

    def __init__(self, root: str | os.PathLike[str], what: str) -> None:
        self.root = Path(root)
        self.what = what  # "feature cache", "digits cache", ... for the warning
        self.failed: OSError | None = None

    @property
    def writable(self) -> bool:
        return self.failed is None

    def write(self, path: Path, write: Callable[[IO[bytes]], Any]) -> bool:
        """Write ``path`` (under ``root``) atomically; False when it was not written."""
        if self.failed is not None:
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, write)
        except OSError as e:
            self.failed = e
            cache_warning(
                f"{self.what} {self.root} cannot be written ({type(e).__name__}: {e}); "
                "this run keeps its results in memory and writes no more cache files "
                "(free space or point cache_dir at a writable folder to keep them)",
                stacklevel=3,
            )
            return False
        return True
