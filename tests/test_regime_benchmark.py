"""benchmarks/regime.py: the criteria of docs/default-benchmark.md on measured numbers,
and a tiny end-to-end check of the trained-alone models."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "regime.py"


@pytest.fixture(scope="module")
def regime():
    spec = importlib.util.spec_from_file_location("regime_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def row(image_only: float, text_only: float) -> dict:
    """One seed's summary rows; missing_image is the text-only score."""
    return {
        "missing_image": text_only,
        "missing_text": image_only,
        "missing_avg": (image_only + text_only) / 2,
        "missing_gap": abs(image_only - text_only),
    }


def test_alone_needs_three_times_chance_for_each_modality(regime):
    assert regime.verdict_alone({"image": [31.0, 30.0], "text": [90.0]}, 10.0).passed
    assert not regime.verdict_alone({"image": [29.0, 30.0], "text": [90.0]}, 10.0).passed


@pytest.mark.parametrize(
    ("image_only", "text_only", "ok"),
    [
        (60.0, 95.0, True),  # ΔGap 35
        (80.0, 95.0, True),  # ΔGap exactly 15
        (85.0, 95.0, False),  # ΔGap 10: no clear dominance
        (20.0, 95.0, False),  # ΔGap 75: complete dominance
        (19.0, 30.0, False),  # weaker below 2x chance (and ΔGap 11)
    ],
)
def test_dominance_window_and_weaker_modality(regime, image_only, text_only, ok):
    v = regime.verdict_dominance([row(image_only, text_only)], 10.0)
    assert v.passed is ok
    assert f"ΔGap {abs(image_only - text_only):.1f}" in v.text


@pytest.mark.parametrize(
    ("only", "ok", "weakest"),
    [
        ({"image": 50.0, "audio": 80.0, "text": 95.0}, True, "image"),  # spread 45
        ({"image": 85.0, "audio": 90.0, "text": 95.0}, False, "image"),  # spread 10
        ({"image": 90.0, "audio": 15.0, "text": 60.0}, False, "audio"),  # weakest < 2x chance
        ({"image": 90.0, "audio": 25.0, "text": 95.0}, False, "audio"),  # spread 70
    ],
)
def test_three_modality_dominance_reads_the_only_m_scores(regime, only, ok, weakest):
    # the missing_<m> scores are decoys: with three modalities they are not single-modality
    rows = [{**{f"only_{m}": x for m, x in only.items()}, **{f"missing_{m}": 0.0 for m in only}}]
    v = regime.verdict_dominance(rows, 10.0, ("image", "audio", "text"))
    assert v.passed is ok
    spread = max(only.values()) - min(only.values())
    assert f"spread (max - min) {spread:.1f}" in v.text and f"weaker ({weakest} only)" in v.text


def test_stability_uses_the_sample_std_and_needs_five_seeds(regime):
    # missing Avg 50 ± 0 for every seed; ΔGap values 30, 32, 34, 36, 38: sample std 3.16
    joint = [row(50 - g / 2, 50 + g / 2) for g in (30.0, 32.0, 34.0, 36.0, 38.0)]
    v = regime.verdict_stability(joint, {"missing_avg": 1.0, "missing_gap": 1.0})
    assert v.passed is False and "joint ΔGap 3.16" in v.text
    calm = [row(50 - g / 2, 50 + g / 2) for g in (30.0, 31.0, 32.0, 31.0, 30.0)]
    assert regime.verdict_stability(calm, {"missing_avg": 1.0, "missing_gap": 2.4}).passed
    too_few = regime.verdict_stability(calm[:2], {"missing_avg": 1.0, "missing_gap": 1.0})
    assert too_few.passed is None and "asks for 5 seeds" in too_few.text


def test_feature_statistics_of_a_typical_and_an_outlying_feature(regime):
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    mean = train.mean(0)  # (1, 0.75)
    inside = regime.feature_statistics(train, mean.clone())
    assert inside["cos_to_mean"] == pytest.approx(1.0)
    assert inside["distance_percentile"] == 0.0
    far = regime.feature_statistics(train, torch.tensor([-10.0, 0.0]))
    assert far["distance_percentile"] == 100.0 and far["cos_to_mean"] < 0
    norms = train.norm(dim=1).mean()
    assert far["norm_ratio"] == pytest.approx(10.0 / float(norms))


def test_tiny_run_trains_the_alone_models_and_keeps_balgrad_mean_out(regime, tmp_path):
    out = tmp_path / "regime.json"
    argv = [
        "--image-backbone", "cnn", "--text-backbone", "small",
        "--dataset-option", "n_train=100", "--dataset-option", "n_test=40",
        "--backbone-option", "image.width=4", "--embed-dim", "8", "--epochs", "1",
        "--batch-size", "32", "--seeds", "0", "1", "--no-progress",
        "--out", str(tmp_path), "--name", "r", "--cache-dir", str(tmp_path / "cache"),
        "--json", str(out),
    ]  # fmt: skip
    assert regime.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["alone"]) == {"image", "text"} and len(report["alone"]["image"]) == 2
    # 4 test samples per class: the constant (majority-prior) predictor scores 10%
    assert report["chance"] == pytest.approx(10.0)
    # scratch towers fed a blank image / empty string fail criterion 3
    assert report["verdicts"]["3"]["pass"] is False
    assert set(report["balgrad_std"]) == {"missing_avg", "missing_gap"}
    assert "balgrad" not in report["joint"]
    # the image-alone model never sees the text: removing the text changes nothing
    ev = json.loads((tmp_path / "r" / "image_alone" / "joint" / "seed0" / "eval.json").read_text())
    scores = ev["conditions"]
    assert scores["full"]["accuracy"] == scores["missing_text"]["accuracy"]
    assert scores["full"]["accuracy"] == scores["noisy_text"]["accuracy"]
