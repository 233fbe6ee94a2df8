"""MSLR (SPEC section 3): per-modality learning rates in real optimizer param groups."""

from __future__ import annotations

import pytest
import torch
from strategy_reference import (
    all_params,
    current_grads,
    forward_by_hand,
    head_params,
    image_params,
    make_batch,
    make_model,
    ref_task_loss,
    text_params,
)

from balgrad.errors import ConfigError
from balgrad.strategies import MSLR


def _by_name(optimizer):
    return {g["name"]: g for g in optimizer.param_groups}


def test_keep_mode_rates_and_groups():
    model = make_model("concat", seed=0)
    strategy = MSLR(mode="keep", lr_scales={"image": 2.0, "text": 0.5, "head": 3.0})
    opt = torch.optim.SGD(strategy.param_groups(model, lr=0.1), lr=0.1)
    groups = _by_name(opt)
    assert groups["image"]["lr"] == pytest.approx(0.2)
    assert groups["text"]["lr"] == pytest.approx(0.05)
    assert groups["head"]["lr"] == pytest.approx(0.3)
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["image"] == {id(p) for p in image_params(model)}
    assert ids["text"] == {id(p) for p in text_params(model)}
    assert ids["head"] == {id(p) for p in head_params(model)}
    # keep mode never changes them
    assert strategy.on_epoch_end(0, opt, {"image": 0.9, "text": 0.1}) == {}
    assert groups["image"]["lr"] == pytest.approx(0.2)


def test_keep_mode_sgd_step_uses_each_rate():
    model = make_model("concat", seed=1)
    x_v, x_l, y = make_batch(seed=1)
    strategy = MSLR(mode="keep", lr_scales={"image": 2.0, "text": 0.5})
    opt = torch.optim.SGD(strategy.param_groups(model, lr=0.1), lr=0.1)
    before = {p: p.detach().clone() for p in all_params(model)}
    opt.zero_grad()
    strategy.backward(model, model({"image": x_v, "text": x_l}), y)
    grads = current_grads(model)
    opt.step()
    for ps, lr in (
        (image_params(model), 0.2),
        (text_params(model), 0.05),
        (head_params(model), 0.1),
    ):
        for p in ps:
            torch.testing.assert_close(p.detach(), before[p] - lr * grads[p])


def test_gradient_is_joint_training():
    model = make_model("attention", seed=2)
    x_v, x_l, y = make_batch(seed=2)
    MSLR(mode="keep").backward(model, model({"image": x_v, "text": x_l}), y)
    z, _, _ = forward_by_hand(model, x_v, x_l)
    expected = torch.autograd.grad(ref_task_loss(z, y, "single_label"), all_params(model))
    for p, g in zip(all_params(model), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-13)


def test_dynamic_rule_over_eight_epochs():
    model = make_model("concat", seed=3)
    strategy = MSLR(mode="dynamic", window=5)
    opt = torch.optim.SGD(strategy.param_groups(model, lr=0.1), lr=0.1)
    acc_v = [0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.3]
    acc_l = [0.2, 0.4, 0.4, 0.6, 0.2, 0.4, 0.4, 0.3]
    # factor_e = acc_e / mean(acc over the previous ≤ 5 epochs); 1 at epoch 0
    factors_v = [1, 1, 1, 1, 1, 0.6 / 0.5, 0.6 / 0.52, 0.3 / 0.54]
    factors_l = [
        1,
        0.4 / 0.2,
        0.4 / 0.3,
        0.6 / (1.0 / 3),
        0.2 / 0.4,
        0.4 / 0.36,  # mean(.2, .4, .4, .6, .2)
        0.4 / 0.40,  # mean(.4, .4, .6, .2, .4)
        0.3 / 0.40,  # mean(.4, .6, .2, .4, .4)
    ]
    lr_v, lr_l = 0.1, 0.1
    for epoch in range(8):
        out = strategy.on_epoch_end(epoch, opt, {"image": acc_v[epoch], "text": acc_l[epoch]})
        lr_v *= factors_v[epoch]
        lr_l *= factors_l[epoch]
        groups = _by_name(opt)
        assert out["lr_factor_image"] == pytest.approx(factors_v[epoch], rel=1e-12)
        assert out["lr_factor_text"] == pytest.approx(factors_l[epoch], rel=1e-12)
        assert groups["image"]["lr"] == pytest.approx(lr_v, rel=1e-12)
        assert groups["text"]["lr"] == pytest.approx(lr_l, rel=1e-12)
        assert out["lr_image"] == pytest.approx(lr_v, rel=1e-12)
        assert groups["head"]["lr"] == 0.1
    # hand totals
    assert lr_v == pytest.approx(0.1 * 1.2 * (0.6 / 0.52) * (0.3 / 0.54))
    assert lr_l == pytest.approx(0.1 * 2 * (4 / 3) * 1.8 * 0.5 * (0.4 / 0.36) * 1 * 0.75)


def test_dynamic_history_survives_a_checkpoint():
    model = make_model("concat", seed=3)
    a = MSLR(mode="dynamic")
    opt_a = torch.optim.SGD(a.param_groups(model, lr=0.1), lr=0.1)
    for acc in (0.3, 0.4, 0.5):
        a.on_epoch_end(0, opt_a, {"image": acc, "text": acc})
    b = MSLR(mode="dynamic")
    b.load_state_dict(a.state_dict())
    opt_b = torch.optim.SGD(b.param_groups(model, lr=0.1), lr=0.1)
    out = b.on_epoch_end(3, opt_b, {"image": 0.6, "text": 0.2})
    assert out["lr_factor_image"] == pytest.approx(0.6 / 0.4)
    assert out["lr_factor_text"] == pytest.approx(0.2 / 0.4)


def _agm_repository_mslr(accs, init_coeff, memory_size=5):
    """The AGM repository's MSLR (``run/CREMAD_main.py``), transcribed: the coefficient
    used in each epoch's training is ``lr_init_coeff * lr_ratio``; after each epoch's
    validation the ratio is updated from a memory of the last 5 accuracies."""
    ratio, memory, used = 1.0, [], []
    for acc in accs:
        used.append(init_coeff * ratio)  # the training of this epoch
        if len(memory) < memory_size:  # the validation after it
            memory.append(acc)
        else:
            ratio = acc / (sum(memory) / len(memory))
            memory = memory[1:]
            memory.append(acc)
    return used


def test_non_cumulative_rule_is_the_agm_repositorys_mslr():
    acc_v = [0.30, 0.40, 0.45, 0.50, 0.52, 0.60, 0.58, 0.70, 0.71, 0.69, 0.80]
    acc_l = [0.50, 0.52, 0.55, 0.54, 0.56, 0.57, 0.40, 0.62, 0.61, 0.66, 0.64]
    lr = 0.002
    model = make_model("concat", seed=3)
    # the official CREMA-D coefficients, 0.9 and 1.1, as the starting scales
    strategy = MSLR(mode="dynamic", rule="non_cumulative", lr_scales={"image": 0.9, "text": 1.1})
    opt = torch.optim.SGD(strategy.param_groups(model, lr=lr), lr=lr)
    want_v = _agm_repository_mslr(acc_v, 0.9)
    want_l = _agm_repository_mslr(acc_l, 1.1)
    for epoch in range(len(acc_v)):
        groups = _by_name(opt)  # the rates this epoch trains with
        assert groups["image"]["lr"] == pytest.approx(lr * want_v[epoch], rel=1e-12)
        assert groups["text"]["lr"] == pytest.approx(lr * want_l[epoch], rel=1e-12)
        strategy.on_epoch_end(epoch, opt, {"image": acc_v[epoch], "text": acc_l[epoch]})
    # the factors never compound: the rate after a rise and a fall is the latest ratio's
    assert max(want_v) / 0.9 < 1.5
    assert groups["head"]["lr"] == lr


def test_non_cumulative_rule_keeps_a_schedulers_change_and_survives_a_checkpoint():
    model = make_model("concat", seed=3)
    a = MSLR(mode="dynamic", rule="non_cumulative", window=2)
    opt = torch.optim.SGD(a.param_groups(model, lr=0.1), lr=0.1)
    for acc in (0.4, 0.4, 0.6):  # the third epoch's ratio: 0.6 / 0.4
        a.on_epoch_end(0, opt, {"image": acc, "text": 0.5})
    assert _by_name(opt)["image"]["lr"] == pytest.approx(0.1 * 1.5)
    for group in opt.param_groups:  # a scheduler halves every rate
        group["lr"] *= 0.5
    b = MSLR(mode="dynamic", rule="non_cumulative", window=2)
    b.load_state_dict(a.state_dict())
    b.on_epoch_end(3, opt, {"image": 0.5, "text": 0.5})  # ratio 0.5 / mean(0.4, 0.6) = 1
    assert _by_name(opt)["image"]["lr"] == pytest.approx(0.05 * 1.0)
    assert _by_name(opt)["text"]["lr"] == pytest.approx(0.05)


def test_dynamic_needs_scores():
    model = make_model("concat", seed=0)
    strategy = MSLR(mode="dynamic")
    opt = torch.optim.SGD(strategy.param_groups(model, lr=0.1), lr=0.1)
    with pytest.raises(ConfigError, match="dynamic"):
        strategy.on_epoch_end(0, opt)
    assert MSLR(mode="keep").on_epoch_end(0, opt) == {}  # keep mode needs none


@pytest.mark.parametrize(
    "options,field",
    [
        ({"mode": "x"}, "mode"),
        ({"lr_scales": {"image": 0.0}}, r"lr_scales'\['image'\]"),
        ({"lr_scales": {"text": -1.0}}, r"lr_scales'\['text'\]"),
        ({"window": 0}, "window"),
        ({"rule": "compound"}, "rule"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(ConfigError, match=field):
        MSLR(**options)
