"""Paired per-seed changes versus Baseline with 95% t-intervals (issue 8, criterion 7)."""

from __future__ import annotations

import json

import pytest

from balgrad.report._build import build_report
from balgrad.report._tables import format_change, method_label, t_interval

# Hand-worked: values 1..5 have mean 3, sample std sqrt(2.5), standard error
# sqrt(2.5 / 5) = 0.70711; the 97.5% quantile of Student's t with 4 degrees of freedom is
# 2.77645 (printed t tables), so the half-width is 1.96324.
T_975_DF4 = 2.776445
T_975_DF1 = 12.706205


def test_t_interval_matches_a_hand_worked_case_with_five_values():
    ci = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = T_975_DF4 * (2.5**0.5) / (5**0.5)
    assert half == pytest.approx(1.96324, abs=1e-5)
    assert ci["mean"] == pytest.approx(3.0)
    assert ci["low"] == pytest.approx(3.0 - half, rel=1e-6)
    assert ci["high"] == pytest.approx(3.0 + half, rel=1e-6)
    assert ci["n"] == 5 and ci["significant"] is True


def test_two_values_use_one_degree_of_freedom_and_a_wide_interval():
    ci = t_interval([0.0, 2.0])  # mean 1, std sqrt(2), standard error 1
    assert ci["low"] == pytest.approx(1.0 - T_975_DF1, rel=1e-6)
    assert ci["high"] == pytest.approx(1.0 + T_975_DF1, rel=1e-6)
    assert ci["significant"] is False
    assert format_change(ci, short=False).endswith("no significant change")


def test_a_negative_interval_is_significant_and_one_value_has_no_interval():
    assert t_interval([-3.0, -2.5, -3.5])["significant"] is True
    one = t_interval([4.0])
    assert (one["low"], one["high"], one["significant"]) == (None, None, None)
    assert format_change(one) == "+4.00"


def _evals(seeds, joint, other):
    """{(method, seed): (full, missing_image, missing_text)} from per-seed functions."""
    out = {("joint", s): joint(s) for s in seeds}
    out.update({("balgrad", s): other(s) for s in seeds})
    return out


def test_table_and_report_give_paired_intervals_and_label_no_change(make_run):
    seeds = (0, 1, 2, 3, 4)
    # balgrad's Full is joint's + (1, 2, 3, 4, 5): paired change 3 ± 1.96 (significant);
    # its missing scores are joint's plus a wiggle of mean 0 and std sqrt(2.5): the same
    # interval centred on 0 (no significant change)
    wiggle = (-1.0, 1.0, 0.0, -2.0, 2.0)
    evals = _evals(
        seeds,
        lambda s: (80.0, 70.0 + s, 40.0),
        lambda s: (81.0 + s, 70.0 + s + wiggle[s], 40.0 + wiggle[s]),
    )
    run = make_run(["joint", "balgrad"], seeds=seeds, evals=evals)
    out = build_report(run, draw=False)
    full = out["paired"]["balgrad"]["full"]
    assert full["values"] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])
    assert full["low"] == pytest.approx(3.0 - 1.96324, abs=1e-5)
    md = (run / "table.md").read_text()
    assert f"| Condition | {method_label('balgrad')} |" in md.split("Change versus")[1]
    assert "| Full | +3.00 [+1.04, +4.96] |" in md
    assert "| Missing Avg | +0.00 [-1.96, +1.96] n.s. |" in md
    assert "n.s. = no significant change" in md
    text = out["summary"]
    assert "Full 83.0 ± 1.6 (+3.0 [+1.0, +5.0])" in text
    assert "Missing Avg" in text and "no significant change" in text
    stored = json.loads((run / "table.json").read_text())
    assert stored["reference"] == "joint" and stored["confidence"] == 0.95
    assert stored["paired"]["balgrad"]["missing_avg"]["significant"] is False


def test_one_seed_says_that_no_interval_can_be_computed(make_run):
    run = make_run(
        ["joint", "balgrad"],
        seeds=(0,),
        evals={("joint", 0): (80.0, 70.0, 40.0), ("balgrad", 0): (82.0, 65.0, 55.0)},
    )
    out = build_report(run, draw=False)
    assert "one seed, so no interval can be computed" in (run / "table.md").read_text()
    assert "One seed: no interval can be computed" in out["summary"]
    assert "significant" not in out["summary"].split("One seed")[0]
