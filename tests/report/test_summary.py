"""report.md names the dominant modality from joint's missing-modality scores."""

from __future__ import annotations

import pytest

from balgrad.report.build import build_report


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
