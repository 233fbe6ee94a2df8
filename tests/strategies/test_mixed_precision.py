"""Mixed precision: every engine strategy under CPU bf16 autocast (backward inside or
outside the region) and with a GradScaler (docs/spec.md, "Mixed precision")."""

from __future__ import annotations

import copy

import pytest
import torch
from owned import IDS, OWNED, group_grad, groups, make_strategy
from strategy_reference import make_batch, make_model

from balgrad.errors import NonFiniteLossError

# (task, seed, conflicting): seeds whose fp32 step has |cos(g_T, g_kl)| > 0.05 for both
# BalGrad variants, so that bf16 rounding cannot flip the projection decision; one seed
# where the task and KL gradients conflict (the projection branch), one where they agree
SEEDS = {
    ("single_label", "balgrad"): {True: 10, False: 1},
    ("single_label", "balgrad_fast"): {True: 9, False: 1},
    ("multi_label", "balgrad"): {True: 10, False: 8},
    ("multi_label", "balgrad_fast"): {True: 7, False: 8},
}
#: bf16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 0.2%). Under CPU autocast every
#: linear layer of the tiny model rounds its input and weight to bf16, in the forward and
#: again in the backward, about six roundings along each path: ~1% relative error in a
#: gradient, 0.3-0.7% measured. 3% (relative, per parameter group) leaves a 4x margin
#: and still fails if a term is dropped or a loss is computed in bf16 by mistake.
BF16_RTOL = 3e-2


def _seed(task, name, conflicting):
    family = "balgrad_fast" if name == "balgrad_fast" else "balgrad"
    return SEEDS[(task, family)][conflicting]


def _data(task, seed, dtype):
    x_v, x_l, y = make_batch(task, seed=seed, batch=16)
    y = y if task == "single_label" else y.to(dtype)
    return x_v.to(dtype), x_l.to(dtype), y


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("conflicting", [True, False])
@pytest.mark.parametrize("case", OWNED, ids=IDS)
def test_bf16_autocast_inside_or_outside_matches_fp32(case, task, conflicting):
    _, name, options = case
    seed = _seed(task, name, conflicting)
    model = make_model("concat", task, seed=seed, dtype=torch.float32)
    inside, outside = copy.deepcopy(model), copy.deepcopy(model)
    x_v, x_l, y = _data(task, seed, torch.float32)

    ref = make_strategy(name, options).backward(model, model({"image": x_v, "text": x_l}), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = inside({"image": x_v, "text": x_l})
        assert out.logits.dtype == torch.bfloat16
        stats_in = make_strategy(name, options).backward(inside, out, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = outside({"image": x_v, "text": x_l})
    stats_out = make_strategy(name, options).backward(outside, out, y)

    for p, q in zip(inside.parameters(), outside.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:  # the strategy's own arithmetic never runs under autocast
            assert torch.equal(p.grad, q.grad)
    for group, params in groups(model).items():
        want = group_grad(params)
        got = group_grad(groups(inside)[group])
        assert got.dtype == torch.float32
        err = float((got - want).norm() / want.norm())
        assert err < BF16_RTOL, f"{group}: relative error {err:.4f}"
    for key, value in stats_in.items():
        assert value.dtype in (torch.float32, torch.float64) and torch.isfinite(value), key
    if name.startswith("balgrad") and options.get("projection_scope") != "per_sample":
        assert abs(float(ref["cos_task_kl"])) > 0.05 or name == "balgrad_unimodal_only"
        assert float(stats_in["conflict"]) == float(ref["conflict"])
        assert float(stats_out["cos_head_unimodal"]) == pytest.approx(
            float(ref["cos_head_unimodal"]), abs=BF16_RTOL
        )


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("case", OWNED, ids=IDS)
def test_a_loss_scale_scales_the_gradient_and_nothing_else(case, task):
    """Every coefficient (cosines, projection, contribution weights, norm equalisation)
    is scale-invariant: with every loss multiplied by s, .grad is s times the unscaled
    one, and the scaler's unscaled step equals the plain step."""
    _, name, options = case
    s = 2.0**10
    model = make_model("concat", task, seed=10)
    scaled = copy.deepcopy(model)
    x_v, x_l, y = _data(task, 10, torch.float64)
    plain_stats = make_strategy(name, options).backward(
        model, model({"image": x_v, "text": x_l}), y
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=s)
    scaled_stats = make_strategy(name, options).backward(
        scaled, scaled({"image": x_v, "text": x_l}), y, scaler=scaler
    )
    for p, q in zip(model.parameters(), scaled.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, s * p.grad, rtol=1e-12, atol=0)
    for key in plain_stats:
        if not key.startswith("norm_"):  # norms are of the scaled gradients
            torch.testing.assert_close(scaled_stats[key], plain_stats[key], rtol=1e-10, atol=1e-13)
    sgd_plain = torch.optim.SGD(model.parameters(), lr=0.1)
    sgd_scaled = torch.optim.SGD(scaled.parameters(), lr=0.1)
    sgd_plain.step()
    scaler.step(sgd_scaled)
    scaler.update()
    for p, q in zip(model.parameters(), scaled.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", OWNED, ids=IDS)
def test_non_finite_gradients_are_left_to_the_scaler(case):
    """Finite losses, infinite gradients (an fp16 overflow): with a scaler the step is
    not an error and scaler.step skips it; without one the check names the gradient."""
    _, name, options = case
    model = make_model("concat", seed=1, dtype=torch.float32)
    x_v, x_l, y = _data("single_label", 1, torch.float32)

    def poisoned_output(m):
        out = m({"image": x_v, "text": x_l})
        out.embeddings["image"].register_hook(lambda g: g * float("inf"))
        return out

    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    make_strategy(name, options).backward(model, poisoned_output(model), y, scaler=scaler)
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0**7  # it found the infinite gradient and backed off
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)
    model.zero_grad()
    with pytest.raises(NonFiniteLossError, match="gradient"):
        make_strategy(name, options).backward(model, poisoned_output(model), y)


@pytest.mark.parametrize("case", OWNED, ids=IDS)
def test_half_precision_model_runs(case):
    """A model held in bf16 itself (no autocast): gradients in bf16, reductions in fp32."""
    _, name, options = case
    model = make_model("concat", seed=1, dtype=torch.bfloat16)
    x_v, x_l, y = _data("single_label", 1, torch.bfloat16)
    stats = make_strategy(name, options).backward(model, model({"image": x_v, "text": x_l}), y)
    assert all(torch.isfinite(v) for v in stats.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads)


def test_losses_from_half_precision_logits_are_float32():
    from balgrad.tasks import symmetric_kl, task_loss

    z = torch.randn(4, 3).to(torch.bfloat16)
    y = torch.tensor([0, 1, 2, 0])
    assert task_loss(z, y, "single_label").dtype == torch.float32
    assert symmetric_kl(z, z.flip(0), "single_label").dtype == torch.float32
