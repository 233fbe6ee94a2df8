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

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from balgrad.atomic import atomic_open


class CacheWarning(RuntimeWarning):
    """A cache entry was unusable (a miss), or a cache folder could not be written."""


def cache_warning(message: str, stacklevel: int = 2) -> None:
    """Warn (a ``CacheWarning``) about a cache.

    Args:
        message: The warning.
        stacklevel: As ``warnings.warn``'s, counted from the caller.
    """
    warnings.warn(message, CacheWarning, stacklevel=stacklevel + 1)


def atomic_write(target: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(file)`` into a temporary file in ``target``'s folder, renamed over
    ``target`` once complete (:mod:`balgrad.atomic`, as every file balgrad writes); on any
    failure the temporary file is removed and the error raised.

    Args:
        target: The file.
        write: Writes the content to an open binary file.
    """
    with atomic_open(target, "wb") as f:
        write(f)


class CacheWriter:
    """Writes the entries of one cache under ``root``. The first write that fails (any
    ``OSError``: read-only, no space, ``root`` is a file, ...) gives one warning naming
    the folder and the error; later writes are skipped, so the run keeps its results in
    memory instead of failing or warning once per entry.

    Args:
        root: The cache's folder.
        what: The cache's name, for the warning.
    """

    def __init__(self, root: str | os.PathLike[str], what: str) -> None:
        self.root = Path(root)
        self.what = what  # "feature cache", "digits cache", ... for the warning
        self.failed: OSError | None = None

    @property
    def writable(self) -> bool:
        """Whether no write has failed yet."""
        return self.failed is None

    def write(self, path: Path, write: Callable[[IO[bytes]], Any]) -> bool:
        """Write ``path`` (under ``root``) atomically; False when it was not written.

        Args:
            path: The entry's file.
            write: Writes the content to an open binary file.

        Returns:
            Whether it was written.
        """
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


#: the key of the content parts a generated ``.npz`` records (checked when it is read)
NPZ_META = "meta"


def cached_npz_arrays(
    name: str,
    config: Any,
    seed: int,
    memory: dict[str, dict[str, Any]],
    generate: Callable[[], dict[str, Any]],
    read: Callable[[Path], dict[str, Any]],
) -> dict[str, Any]:
    """A built-in dataset's generated arrays: from ``memory`` (the last four), from
    ``<config.cache_dir>/<name>-<key>.npz`` (``read`` checks it against ``config``; an
    unreadable or mismatched file is a miss with a warning and is overwritten) or from
    ``generate()`` (a cache folder that cannot be written: one warning, memory only).
    ``config`` has ``content_key(seed)``, ``content_parts(seed)`` and ``cache_dir``.

    Args:
        name: The dataset.
        config: Its configuration.
        seed: The generation seed.
        memory: The in-process cache (the last four entries).
        generate: Builds the arrays.
        read: Reads a file, checked against ``config``.

    Returns:
        The arrays.
    """
    key = config.content_key(seed)
    if key in memory:
        return memory[key]
    path = Path(config.cache_dir) / f"{name}-{key}.npz" if config.cache_dir else None
    arrays = None
    # os.path.isfile, not Path.is_file: a path over PATH_MAX is a miss, not an OSError
    if path is not None and os.path.isfile(path):
        try:
            arrays = read(path)
        except Exception as exc:  # zip, zlib, numpy or content errors: all a miss
            cache_warning(
                f"{name} cache {path} is unusable ({type(exc).__name__}: {exc}); "
                "generating the data again and overwriting it",
                stacklevel=5,
            )
    if arrays is None:
        arrays = generate()
        if path is not None:
            import numpy as np

            meta = np.array(json.dumps(config.content_parts(seed), sort_keys=True))
            CacheWriter(path.parent, f"{name} cache (cache_dir)").write(
                path, lambda f: np.savez_compressed(f, **arrays, **{NPZ_META: meta})
            )
    if len(memory) >= 4:
        memory.pop(next(iter(memory)))
    memory[key] = arrays
    return arrays


def load_npz_checked(path: Path, want: dict[str, Any], old_hint: str = "") -> dict[str, Any]:
    """The arrays of a generated ``.npz`` whose recorded content parts equal ``want``
    (the meta entry removed); ``ValueError`` naming the difference otherwise. Read with
    the checked decoder (:func:`~balgrad.data.decoders._npy.decode_npz`: every member's
    declared size and shape checked before it is allocated, nothing unpickled), which
    raises :class:`DataError`; the caller treats either as a cache miss.

    Args:
        path: The ``.npz`` file.
        want: The content parts the file must record.
        old_hint: Added to the message of a file of an older format.

    Returns:
        The arrays.

    Raises:
        ValueError: The recorded parts differ.
        DataError: The file is damaged.
    """
    from balgrad.data.decoders._npy import decode_npz

    # numbers, booleans and the text of the meta entry and the generated texts
    arrays = decode_npz(path, what="cache file", kinds="biufU", finite=False)
    meta = arrays.pop(NPZ_META, None)
    if meta is None or meta.shape != () or meta.dtype.kind != "U":
        raise ValueError(f"it records no content parts{old_hint}")
    if json.loads(str(meta)) != json.loads(json.dumps(want)):
        raise ValueError(
            f"it was generated for {str(meta)}, not {json.dumps(want, sort_keys=True)}"
        )
    return arrays


def check_array_layout(
    arrays: dict[str, Any], expected: dict[str, tuple[str, int | None, tuple[int, ...]]]
) -> None:
    """``ValueError`` unless ``arrays`` holds exactly the names of ``expected``, each of
    its (dtype kind, itemsize or None for any, shape)."""
    if set(arrays) != set(expected):
        raise ValueError(f"it holds arrays {sorted(arrays)}, not {sorted(expected)}")
    for name, (kind, itemsize, shape) in expected.items():
        a = arrays[name]
        if a.dtype.kind != kind or (itemsize and a.dtype.itemsize != itemsize) or a.shape != shape:
            raise ValueError(f"{name} is {a.dtype}{list(a.shape)}, expected shape {list(shape)}")
