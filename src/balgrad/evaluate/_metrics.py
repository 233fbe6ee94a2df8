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
from torchmetrics import AUROC, Accuracy, F1Score

from balgrad.errors import ConfigError

METRICS = ("accuracy", "auroc", "f1_macro", "f1_micro")

#: (task, metric) -> its torchmetrics task metric for ``n`` classes (labels)
TASK_METRICS = {
    ("single_label", "accuracy"): lambda n: Accuracy("multiclass", num_classes=n, average="micro"),
    ("single_label", "auroc"): lambda n: AUROC("binary"),
    ("multi_label", "accuracy"): lambda n: Accuracy("multilabel", num_labels=n, average="micro"),
    ("multi_label", "f1_macro"): lambda n: F1Score("multilabel", num_labels=n, average="macro"),
    ("multi_label", "f1_micro"): lambda n: F1Score("multilabel", num_labels=n, average="micro"),
}


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
        if (task, name) not in TASK_METRICS:
            fits = [t.replace("_", "-") for t, m in TASK_METRICS if m == name]
            raise ConfigError(f"metrics: {name} is for {' and '.join(fits)} tasks, not {task}")
        if name == "auroc" and num != 2:
            raise ConfigError(f"metrics: auroc needs a binary task, this one has {num} classes")
        if not len(target) or (name == "auroc" and target.unique().numel() < 2):
            out[name] = math.nan  # an empty split, or one class only: nothing to rank
            continue
        if task == "multi_label":
            # probabilities, at threshold 0.5: given logits, torchmetrics would apply the
            # sigmoid only when some value lies outside [0, 1]
            preds, target_ = torch.sigmoid(logits), target.long()
        elif name == "auroc":
            preds, target_ = torch.softmax(logits, -1)[:, 1], target
        else:
            preds, target_ = logits, target
        out[name] = 100.0 * float(TASK_METRICS[task, name](num)(preds, target_))
    return out


def is_defined(value: float | None) -> bool:
    """False for an undefined score (NaN in memory, null once read back from JSON).

    Args:
        value: A score.

    Returns:
        Whether it is a finite number.
    """
    return value is not None and math.isfinite(value)
