"""Statistics over seeds: mean ± std, and the two-sided t-interval of a mean (scipy's
``ttest_1samp(...).confidence_interval``)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def mean_std(values) -> dict:
    """{"mean", "std", "n"} over the first axis of ``values`` (the seeds): floats for a list
    of numbers, a list per point for an array [seeds, points]. The std has ddof 1, and is
    0 for one seed (where ddof 1 is undefined)."""
    arr = np.asarray(values, dtype=float)
    mean = arr.mean(0)
    std = arr.std(0, ddof=1) if len(arr) > 1 else np.zeros_like(mean)
    return {"mean": mean.tolist(), "std": std.tolist(), "n": len(arr)}


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> dict:
    """Mean of ``values`` with its two-sided t-interval over them (n - 1 degrees of freedom).

    {"mean", "std", "n", "low", "high", "significant"}; ``low``/``high`` are None and
    ``significant`` is None for a single value (no interval can be computed).
    ``significant`` is True when the interval excludes 0.
    """
    arr = np.asarray(values, dtype=float)
    if not len(arr):
        raise ValueError("t_interval: no values")
    if len(arr) == 1:
        one = float(arr[0])
        return {"mean": one, "std": None, "n": 1, "low": None, "high": None, "significant": None}
    with warnings.catch_warnings():
        # identical values: scipy warns of precision loss in the std (0); the interval is
        # then the mean itself, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_1samp(arr, 0.0).confidence_interval(confidence)
    low, high = float(ci.low), float(ci.high)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)),
        "n": len(arr),
        "low": low,
        "high": high,
        "significant": bool(low > 0 or high < 0),
    }
