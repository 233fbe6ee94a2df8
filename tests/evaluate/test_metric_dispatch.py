"""compute_scores (torchmetrics task metrics, chosen by (task, metric)) against
scikit-learn's metrics of the same predictions, and its refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from balgrad.errors import ConfigError
from balgrad.evaluate._metrics import compute_scores


def test_single_label_accuracy_and_binary_auroc_match_sklearn():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(40, 5, generator=g), torch.randint(0, 5, (40,), generator=g)
    got = compute_scores(logits, target, "single_label", ["accuracy"])
    want = skm.accuracy_score(target.numpy(), logits.argmax(-1).numpy())
    assert got["accuracy"] == pytest.approx(100 * want, abs=1e-4)  # float32
    logits, target = torch.randn(40, 2, generator=g), torch.randint(0, 2, (40,), generator=g)
    got = compute_scores(logits, target, "single_label", ["accuracy", "auroc"])
    p1 = torch.softmax(logits, -1)[:, 1].numpy()
    assert got["auroc"] == pytest.approx(100 * skm.roc_auc_score(target.numpy(), p1), abs=1e-4)
    assert got["accuracy"] == pytest.approx(
        100 * skm.accuracy_score(target.numpy(), logits.argmax(-1).numpy()), abs=1e-4
    )


def test_multi_label_scores_match_sklearn_at_threshold_one_half():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(30, 4, generator=g) * 0.3  # all inside [0, 1] would fool a guess
    target = torch.randint(0, 2, (30, 4), generator=g).float()
    got = compute_scores(logits, target, "multi_label", ["f1_macro", "f1_micro", "accuracy"])
    pred, y = (logits > 0).numpy(), target.numpy().astype(bool)
    assert got["f1_macro"] == pytest.approx(100 * skm.f1_score(y, pred, average="macro"), abs=1e-4)
    assert got["f1_micro"] == pytest.approx(100 * skm.f1_score(y, pred, average="micro"), abs=1e-4)
    assert got["accuracy"] == pytest.approx(100 * float(np.mean(pred == y)), abs=1e-4)


def test_undefined_scores_are_nan_and_misuse_is_named():
    two = torch.randn(4, 2)
    assert math.isnan(
        compute_scores(two, torch.zeros(4).long(), "single_label", ["auroc"])["auroc"]
    )
    empty = compute_scores(two[:0], torch.zeros(0).long(), "single_label", ["accuracy"])
    assert math.isnan(empty["accuracy"])
    with pytest.raises(ConfigError, match="unknown metric 'top5'"):
        compute_scores(two, torch.zeros(4).long(), "single_label", ["top5"])
    with pytest.raises(ConfigError, match="f1_macro is for multi-label tasks, not single_label"):
        compute_scores(two, torch.zeros(4).long(), "single_label", ["f1_macro"])
    with pytest.raises(ConfigError, match="auroc is for single-label tasks, not multi_label"):
        compute_scores(two, torch.zeros(4, 2), "multi_label", ["auroc"])
    with pytest.raises(ConfigError, match="auroc needs a binary task, this one has 3 classes"):
        compute_scores(torch.randn(4, 3), torch.zeros(4).long(), "single_label", ["auroc"])
