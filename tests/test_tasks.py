"""balgrad.tasks: losses, symmetric KL and target checks against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from balgrad.errors import ConfigError, DataError, NonFiniteLossError
from balgrad.tasks import (
    check_finite,
    check_target_shape,
    check_task,
    screen_target,
    symmetric_kl,
    task_loss,
    true_class_prob,
)

LN3 = math.log(3.0)


def test_single_label_loss_and_prob():
    # softmax([0, ln 3]) = (1/4, 3/4)
    z = torch.tensor([[0.0, LN3], [0.0, LN3]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    assert float(task_loss(z, y, "single_label")) == pytest.approx(
        (-math.log(0.75) - math.log(0.25)) / 2
    )
    assert true_class_prob(z, y, "single_label").tolist() == pytest.approx([0.75, 0.25])


def test_multi_label_loss_and_prob():
    # sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2
    z = torch.tensor([[LN3, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert float(task_loss(z, y, "multi_label")) == pytest.approx(
        (-math.log(0.75) - math.log(0.5)) / 2
    )
    # mean probability of the true state: (3/4 + 1/2) / 2
    assert true_class_prob(z, y, "multi_label").tolist() == pytest.approx([0.625])
    y0 = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert true_class_prob(z, y0, "multi_label").tolist() == pytest.approx([(0.25 + 0.5) / 2])


def test_symmetric_kl_single_label_by_hand():
    # p = (1/4, 3/4), q = (1/2, 1/2):
    # KL(p||q) = ¼ ln ½ + ¾ ln 3/2, KL(q||p) = ½ ln 2 + ½ ln 2/3; the sum is ¼ ln 3
    a = torch.tensor([[0.0, LN3], [1.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    kl_pq = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    kl_qp = 0.5 * math.log(2.0) + 0.5 * math.log(2 / 3)
    assert kl_pq + kl_qp == pytest.approx(LN3 / 4)
    # batch mean over the two rows (the second has D = 0)
    assert float(symmetric_kl(a, b, "single_label")) == pytest.approx(LN3 / 8)
    assert float(symmetric_kl(b, a, "single_label")) == pytest.approx(LN3 / 8)
    # temperature divides the logits: τ = 2 on doubled logits gives the same
    assert float(symmetric_kl(2 * a, 2 * b, "single_label", temperature=2.0)) == pytest.approx(
        LN3 / 8
    )
    assert float(symmetric_kl(a, a, "single_label")) == 0.0


def test_symmetric_kl_multi_label_by_hand():
    # label 1: Bernoulli(3/4) vs Bernoulli(1/2): ¼ ln 3/2 − ¼ ln ½ = ¼ ln 3; label 2 equal
    a = torch.tensor([[LN3, 0.7]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.7]], dtype=torch.float64)

    def bern(p, q):
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    assert bern(0.75, 0.5) + bern(0.5, 0.75) == pytest.approx(LN3 / 4)
    assert float(symmetric_kl(a, b, "multi_label")) == pytest.approx(LN3 / 4)


def test_symmetric_kl_large_logits_stay_finite():
    a = torch.tensor([[80.0, -80.0]], dtype=torch.float32)
    b = torch.tensor([[-80.0, 80.0]], dtype=torch.float32)
    assert torch.isfinite(symmetric_kl(a, b, "single_label"))
    assert torch.isfinite(symmetric_kl(a, b, "multi_label"))


def test_check_task():
    assert check_task("multi_label") == "multi_label"
    with pytest.raises(ConfigError, match="task.*regression"):
        check_task("regression")


@pytest.mark.parametrize(
    "target,match",
    [
        (torch.tensor([[0], [1]]), "target.*shape"),
        (torch.tensor([0, 1, 1]), "target.*shape"),
        (torch.tensor([0.0, 1.0]), "target.*integer"),
    ],
)
def test_single_label_target_shape_errors(target, match):
    with pytest.raises(DataError, match=match):
        check_target_shape(torch.zeros(2, 3), target, "single_label")


@pytest.mark.parametrize("target,bad", [([0, 3], 3), ([-1, 0], -1)])
def test_single_label_labels_out_of_range_are_named(target, bad):
    _, ok, value, message = screen_target(torch.zeros(2, 3), torch.tensor(target), "single_label")
    assert not bool(ok) and int(value) == bad
    assert message.format(value=int(value)) == f"target: label {bad} is out of range [0, 3)"


def test_multi_label_target_errors():
    logits = torch.zeros(2, 3)
    good = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    check_target_shape(logits, good, "multi_label")
    assert bool(screen_target(logits, good, "multi_label")[1])
    with pytest.raises(DataError, match="target.*shape"):
        check_target_shape(logits, torch.zeros(2, 2), "multi_label")
    _, ok, value, message = screen_target(logits, torch.full((2, 3), 0.5), "multi_label")
    assert not bool(ok) and float(value) == 0.5 and "0/1" in message


def test_check_finite_names_the_loss():
    check_finite("task loss L_T", torch.tensor(1.0))
    with pytest.raises(NonFiniteLossError, match="image loss L_v"):
        check_finite("image loss L_v", torch.tensor(float("inf")))


def test_screen_target_flags_without_reading_values():
    logits = torch.zeros(3, 4)
    usable, ok, bad, message = screen_target(logits, torch.tensor([1, 7, -2]), "single_label")
    assert usable.tolist() == [1, 3, 0]  # clamped so the losses can run until the check
    assert not bool(ok) and int(bad) == 7  # the first offending label
    assert message.format(value=7) == "target: label 7 is out of range [0, 4)"
    usable, ok, _, _ = screen_target(logits, torch.tensor([0, 3, 2]), "single_label")
    assert bool(ok) and usable.tolist() == [0, 3, 2]
    _, ok, bad, message = screen_target(
        torch.zeros(1, 2), torch.tensor([[1.0, 0.5]]), "multi_label"
    )
    assert not bool(ok) and float(bad) == 0.5 and "0/1" in message
