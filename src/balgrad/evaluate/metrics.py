"""Scores of SPEC section 4 from torchmetrics, in percent.

accuracy (single-label), AUROC + accuracy (binary tasks such as Hateful Memes),
F1-macro and F1-micro at threshold 0.5 (multi-label).
"""

from __future__ import annotations

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
    """Each requested metric of ``logits`` against ``target``, in percent."""
    num = logits.shape[-1]
    out: dict[str, float] = {}
    for name in metrics:
        if name not in METRICS:
            raise ConfigError(f"metrics: unknown metric {name!r}; expected one of {METRICS}")
        if task == "single_label":
            if name == "accuracy":
                m = MulticlassAccuracy(num_classes=num, average="micro")
                value = m(logits, target)
            elif name == "auroc":
                if num != 2:
                    raise ConfigError(
                        f"metrics: auroc needs a binary task, this one has {num} classes"
                    )
                value = BinaryAUROC()(torch.softmax(logits, -1)[:, 1], target)
            else:
                raise ConfigError(f"metrics: {name} is for multi-label tasks")
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
