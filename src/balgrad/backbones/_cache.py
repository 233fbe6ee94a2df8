"""A disk cache of frozen-backbone features.

A frozen backbone maps the same input to the same features every epoch, so its outputs on
a dataset split can be computed once and reused (by later epochs, other strategies and
other runs). The key is a sha256 over everything the features depend on: the dataset
fingerprint, the split, the encoder's ``identity``, the impairment spec, ... and, for a
dataset that decodes files (a disk dataset's images), the sha256 of those files'
content (:meth:`FeatureCache.content_digest`, see
:mod:`balgrad.data.disk._content_hash` for how unchanged files are not re-read).

Entries are safetensors files (the features under ``"features"``; the request's metadata
as JSON in the safetensors metadata, with the shape, dtype and a sha256 of the features)
plus a human-readable ``<key>.json`` sidecar. Every read is checked: a file that does
not parse, whose features do not match their sha256, or whose metadata or shape differs
from the request (an entry stored under another entry's name) is a miss with a
:class:`~balgrad.data._cache_files.CacheWarning`, recomputed and overwritten. Writes are
atomic (temporary file, fsync, rename), so concurrent writers (data-parallel ranks) and
interrupted runs never leave a half-written entry; a cache folder that cannot be written
costs one warning and the run keeps its features in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from balgrad.data._cache_files import CacheWriter, atomic_write, cache_warning
from balgrad.data.disk._content_hash import FileHashes

log = logging.getLogger("balgrad.cache")

_TENSOR_NAME = "features"
_META_NAME = "balgrad_meta"


def _canonical(value: Any, where: str) -> Any:
    """A JSON-stable form of a key part; refuses objects whose str() could vary by run."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {
            str(k): _canonical(v, f"{where}.{k}")
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
        }
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v, where) for v in value)
    raise TypeError(
        f"cache key part {where!r} has type {type(value).__name__}; use str, int, float, bool, "
        "None, a path, or lists / dicts of those (e.g. the spec's string form)"
    )


class FeatureCache:
    """Features on disk under ``root``, keyed by :meth:`key`.

    ``hits``, ``misses`` and ``corrupt`` (unreadable or mismatched entries, counted among
    the misses) count lookups since construction. (For no disk cache at all, give the
    pipeline ``cache=None``.)

    Args:
        root: The cache's folder (created on the first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.writer = CacheWriter(self.root, "feature cache")
        self.file_hashes = FileHashes(self.root / "files", self.writer)
        self._digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # keys --------------------------------------------------------------------

    @staticmethod
    def key(**parts: Any) -> str:
        """sha256 (hex) over the sorted key parts; order of arguments does not matter.

        Args:
            **parts: What identifies the features (backbone, options, dataset, split...):
                JSON-serialisable values.

        Returns:
            The key.

        Raises:
            ValueError: No parts.
        """
        if not parts:
            raise ValueError("FeatureCache.key needs at least one part")
        blob = json.dumps(_canonical(parts, "key"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        """The file of a key's entry.

        Args:
            key: A :meth:`key`.

        Returns:
            ``root/<first two hex digits>/<key>.safetensors``.

        Raises:
            ValueError: ``key`` is not a sha256 hex string.
        """
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key (expected a sha256 hex string): {key!r}")
        return self.root / key[:2] / f"{key}.safetensors"

    def content_digest(self, dataset: Any) -> str | None:
        """sha256 over the content of ``dataset.content_files()`` (its images), or None
        when it has none (its fingerprint alone identifies its content). Remembered per
        dataset object; the files' hashes are remembered across runs by stat key.

        Args:
            dataset: A dataset (its ``content_files()``, if any).

        Returns:
            The hex digest, or None.
        """
        files_of = getattr(dataset, "content_files", None)
        files = files_of() if callable(files_of) else None
        if files is None:
            return None
        fingerprint = getattr(dataset, "fingerprint", None)
        try:
            known = self._digests[dataset]
            if known[0] == fingerprint:  # the same records (validate() may drop some)
                return known[1]
        except (KeyError, TypeError):  # TypeError: not weakly referenceable / hashable
            pass
        digest = self.file_hashes.digest(files)
        with contextlib.suppress(TypeError):
            self._digests[dataset] = (fingerprint, digest)
        return digest

    # read / write ------------------------------------------------------------

    def _load(self, key: str, expect: Mapping[str, Any] | None) -> torch.Tensor | None:
        p = self.path(key)
        if not os.path.isfile(p):  # a path over PATH_MAX is a miss (Path.is_file raises)
            return None
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get(_META_NAME, "{}"))
                features = f.get_tensor(_TENSOR_NAME)
            if not isinstance(meta, dict):
                raise ValueError(f"its metadata is a JSON {type(meta).__name__}, not an object")
        except Exception as e:  # any unreadable file is a miss, never a crash
            return self._bad(p, f"is unreadable ({type(e).__name__}: {e})")
        stored_sha = meta.get("features_sha256")
        if stored_sha is not None and stored_sha != _sha256(features):
            return self._bad(p, "is damaged (its features do not match their sha256)")
        problem = _mismatch(meta, features, expect or {})
        if problem is not None:
            return self._bad(p, f"was stored for another request ({problem})")
        log.info("cache hit %s (%s)", key, _summary(meta, features))
        return features

    def _bad(self, path: Path, why: str) -> None:
        self.corrupt += 1
        cache_warning(f"feature cache file {path} {why}; treating it as a miss", stacklevel=4)
        return None

    def get(self, key: str, expect: Mapping[str, Any] | None = None) -> torch.Tensor | None:
        """The cached features, or None on a miss (absent, unreadable, damaged, or with
        metadata that differs from ``expect``: every item of ``expect`` must equal the
        stored one, and its ``shape``, if given, the features' shape).

        Args:
            key: A :meth:`key`.
            expect: Metadata the entry must carry.

        Returns:
            The features, or None.
        """
        features = self._load(key, expect)
        if features is None:
            self.misses += 1
            log.debug("cache miss %s", key)
            return None
        self.hits += 1
        return features

    def put(self, key: str, features: torch.Tensor, meta: Mapping[str, Any] | None = None) -> Path:
        """Store ``features`` (detached, CPU, contiguous) with ``meta``; atomic. The stored
        metadata adds the features' shape, dtype and sha256. Raises ``OSError`` when the
        cache cannot be written (see :meth:`get_or_compute`, which does not).

        Args:
            key: A :meth:`key`.
            features: The features.
            meta: Metadata to store.

        Returns:
            The entry's path.
        """
        p, blob, sidecar = self._entry(key, features, meta)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, lambda f: f.write(blob))
        atomic_write(p.with_suffix(".json"), lambda f: f.write(sidecar))
        return p

    def _entry(
        self, key: str, features: torch.Tensor, meta: Mapping[str, Any] | None
    ) -> tuple[Path, bytes, bytes]:
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a tensor, got {type(features).__name__}")
        p = self.path(key)
        tensor = features.detach().to("cpu").contiguous()
        meta_dict = dict(meta or {})
        meta_dict["shape"] = list(tensor.shape)
        meta_dict["dtype"] = _dtype(tensor)
        meta_dict["features_sha256"] = _sha256(tensor)
        meta_json = json.dumps(meta_dict, sort_keys=True, default=str)
        blob = save({_TENSOR_NAME: tensor}, metadata={_META_NAME: meta_json})
        log.debug("cache put %s (%s)", key, _summary(meta_dict, tensor))
        return p, blob, (meta_json + "\n").encode("utf-8")

    def get_or_compute(
        self, key: str, compute: Callable[[], torch.Tensor], meta: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """``get(key, expect=meta)``, or ``compute()`` then store it with ``meta`` on a miss.
        A cache that cannot be written warns once and is not written again.

        Args:
            key: A :meth:`key`.
            compute: Computes the features on a miss.
            meta: Metadata stored with them and expected of a hit.

        Returns:
            The features.
        """
        cached = self.get(key, expect=meta)
        if cached is not None:
            return cached
        features = compute()
        if self.writer.writable:
            p, blob, sidecar = self._entry(key, features, meta)
            if self.writer.write(p, lambda f: f.write(blob)):
                self.writer.write(p.with_suffix(".json"), lambda f: f.write(sidecar))
        return features

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r}, hits={self.hits}, misses={self.misses})"


def _dtype(features: torch.Tensor) -> str:
    return str(features.dtype).replace("torch.", "")


def _sha256(features: torch.Tensor) -> str:
    raw = features.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(raw.numpy()).hexdigest()


def _jsonable(value: Any) -> Any:
    """``value`` as the stored metadata holds it (after its JSON round trip)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _mismatch(stored: Mapping[str, Any], features: torch.Tensor, expect: Mapping[str, Any]):
    """The first way the stored entry differs from the request ``expect``, or None."""
    if features.ndim == 0:
        return "a 0-d tensor"
    for k, want in sorted(_jsonable(dict(expect)).items()):
        if k in ("shape", "dtype"):  # of the tensor itself, not what its metadata says
            have = list(features.shape) if k == "shape" else _dtype(features)
            if have != want:
                return f"{k} {have}, not {want}"
            continue
        if k not in stored:
            return f"no {k!r} in its metadata"
        if stored[k] != want:
            return f"{k} {_short(stored[k])}, not {_short(want)}"
    return None


def _short(value: Any) -> str:
    v = json.dumps(value)
    return v if len(v) <= 80 else v[:77] + "..."


def _summary(meta: Mapping[str, Any], features: torch.Tensor) -> str:
    parts = [f"shape={list(features.shape)}"]
    for k in sorted(meta):
        if k in ("shape", "dtype", "features_sha256"):
            continue
        v = str(meta[k])
        parts.append(f"{k}={v if len(v) <= 60 else v[:57] + '...'}")
    return ", ".join(parts)
