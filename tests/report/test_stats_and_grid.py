"""report/stats.py (mean ± std over seeds, scipy's t-interval) against the formulas they
replaced, and report/grid.py's Table against hand-written Markdown and CSV."""

from __future__ import annotations

import statistics
import warnings

import numpy as np
import pytest
from scipy.stats import t as student_t

from balgrad.report._grid import Table
from balgrad.report._stats import mean_std, t_interval


def _formula(values, confidence=0.95):
    """The hand-written interval that scipy's replaced: mean ± t_(n-1) s / sqrt(n)."""
    n, mean, s = len(values), statistics.fmean(values), statistics.stdev(values)
    half = student_t.ppf(0.5 + confidence / 2, n - 1) * s / n**0.5
    return mean - half, mean + half


def test_t_interval_matches_the_formula_on_random_arrays():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        values = rng.normal(0.5, 2.0, n).tolist()
        for confidence in (0.9, 0.95):
            ci = t_interval(values, confidence)
            low, high = _formula(values, confidence)
            assert ci["low"] == pytest.approx(low, rel=1e-12, abs=1e-12)
            assert ci["high"] == pytest.approx(high, rel=1e-12, abs=1e-12)
            assert ci["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
            assert ci["significant"] is bool(low > 0 or high < 0)


def test_identical_values_give_the_mean_as_interval_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = t_interval([0.5, 0.5, 0.5])
        zero = t_interval([0.0, 0.0])
    assert (same["low"], same["high"], same["std"], same["significant"]) == (0.5, 0.5, 0.0, True)
    assert (zero["low"], zero["high"], zero["significant"]) == (0.0, 0.0, False)
    with pytest.raises(ValueError, match="no values"):
        t_interval([])


def test_mean_std_over_seeds_of_numbers_and_of_curves():
    assert mean_std([1.0, 2.0, 4.0]) == {
        "mean": pytest.approx(7 / 3),
        "std": pytest.approx(statistics.stdev([1.0, 2.0, 4.0])),
        "n": 3,
    }
    assert mean_std([3.0]) == {"mean": 3.0, "std": 0.0, "n": 1}  # one seed: no spread
    curves = mean_std([[1.0, 10.0], [3.0, 14.0]])  # [seeds, points]
    assert curves["mean"] == [2.0, 12.0] and curves["n"] == 2
    assert curves["std"] == pytest.approx([2**0.5, 8**0.5])
    assert mean_std([[1.0, 10.0]])["std"] == [0.0, 0.0]


def test_table_renders_compact_markdown_and_csv(tmp_path):
    t = Table(["Condition", "A, b"])
    t.add("Full", 1)
    t.add("Missing", "n/a")
    assert t.markdown() == "| Condition | A, b |\n|---|---|\n| Full | 1 |\n| Missing | n/a |"
    t.write_markdown(tmp_path / "t.md", ["Title", ""], ["", "note"])
    assert (tmp_path / "t.md").read_text() == "Title\n\n" + t.markdown() + "\n\nnote\n"
    t.write_csv(tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_bytes()
    assert text == b'Condition,"A, b"\r\nFull,1\r\nMissing,n/a\r\n'
