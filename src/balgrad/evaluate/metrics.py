"""Scores of SPEC section 4 from torchmetrics, in percent.

accuracy (single-label), AUROC + accuracy (binary tasks such as Hateful Memes),
F1-macro and F1-micro at threshold 0.5 (multi-label).

A score that is undefined on the split is NaN, not torchmetrics' 0: AUROC of targets of
one class only (nothing to rank), and any score of an empty split. eval.json stores it
as null and the tables show "n/a"; model selection falls back to a defined metric.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.classification import (
    BinaryAUROC,
    MulticlassAccuracy,
    MultilabelAccuracy,
    MultilabelF1Score,
)

from balgrad.errors import ConfigError

METRICS = ("accuracy", "auroc", "f1_macro", "f1_micro")


def compute_scores(
    logits: torch.Tensor, target: torch.Tensor, task: str, metrics: list[str]
) -> dict[str, float]:
    """Each requested metric of ``logits`` against ``target``, in percent.

    Args:
        logits: ``[N, C]``.
        target: The labels.
        task: ``"single_label"`` or ``"multi_label"``.
        metrics: The metric names.

    Returns:
        ``{metric: score}``; NaN where a metric is undefined.

    Raises:
        ConfigError: An unknown metric, or one that does not fit the task.
    """
    num = logits.shape[-1]
    out: dict[str, float] = {}
    for name in metrics:
        if name not in METRICS:
            raise ConfigError(f"metrics: unknown metric {name!r}; expected one of {METRICS}")
        if task == "single_label":
            if name == "accuracy":
                m = MulticlassAccuracy(num_classes=num, average="micro")
                value = m(logits, target) if len(target) else math.nan
            elif name == "auroc":
                if num != 2:
                    raise ConfigError(
                        f"metrics: auroc needs a binary task, this one has {num} classes"
                    )
                if target.unique().numel() < 2:  # no pair of classes to rank
                    value = math.nan
                else:
                    value = BinaryAUROC()(torch.softmax(logits, -1)[:, 1], target)
            else:
                raise ConfigError(f"metrics: {name} is for multi-label tasks")
        elif not len(target):
            value = math.nan
        else:
            t = target.long()
            if name == "f1_macro":
                value = MultilabelF1Score(num_labels=num, average="macro", threshold=0.5)(
                    torch.sigmoid(logits), t
                )
            elif name == "f1_micro":
                value = MultilabelF1Score(num_labels=num, average="micro", threshold=0.5)(
                    torch.sigmoid(logits), t
                )
            elif name == "accuracy":
                value = MultilabelAccuracy(num_labels=num, average="micro")(
                    torch.sigmoid(logits), t
                )
            else:
                raise ConfigError(f"metrics: {name} is for single-label tasks")
        out[name] = 100.0 * float(value)
    return out


def is_defined(value: float | None) -> bool:
    """False for an undefined score (NaN in memory, null once read back from JSON).

    Args:
        value: A score.

    Returns:
        Whether it is a finite number.
    """
    return value is not None and math.isfinite(value)
