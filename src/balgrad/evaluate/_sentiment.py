"""The field's sentiment read-outs (CMU-MOSEI / MOSI), as MMSA's
``MetricsTop.__eval_mosei_regression`` computes them, from scikit-learn and scipy.

A predicted and a true real-valued score per sample, in [-3, 3]:

* ``acc2_non_negative`` / ``f1_non_negative`` (MMSA ``Has0_acc_2`` / ``Has0_F1_score``):
  label >= 0 positive, every record counted; the F1 is sklearn's weighted F1.
* ``acc2_non_zero`` / ``f1_non_zero`` (MMSA ``Non0_*``, MulT's ``binary_truth``): records
  whose label is not 0, > 0 positive; NaN when every label is 0.
* ``acc7``: both sides clipped to [-3, 3] and rounded (numpy's round half to even).
* ``mae`` and ``pearson`` (NaN when either side is constant, where scipy would warn).

:func:`readout_scores` gives a 7-class model's read-outs: its predicted score is the
expected class value under the softmax. The dataset supplies only the truth
(``sentiment_truth(index)``): the data layer holds no metric.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from balgrad.errors import ConfigError

LABEL_RANGE = (-3.0, 3.0)


def _pair(preds: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(truth, dtype=np.float64).reshape(-1)
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"need as many predictions as labels, at least one: {p.size} and {y.size}")
    return p, y


def acc2_non_negative(preds: Any, truth: Any) -> float:
    p, y = _pair(preds, truth)
    return float(accuracy_score(y >= 0, p >= 0))


def acc2_non_zero(preds: Any, truth: Any) -> float:
    p, y = _pair(preds, truth)
    keep = y != 0
    return float(accuracy_score(y[keep] > 0, p[keep] > 0)) if keep.any() else math.nan


def _weighted_f1(true_pos: np.ndarray, pred_pos: np.ndarray) -> float:
    # a class never predicted scores 0, silently (sklearn's zero_division="warn" would warn)
    return float(f1_score(true_pos, pred_pos, average="weighted", zero_division=0))


def f1_non_negative(preds: Any, truth: Any) -> float:
    p, y = _pair(preds, truth)
    return _weighted_f1(y >= 0, p >= 0)


def f1_non_zero(preds: Any, truth: Any) -> float:
    p, y = _pair(preds, truth)
    keep = y != 0
    return _weighted_f1(y[keep] > 0, p[keep] > 0) if keep.any() else math.nan


def acc7(preds: Any, truth: Any) -> float:
    p, y = _pair(preds, truth)
    return float(
        accuracy_score(np.round(np.clip(y, *LABEL_RANGE)), np.round(np.clip(p, *LABEL_RANGE)))
    )


def mae(preds: Any, truth: Any) -> float:
    p, y = _pair(preds, truth)
    return float(mean_absolute_error(y, p))


def pearson(preds: Any, truth: Any) -> float:
    p, y = _pair(preds, truth)
    if np.ptp(p) == 0 or np.ptp(y) == 0:  # undefined (also a single record)
        return math.nan
    return float(pearsonr(p, y).statistic)


def sentiment_metrics(preds: Any, truth: Any) -> dict[str, float]:
    """All of the above, keyed by name (accuracies and F1 as fractions).

    Args:
        preds: Predicted sentiment scores.
        truth: True scores in [-3, 3].

    Returns:
        ``acc2_non_negative``, ``acc2_non_zero``, ``f1_non_negative``, ``f1_non_zero``,
        ``acc7``, ``mae`` and ``pearson``.
    """
    fns = (acc2_non_negative, acc2_non_zero, f1_non_negative, f1_non_zero, acc7, mae, pearson)
    return {fn.__name__: fn(preds, truth) for fn in fns}


def readout_scores(dataset: Any, logits: torch.Tensor, index: torch.Tensor) -> dict[str, float]:
    """The regression read-outs of a 7-class model on ``dataset`` (which has
    ``sentiment_truth(index)``: each sample's real-valued score, or None for a model with
    no score to read out, such as MOSEI's ``label="acc2"``): ``mae`` and ``pearson`` in
    score units, the acc2 and F1 scores in %. ``acc7`` is left out: the model's own acc7
    is its accuracy (argmax), not the rounded expected score. Empty for a dataset
    without ``sentiment_truth`` or an empty split."""
    truth_of = getattr(dataset, "sentiment_truth", None)
    truth = truth_of(index) if truth_of is not None and len(index) else None
    if truth is None:
        return {}
    values = torch.arange(LABEL_RANGE[0], LABEL_RANGE[1] + 1, dtype=torch.float64)
    if logits.shape[-1] != len(values):
        name = getattr(dataset, "dataset", type(dataset).__name__)
        raise ConfigError(
            f"{name}: the acc7 read-out needs 7 logits per sample, got {tuple(logits.shape)}"
        )
    predicted = (torch.softmax(logits.detach().cpu().double(), dim=-1) @ values).numpy()
    out = sentiment_metrics(predicted, truth)
    del out["acc7"]
    return {k: v if k in ("mae", "pearson") else 100.0 * v for k, v in out.items()}


def dataset_readouts(dataset: Any, logits: torch.Tensor, index: torch.Tensor) -> dict[str, float]:
    """Every read-out beyond the task's metrics: the dataset's own ``readout_scores``
    hook (a plug-in's) and the sentiment read-outs above."""
    hook = getattr(dataset, "readout_scores", None)
    return {
        **(hook(logits, index) if hook is not None else {}),
        **readout_scores(dataset, logits, index),
    }
