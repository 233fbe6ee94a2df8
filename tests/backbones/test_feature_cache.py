"""The frozen-feature cache: keys, round trips, corruption, counts, logging."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from balgrad.backbones.cache import FeatureCache, encode_all
from balgrad.backbones.small import SmallCNN

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
    assert cache.meta(key)["n"] == 5 and cache.meta(key)["shape"] == [5, 8]
    assert cache.stats() == {"hits": 1, "misses": 1, "corrupt": 0}
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


def test_disabled_cache_always_misses(tmp_path):
    cache = FeatureCache(tmp_path, enabled=False)
    key = cache.key(**PARTS)
    assert cache.put(key, torch.ones(1), {}) is None
    assert cache.get(key) is None and not any(tmp_path.iterdir())


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


def test_encode_all_runs_in_eval_without_grad_and_restores_mode():
    torch.manual_seed(0)
    enc = SmallCNN(out_dim=4, width=8).train()
    batches = [torch.randn(3, 3, 32, 32), torch.randn(2, 3, 32, 32)]
    feats = encode_all(enc, batches)
    assert feats.shape == (5, 4) and not feats.requires_grad
    assert enc.training  # mode restored
    enc.eval()
    with torch.no_grad():
        assert torch.allclose(feats[:3], enc(batches[0]))
    assert encode_all(enc, []).shape == (0, 4)
