"""report.md names the dominant modality from joint's missing-modality scores."""

from __future__ import annotations

import pytest

from balgrad.report._build import build_report


@pytest.mark.parametrize(
    ("image_only", "text_only", "dominant"), [(20.0, 60.0, "text"), (75.0, 35.0, "image")]
)
def test_summary_names_dominant_modality(make_run, image_only, text_only, dominant):
    seeds = (0, 1)
    # missing_text = image only, missing_image = text only
    evals = {("joint", s): (80.0, text_only + s, image_only - s) for s in seeds}
    evals.update({("balgrad", s): (82.0, 55.0, 50.0 + s) for s in seeds})
    run = make_run(["joint", "balgrad"], seeds=seeds, evals=evals)
    text = build_report(run, draw=False)["summary"]
    weak = "image" if dominant == "text" else "text"
    assert f"The **{dominant}** modality dominated" in text
    assert f"the {weak}-only score was" in text
    gap = sum(abs((text_only + s) - (image_only - s)) for s in seeds) / len(seeds)
    assert f"ΔGap {gap:.1f} ± " in text
    assert "The direction held in 2 of 2 seeds" in text
    assert "- BalGrad: Full" in text and "Missing ΔGap" in text


def test_summary_without_joint_uses_first_method(make_run):
    run = make_run(["balgrad"], seeds=(0,), evals={("balgrad", 0): (80.0, 40.0, 70.0)})
    text = build_report(run, draw=False)["summary"]
    assert "joint training is not in this run" in text
    assert "The **image** modality dominated" in text


def test_a_one_seed_report_claims_no_spread_and_names_every_method(make_run):
    methods = ["joint", "balgrad", "balgrad_reweight_only", "balgrad_unimodal_only"]
    evals = {(m, 0): (80.0 + i, 40.0 + i, 70.0) for i, m in enumerate(methods)}
    run = make_run(methods, seeds=(0,), evals=evals)
    text = build_report(run, draw=False)["summary"]
    assert "mean ± std" not in text
    assert "mean ± std" not in (run / "ablation.md").read_text()
    assert "1 seed" in (run / "ablation.md").read_text()
    assert "## The methods" in text
    assert "- **w/ reweighting** (`balgrad_reweight_only`): BalGrad without its projection" in text
    assert "- **unimodal losses only** (`balgrad_unimodal_only`): the auxiliary" in text


def test_several_seeds_say_mean_and_std(make_run):
    run = make_run(["joint", "balgrad"], seeds=(0, 1))
    text = build_report(run, draw=False)["summary"]
    assert "mean ± std over seeds" in text
    assert "mean ± std over seeds" in (run / "ablation.md").read_text()


def test_the_negative_transfer_mark_has_a_legend_only_where_it_is_used(make_run):
    # (full, missing_image, missing_text): an impaired score above Full is marked
    marked = make_run(["joint"], seeds=(0,), evals={("joint", 0): (60.0, 70.0, 30.0)}, name="a")
    build_report(marked, draw=False)
    table = (marked / "table.md").read_text()
    assert "70.00*" in table and "marked * shows negative transfer" in table
    clean = make_run(["joint"], seeds=(0,), evals={("joint", 0): (80.0, 70.0, 30.0)}, name="b")
    build_report(clean, draw=False)
    assert "*" not in (clean / "table.md").read_text()
