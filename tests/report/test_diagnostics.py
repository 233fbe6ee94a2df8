"""Conflict fractions, cosine histograms and loss-curve gaps computed from logged values."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from report_runfolders import step_rows

from balgrad.report import _diagnostics as diag
from balgrad.report._build import build_report

RAW = [-0.5, -0.1, 0.0, 0.2, 0.7, -0.3, 0.9, -0.95, 0.05, 0.4]  # 4 of 10 below 0
# after projection: conflicting steps end at ~0 (round-off on both sides), one left at -0.02
POST = [1e-9, -3e-8, 0.0, 0.2, 0.7, -0.02, 0.9, 2e-7, 0.05, 0.4]  # 1 of 10 below -1e-6


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_conflict_fraction_by_hand():
    assert diag.conflict_fraction(np.array(RAW)) == pytest.approx(0.4)
    assert diag.conflict_fraction(np.array(POST), diag.PROJECTED_TOL) == pytest.approx(0.1)
    assert diag.conflict_fraction(np.array([0.0, 0.0])) == 0.0  # zero is not a conflict


def test_conflict_table_from_logged_cosines(make_run):
    rows = {
        ("balgrad", 0): step_rows("balgrad", 0, 10, cos=RAW, cos_projected=POST),
        ("balgrad", 1): step_rows("balgrad", 1, 20, cos=[-0.2, 0.3] * 10, cos_projected=[0.0] * 20),
        ("balgrad_reweight_only", 0): step_rows("balgrad_reweight_only", 0, 10, cos=RAW),
        ("balgrad_reweight_only", 1): step_rows("balgrad_reweight_only", 1, 10, cos=RAW),
    }
    run = make_run(
        ["joint", "balgrad", "balgrad_reweight_only", "balgrad_unimodal_only"], rows=rows
    )
    out = build_report(run, draw=False)
    table = {r["method"]: r for r in _csv(run / "conflicts.csv")}
    # joint logs no cosines; unimodal-only has a zero KL gradient: neither is in Table 3
    assert set(table) == {"balgrad", "balgrad_reweight_only"}
    b = table["balgrad"]
    assert float(b["conflict_raw_mean"]) == pytest.approx(
        (0.4 + 0.5) / 2
    )  # seed 0: 4/10, seed 1: 10/20
    assert float(b["conflict_projected_mean"]) == pytest.approx((0.1 + 0.0) / 2)
    assert int(b["steps"]) == 30 and b["projects"] == "1"
    r = table["balgrad_reweight_only"]
    assert float(r["conflict_raw_mean"]) == pytest.approx(0.4)
    assert float(r["conflict_projected_mean"]) == pytest.approx(
        0.4
    )  # no projection: the raw cosines
    assert r["projects"] == "0"
    # ΔGap column is the eval.json missing-modality gap
    gap = out["table"]["balgrad"]["missing_gap"]["mean"]
    assert float(b["gap_mean"]) == pytest.approx(gap, abs=1e-4)
    md = (run / "conflicts.md").read_text()
    assert "BalGrad" in md and "w/ reweighting" in md


def test_cosine_histogram_counts_match_numpy(make_run):
    rows = {
        ("balgrad", 0): step_rows("balgrad", 0, 10, cos=RAW, cos_projected=POST),
        ("balgrad_reweight_only", 0): step_rows("balgrad_reweight_only", 0, 10, cos=RAW[::-1]),
    }
    run = make_run(["joint", "balgrad", "balgrad_reweight_only"], seeds=(0,), rows=rows)
    build_report(run, draw=False)
    hist = _csv(run / "cosine_histogram.csv")
    cols = [c for c in hist[0] if not c.startswith("bin_")]
    assert cols == [
        "BalGrad, before projection",
        "BalGrad, after projection",
        "w/ reweighting (no projection)",
    ]
    for name, values in zip(cols, (RAW, POST, RAW[::-1])):
        expected, edges = np.histogram(values, bins=diag.COS_BINS)
        got = np.array([int(h[name]) for h in hist])
        np.testing.assert_array_equal(got, expected)
        assert got.sum() == len(values)
    np.testing.assert_allclose([float(h["bin_low"]) for h in hist], edges[:-1], atol=1e-3)


def test_loss_gap_and_moving_average_by_hand():
    rows = [{"step": i, "loss_image": float(i), "loss_text": 0.5 * i} for i in range(10)]
    # last 20% = steps 8, 9: gaps 4.0 and 4.5
    assert diag.loss_gap(rows, modalities=("image", "text")) == pytest.approx(4.25)
    np.testing.assert_allclose(
        diag.moving_average(np.array([1.0, 2.0, 3.0, 4.0]), 2), [1.0, 1.5, 2.5, 3.5]
    )
    curves = diag.loss_curves({0: rows, 1: rows}, window=1, modalities=("image", "text"))
    np.testing.assert_allclose(curves.mean["image"], np.arange(10.0))
    np.testing.assert_allclose(curves.std["text"], 0.0)


def test_step_logs_dedupe_resumed_steps(tmp_path):
    d = tmp_path / "joint" / "seed0"
    d.mkdir(parents=True)
    lines = [
        {"step": 0, "loss_image": 1.0, "loss_text": 1.0},
        {"step": 1, "loss_image": 9.0, "loss_text": 9.0},
        {"step": 1, "loss_image": 2.0, "loss_text": 1.0},
    ]
    import json

    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    logs = diag.load_step_logs(tmp_path, ["joint", "balgrad"], [0, 1])
    assert list(logs) == ["joint"] and list(logs["joint"]) == [0]
    assert [r["loss_image"] for r in logs["joint"][0]] == [1.0, 2.0]
