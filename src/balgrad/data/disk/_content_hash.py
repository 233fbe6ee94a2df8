"""Content hashes: the one a loader computes from its index files and content options
(it goes into the dataset's fingerprint and so into feature-cache keys: keep it stable),
and :class:`FileHashes`, the content of the files a dataset decodes (its images).

The fingerprint is cheap: index bytes, parsed records and image file *sizes*, so a file
replaced by another of the same size keeps it. The feature cache therefore also keys on
:meth:`FileHashes.digest` of the dataset's ``content_files()``: a sha256 over every
file's bytes. So that an unchanged dataset is not re-read every run, each file's sha256
is remembered in a JSON index in the cache folder under its stat key (size, mtime_ns,
ctime_ns, inode); a file whose stat key changed (rewritten, touched, replaced, copied)
is hashed again. A file is only remembered when its stat key is the same before and
after hashing it, so a file written while it is read is hashed again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from balgrad.data._cache_files import CacheWriter, cache_warning


def hash_bytes(*chunks: bytes | str) -> str:
    """sha256 over ``chunks`` (strings as UTF-8), each followed by a NUL so that the chunks'
    boundaries count.

    Args:
        *chunks: Bytes or strings.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for c in chunks:
        h.update(c.encode("utf-8") if isinstance(c, str) else c)
        h.update(b"\0")
    return h.hexdigest()


def options_hash(options: dict[str, Any]) -> str:
    """A dataset's options as a canonical string (sorted JSON) for its fingerprint.

    Args:
        options: The options.

    Returns:
        The string.
    """
    return json.dumps(options, sort_keys=True, default=str)


_INDEX_VERSION = 1
_CHUNK = 1 << 20


def _stat_key(path: Path) -> list[int]:
    st = os.stat(path)  # followed: the content is what a reader of the path gets
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _valid_entry(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 5
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value[:4])
        and isinstance(value[4], str)
        and len(value[4]) == 64
        and all(c in "0123456789abcdef" for c in value[4])
    )


class FileHashes:
    """The sha256 of files' content, remembered by stat key in ``folder`` (one JSON index
    per folder of files; ``folder=None``: in memory only).

    Writes go through ``writer`` (a read-only cache folder then costs one warning and a
    re-hash next run). A damaged index is a miss with a warning: its files are hashed
    again and the index is rewritten.

    Args:
        folder: Where the indexes live, or None for memory only.
        writer: The cache writer the indexes are written through.
    """

    def __init__(
        self, folder: str | os.PathLike[str] | None, writer: CacheWriter | None = None
    ) -> None:
        self.folder = None if folder is None else Path(folder)
        self.writer = writer
        self._indexes: dict[str, dict[str, list]] = {}  # by files' common folder
        self.hashed = 0  # how many files were read and hashed (not found by stat key)

    def digest(self, paths: Sequence[Path]) -> str:
        """sha256 over the path (relative to the files' common folder) and content sha256
        of every file, in order. A file that cannot be read goes in as its error, so the
        digest still differs from the readable file's (reading it later raises).

        Args:
            paths: The files, in order.

        Returns:
            The hex digest.
        """
        if not paths:
            return hash_bytes("no files")
        absolute = [os.path.abspath(p) for p in paths]
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
        files = self._index(common)
        rels = [os.path.relpath(p, common) for p in absolute]

        def lookup(i: int) -> tuple[str, bool]:
            """The file's sha256 and whether the index changed."""
            rel, path = rels[i], Path(absolute[i])
            try:
                before = _stat_key(path)
                known = files.get(rel)
                if known is not None and known[:4] == before:
                    return known[4], False
                sha = _sha256_file(path)
                if _stat_key(path) == before:
                    files[rel] = [*before, sha]
                else:  # written while read: hash it again next time
                    files.pop(rel, None)
                return sha, True
            except OSError as e:
                return f"!{type(e).__name__}:{e.errno}", files.pop(rel, None) is not None

        workers = min(8, (os.cpu_count() or 1) * 2)
        if len(paths) > 64 and workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                found = list(pool.map(lookup, range(len(paths))))
        else:
            found = [lookup(i) for i in range(len(paths))]
        shas = [sha for sha, _ in found]
        self.hashed += sum(1 for sha, changed in found if changed and not sha.startswith("!"))
        if any(changed for _, changed in found):
            self._save(common, files)
        h = hashlib.sha256()
        for rel, sha in zip(rels, shas):
            h.update(f"{Path(rel).as_posix()}\0{sha}\n".encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    # -- the index ----------------------------------------------------------------
    def _index_path(self, common: str) -> Path | None:
        if self.folder is None:
            return None
        name = hashlib.sha256(common.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return self.folder / f"{name}.json"

    def _index(self, common: str) -> dict[str, list]:
        if common not in self._indexes:
            self._indexes[common] = self._read(common)
        return self._indexes[common]

    def _read(self, common: str) -> dict[str, list]:
        path = self._index_path(common)
        if path is None or not os.path.isfile(path):  # too long a path: a miss, no OSError
            return {}
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or data.get("version") != _INDEX_VERSION:
                raise ValueError(f"not a version-{_INDEX_VERSION} file-hash index")
            if data.get("folder") != common:
                raise ValueError(f"it indexes {data.get('folder')!r}, not {common!r}")
            files = data.get("files")
            if not isinstance(files, dict) or not all(map(_valid_entry, files.values())):
                raise ValueError(
                    "its 'files' entries are not [size, mtime_ns, ctime_ns, inode, sha256]"
                )
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError included
            cache_warning(
                f"file-hash index {path} is unusable ({type(e).__name__}: {e}); hashing the "
                "files again and rewriting it",
                stacklevel=5,
            )
            return {}
        return files

    def _save(self, common: str, files: dict[str, list]) -> None:
        path = self._index_path(common)
        if path is None or self.writer is None:
            return
        blob = json.dumps(
            {"version": _INDEX_VERSION, "folder": common, "files": files},
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8", "surrogatepass")
        self.writer.write(path, lambda f: f.write(blob))
