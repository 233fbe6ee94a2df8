"""Joint training: ``.grad`` is what ``L_T.backward()`` gives, accumulation included."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from strategy_reference import all_params, make_batch, make_model

from balgrad.strategies import Joint


def _backward_by_hand(model, x_v, x_l, y, task):
    out = model({"image": x_v, "text": x_l})
    if task == "single_label":
        loss = F.cross_entropy(out.logits, y)
    else:
        loss = F.binary_cross_entropy_with_logits(out.logits, y)
    loss.backward()
    return float(loss.detach())


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("unimodal_head", ["shared", "separate"])
def test_grad_equals_task_loss_backward(fusion, task, unimodal_head):
    model = make_model(fusion, task, unimodal_head=unimodal_head, seed=1)
    twin = copy.deepcopy(model)
    x_v, x_l, y = make_batch(task, seed=1)
    stats = Joint().backward(model, model({"image": x_v, "text": x_l}), y)
    loss = _backward_by_hand(twin, x_v, x_l, y, task)
    assert stats["loss_task"] == pytest.approx(loss, rel=1e-12)
    for p, q in zip(model.parameters(), twin.parameters()):
        if q.grad is None:  # separate unimodal heads: L_T does not reach them
            assert p.grad is None or torch.count_nonzero(p.grad) == 0
        else:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-15)


def test_backward_accumulates_like_loss_backward():
    model = make_model("concat", seed=2)
    twin = copy.deepcopy(model)
    x1, t1, y1 = make_batch(seed=2)
    x2, t2, y2 = make_batch(seed=3)
    # existing gradients (a previous micro-batch) in both
    Joint().backward(model, model({"image": x1, "text": t1}), y1)
    _backward_by_hand(twin, x1, t1, y1, "single_label")
    for p in all_params(model):
        assert p.grad is not None
    Joint().backward(model, model({"image": x2, "text": t2}), y2)
    _backward_by_hand(twin, x2, t2, y2, "single_label")
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-15)


def test_grad_written_into_preset_grad_adds():
    model = make_model("sum", seed=4)
    twin = copy.deepcopy(model)
    x_v, x_l, y = make_batch(seed=4)
    for p, q in zip(model.parameters(), twin.parameters()):
        p.grad = torch.full_like(p, 0.25)
        q.grad = torch.full_like(q, 0.25)
    Joint().backward(model, model({"image": x_v, "text": x_l}), y)
    _backward_by_hand(twin, x_v, x_l, y, "single_label")
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-15)


def test_frozen_parameters_get_no_grad():
    model = make_model("concat", seed=5)
    model.image_encoder.requires_grad_(False)
    x_v, x_l, y = make_batch(seed=5)
    Joint().backward(model, model({"image": x_v, "text": x_l}), y)
    for p in model.image_encoder.parameters():
        assert p.grad is None
    for p in model.image_embedding.parameters():
        assert p.grad is not None


def test_observers_see_each_step():
    model = make_model("concat", seed=6)
    x_v, x_l, y = make_batch(seed=6)
    seen = []
    strategy = Joint()
    strategy.add_observer(lambda step, stats: seen.append((step, stats["loss_task"])))
    for _ in range(2):
        strategy.backward(model, model({"image": x_v, "text": x_l}), y)
    assert [s for s, _ in seen] == [0, 1]
    assert seen[0][1] == pytest.approx(
        F.cross_entropy(model({"image": x_v, "text": x_l}).logits, y).item()
    )
