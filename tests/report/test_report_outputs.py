"""Every figure and table of a run folder, for a full and for a partial run."""

from __future__ import annotations

import csv

import pytest

from balgrad.report._build import build_report
from balgrad.report._summary import ABLATION_METHODS

FIGURES = ["condition_bars.png", "loss_curves.png", "cosine_histogram.png", "gap_vs_ratio.png"]
TABLES = [
    "table.md",
    "ablation.md",
    "ablation.csv",
    "conflicts.md",
    "conflicts.csv",
    "cosine_histogram.csv",
    "report.md",
]


def _nonempty_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_file_of_a_full_run(make_run):
    run = make_run()
    out = build_report(run)
    for name in FIGURES:
        assert _nonempty_png(run / name), name
    for name in TABLES:
        assert (run / name).stat().st_size > 0, name
    assert out["summary"] == (run / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in out["summary"]
    assert set(out["loss_gaps"]) == {
        "joint",
        "mslr",
        "ogm_ge",
        "agm",
        "balgrad",
        "balgrad_reweight_only",
        "balgrad_projection_only",
        "balgrad_unimodal_only",
    }


def test_partial_run_joint_and_balgrad(make_run):
    run = make_run(["joint", "balgrad"], seeds=(0,))
    out = build_report(run)
    for name in FIGURES:
        assert _nonempty_png(run / name), name
    header = (run / "ablation.md").read_text().splitlines()[2]
    assert header == "| Condition | Baseline | BalGrad |"
    hist_cols = (run / "cosine_histogram.csv").read_text().splitlines()[0]
    assert "w/ reweighting" not in hist_cols
    assert "BalGrad" in out["summary"]


def test_run_without_balgrad_or_step_logs(make_run):
    run = make_run(["joint", "ogm_ge"], seeds=(0,))
    for p in run.glob("*/seed*/metrics.jsonl"):
        p.unlink()
    out = build_report(run)
    assert _nonempty_png(run / "condition_bars.png")
    for name in ("loss_curves.png", "cosine_histogram.png", "ablation.md", "conflicts.md"):
        assert not (run / name).exists(), name
    assert "Which modality dominated" in out["summary"]


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_ablation_table_equals_eval_json(make_run, seeds):
    evals = {}
    for i, m in enumerate(ABLATION_METHODS):
        for s in seeds:
            evals[(m, s)] = (80.0 + i + 0.5 * s, 30.0 + 3 * i + s, 65.0 - i - 2 * s)
    run = make_run(ABLATION_METHODS + ["agm"], seeds=seeds, evals=evals)
    build_report(run, draw=False)
    assert not list(run.glob("*.png"))
    with open(run / "ablation.csv", newline="") as f:
        rows = {r["condition"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["full", "missing_image", "missing_text", "missing_avg", "missing_gap"]
    assert "agm_mean" not in rows["full"]
    for m in ABLATION_METHODS:
        full = [evals[(m, s)][0] for s in seeds]
        mi = [evals[(m, s)][1] for s in seeds]
        mt = [evals[(m, s)][2] for s in seeds]
        expect = {
            "full": full,
            "missing_image": mi,
            "missing_text": mt,
            "missing_avg": [(a + b) / 2 for a, b in zip(mi, mt)],
            "missing_gap": [abs(a - b) for a, b in zip(mi, mt)],
        }
        for key, vals in expect.items():
            assert float(rows[key][f"{m}_mean"]) == pytest.approx(
                sum(vals) / len(vals), abs=1e-4
            ), (m, key)
    md = (run / "ablation.md").read_text()
    assert (
        "| Condition | Baseline | w/ reweighting | w/ projection | unimodal losses only | BalGrad |"
        in md
    )
    if len(seeds) == 1:
        # the Markdown cells are the eval.json values themselves
        line = next(x for x in md.splitlines() if x.startswith("| Missing image |"))
        assert (
            line
            == "| Missing image | "
            + " | ".join(f"{evals[(m, 0)][1]:.2f}" for m in ABLATION_METHODS)
            + " |"
        )
