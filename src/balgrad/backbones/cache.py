"""A disk cache of frozen-backbone features.

A frozen backbone maps the same input to the same features every epoch, so its outputs on
a dataset split can be computed once and reused (by later epochs, other strategies and
other runs). The key is a sha256 over everything the features depend on: the dataset
fingerprint, the split, the encoder's ``identity``, the impairment spec, ...

Entries are safetensors files (the features under ``"features"``; the meta dict as JSON
in the safetensors metadata) plus a human-readable ``<key>.json`` sidecar. Writes are
atomic (a temporary file in the same folder, then ``os.replace``), so concurrent writers
(data-parallel ranks) and interrupted runs never leave a half-written entry behind; a file
that is corrupt anyway is reported with a warning and treated as a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

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

    ``hits``, ``misses`` and ``corrupt`` count lookups since construction. (For no disk
    cache at all, give the pipeline ``cache=None``.)
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    # keys --------------------------------------------------------------------

    @staticmethod
    def key(**parts: Any) -> str:
        """sha256 (hex) over the sorted key parts; order of arguments does not matter."""
        if not parts:
            raise ValueError("FeatureCache.key needs at least one part")
        blob = json.dumps(_canonical(parts, "key"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key (expected a sha256 hex string): {key!r}")
        return self.root / key[:2] / f"{key}.safetensors"

    # read / write ------------------------------------------------------------

    def _load(self, key: str) -> tuple[torch.Tensor, dict] | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            tensors = load_file(str(p))
            features = tensors[_TENSOR_NAME]
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                raw = (f.metadata() or {}).get(_META_NAME, "{}")
            meta = json.loads(raw)
        except Exception as e:  # any unreadable file is a miss, never a crash
            self.corrupt += 1
            msg = f"feature cache file {p} is unreadable ({type(e).__name__}: {e}); treating it as a miss"
            log.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            return None
        return features, meta

    def get(self, key: str) -> torch.Tensor | None:
        """The cached features, or None on a miss (absent or corrupt)."""
        found = self._load(key)
        if found is None:
            self.misses += 1
            log.debug("cache miss %s", key)
            return None
        self.hits += 1
        features, meta = found
        log.info("cache hit %s (%s)", key, _summary(meta, features))
        return features

    def put(self, key: str, features: torch.Tensor, meta: Mapping[str, Any] | None = None) -> Path:
        """Store ``features`` (detached, CPU, contiguous) with ``meta``; atomic."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a tensor, got {type(features).__name__}")
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        meta_dict = dict(meta or {})
        meta_dict.setdefault("shape", list(features.shape))
        meta_dict.setdefault("dtype", str(features.dtype).replace("torch.", ""))
        meta_json = json.dumps(meta_dict, sort_keys=True, default=str)
        tensor = features.detach().to("cpu").contiguous()
        _atomic_write(
            p, lambda tmp: save_file({_TENSOR_NAME: tensor}, tmp, metadata={_META_NAME: meta_json})
        )
        sidecar = p.with_suffix(".json")
        _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(meta_json + "\n", encoding="utf-8"))
        log.debug("cache put %s (%s)", key, _summary(meta_dict, tensor))
        return p

    def get_or_compute(
        self, key: str, compute: Callable[[], torch.Tensor], meta: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """``get(key)``, or ``compute()`` then ``put`` it on a miss."""
        cached = self.get(key)
        if cached is not None:
            return cached
        features = compute()
        self.put(key, features, meta)
        return features

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r}, hits={self.hits}, misses={self.misses})"


def _atomic_write(target: Path, write: Callable[[str], Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _summary(meta: Mapping[str, Any], features: torch.Tensor) -> str:
    parts = [f"shape={list(features.shape)}"]
    for k in sorted(meta):
        if k in ("shape", "dtype"):
            continue
        v = str(meta[k])
        parts.append(f"{k}={v if len(v) <= 60 else v[:57] + '...'}")
    return ", ".join(parts)
