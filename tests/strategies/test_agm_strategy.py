"""AGM (SPEC section 3) against hand-worked coefficients and gradients scaled by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from strategy_reference import (
    all_params,
    current_grads,
    head_params,
    image_params,
    make_batch,
    make_model,
    text_params,
)

from balgrad.strategies import AGM
from balgrad.strategies.agm import agm_responses

TOL = dict(rtol=1e-10, atol=1e-13)


def _embed(model, x_v, x_l):
    h_v = model.image_embedding(model.image_encoder(x_v))
    h_l = model.text_embedding(model.text_encoder(x_l))
    return h_v, h_l


def _responses_by_hand(model, h_v, h_l):
    f_vl = model.head(h_v, h_l)
    f_0l = model.head(torch.zeros_like(h_v), h_l)
    f_v0 = model.head(h_v, torch.zeros_like(h_l))
    return f_vl, 0.5 * (f_vl - f_0l + f_v0), 0.5 * (f_vl - f_v0 + f_0l)


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_responses_sum_to_the_fused_output(fusion, task):
    model = make_model(fusion, task, seed=1)
    x_v, x_l, _ = make_batch(task, seed=1)
    out = model(x_v, x_l)
    o_v, o_l = agm_responses(model, out.h_image, out.h_text, out.logits)
    torch.testing.assert_close(o_v + o_l, out.logits, **TOL)
    f, r_v, r_l = _responses_by_hand(model, *_embed(model, x_v, x_l))
    torch.testing.assert_close(o_v, r_v, **TOL)
    torch.testing.assert_close(o_l, r_l, **TOL)


def test_concat_response_is_the_modality_half_of_the_linear_head():
    """For a linear head on [h_v; h_l], o_v = W_v h_v + b/2 and o_l = W_l h_l + b/2."""
    model = make_model("concat", seed=2)
    x_v, x_l, _ = make_batch(seed=2)
    out = model(x_v, x_l)
    o_v, o_l = agm_responses(model, out.h_image, out.h_text, out.logits)
    linear = model.head.classifier[-1]
    d = out.h_image.shape[1]
    W, b = linear.weight, linear.bias
    torch.testing.assert_close(o_v, out.h_image @ W[:, :d].T + b / 2, **TOL)
    torch.testing.assert_close(o_l, out.h_text @ W[:, d:].T + b / 2, **TOL)


# -- κ from the running means ---------------------------------------------------------------
def test_coefficient_sequence_by_hand():
    e = math.exp
    agm = AGM(alpha=0.5)
    # step 1: running means start at this step's scores -> r̄ = r -> κ = 1
    assert agm.coefficients(1.0, 2.0) == pytest.approx((1.0, 1.0, e(1.0), e(1.0)), rel=1e-12)
    # S = (1, 2). step 2: s = (2, 1): r_v = e^{-1}, r̄_v = e^{2-1} = e
    k_v, k_l, r_v, rbar_v = agm.coefficients(2.0, 1.0)
    assert r_v == pytest.approx(e(-1)) and rbar_v == pytest.approx(e(1))
    assert k_v == pytest.approx(e(0.5 * (e(1) - e(-1))))  # exp(0.5 · 2.3504)
    assert k_l == pytest.approx(e(0.5 * (e(-1) - e(1))))
    assert k_v == pytest.approx(3.2388, abs=1e-4)
    # S = (1.5, 1.5). step 3: s = (0.5, 0.5): r = r̄ = 1
    assert agm.coefficients(0.5, 0.5)[:2] == pytest.approx((1.0, 1.0))
    # S = (3.5/3, 3.5/3). step 4: s = (0, 3): r_v = e^3, r̄_v = 1, r_l = e^-3, r̄_l = 1
    k_v, k_l, r_v, rbar_v = agm.coefficients(0.0, 3.0)
    assert rbar_v == pytest.approx(1.0)
    assert k_v == pytest.approx(e(0.5 * (1 - e(3))))
    assert k_l == pytest.approx(e(0.5 * (1 - e(-3))))
    # S = (3.5/4, 6.5/4) = (0.875, 1.625). step 5: s = (3, 0):
    # r_v = e^-3, r̄_v = e^{0.75}; r_l = e^3, r̄_l = e^{-0.75}
    k_v, k_l, r_v, rbar_v = agm.coefficients(3.0, 0.0)
    assert rbar_v == pytest.approx(e(0.75))
    assert k_v == pytest.approx(e(0.5 * (e(0.75) - e(-3))))
    assert k_l == pytest.approx(e(0.5 * (e(-0.75) - e(3))))
    # S = (6.5/5, 6.5/5) = (1.3, 1.3)
    assert agm.running == pytest.approx([1.3, 1.3])
    assert agm.count == 5


def test_coefficient_gap_is_capped_at_ten():
    agm = AGM(alpha=1.0)
    agm.coefficients(0.0, 5.0)  # S = (0, 5): r̄_v = e^5 ≈ 148
    k_v, k_l, r_v, rbar_v = agm.coefficients(5.0, 0.0)  # r_v = e^-5
    assert rbar_v == pytest.approx(math.exp(5))
    assert k_v == pytest.approx(math.exp(10.0))  # min(148.4 − 0.0067, 10) = 10
    assert k_l == pytest.approx(math.exp(math.exp(-5) - math.exp(5)))


def test_first_step_gives_kappa_one_in_backward():
    model = make_model("concat", seed=3)
    x_v, x_l, y = make_batch(seed=3)
    stats = AGM().backward(model, model(x_v, x_l), y)
    assert stats["kappa_image"] == pytest.approx(1.0, abs=1e-12)
    assert stats["kappa_text"] == pytest.approx(1.0, abs=1e-12)


# -- the gradient ----------------------------------------------------------------------------
def _reference_agm(model, x_v, x_l, y, running, alpha, task="single_label"):
    h_v, h_l = _embed(model, x_v, x_l)
    _, o_v, o_l = _responses_by_hand(model, h_v, h_l)
    if task == "single_label":
        s_v = float(F.cross_entropy(o_v.detach(), y))
        s_l = float(F.cross_entropy(o_l.detach(), y))
    else:

        def score(o):
            p = torch.sigmoid(o.detach())
            return float(-torch.log(torch.where(y > 0.5, p, 1 - p)).mean())

        s_v, s_l = score(o_v), score(o_l)
    r_v = math.exp(s_l - s_v)
    rbar_v = math.exp(running[1] - running[0])
    k_v = math.exp(alpha * min(rbar_v - r_v, 10))
    k_l = math.exp(alpha * min(1 / rbar_v - 1 / r_v, 10))
    fused = o_v + o_l
    if task == "single_label":
        loss = F.cross_entropy(fused, y)
    else:
        loss = F.binary_cross_entropy_with_logits(fused, y)
    (g_fused,) = torch.autograd.grad(loss, fused, retain_graph=True)
    params = all_params(model)
    grads = torch.autograd.grad(
        [o_v, o_l], params, grad_outputs=[k_v * g_fused, k_l * g_fused], allow_unused=True
    )
    grads = {p: torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)}
    return grads, (s_v, s_l), (k_v, k_l)


def _step(model, strategy, x_v, x_l, y):
    model.zero_grad(set_to_none=True)
    stats = strategy.backward(model, model(x_v, x_l), y)
    return current_grads(model), stats


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_gradient_is_scaled_by_kappa(fusion, task):
    alpha = 0.7
    model = make_model(fusion, task, seed=5)
    x_v, x_l, y = make_batch(task, seed=5)
    # running means away from this batch's scores, so κ != 1
    _, (s_v, s_l), _ = _reference_agm(model, x_v, x_l, y, (0.0, 0.0), alpha, task)
    running = (s_v + 0.6, s_l - 0.2)
    strategy = AGM(alpha=alpha, clip_head=False)
    strategy.load_state_dict({"running": list(running), "count": 4})
    got, stats = _step(model, strategy, x_v, x_l, y)
    expected, scores, (k_v, k_l) = _reference_agm(model, x_v, x_l, y, running, alpha, task)
    assert k_v < 0.9 and k_l > 1.1
    assert stats["kappa_image"] == pytest.approx(k_v, rel=1e-10)
    assert stats["kappa_text"] == pytest.approx(k_l, rel=1e-10)
    assert (stats["agm_score_image"], stats["agm_score_text"]) == pytest.approx(scores)
    for p in all_params(model):
        torch.testing.assert_close(got[p], expected[p], **TOL)
    # the running means moved after κ: S + (s − S) / 5
    assert strategy.running == pytest.approx(
        [running[0] + (scores[0] - running[0]) / 5, running[1] + (scores[1] - running[1]) / 5]
    )
    assert strategy.count == 5


def test_image_embedding_gradient_is_kappa_times_plain_for_concat():
    """Linear head on concat: o_v depends on h_v only, so θ_v's gradient is exactly
    κ_v times the plain joint-training gradient, and θ_l's is κ_l times its own."""
    model = make_model("concat", seed=6)
    x_v, x_l, y = make_batch(seed=6)
    _, (s_v, s_l), _ = _reference_agm(model, x_v, x_l, y, (0.0, 0.0), 1.0)
    running = (s_v - 0.4, s_l + 0.3)
    strategy = AGM(alpha=1.0, clip_head=False)
    strategy.load_state_dict({"running": list(running), "count": 2})
    got, stats = _step(model, strategy, x_v, x_l, y)
    h_v, h_l = _embed(model, x_v, x_l)
    loss = F.cross_entropy(model.head(h_v, h_l), y)
    plain = dict(zip(all_params(model), torch.autograd.grad(loss, all_params(model))))
    for p in image_params(model):
        torch.testing.assert_close(got[p], stats["kappa_image"] * plain[p], **TOL)
    for p in text_params(model):
        torch.testing.assert_close(got[p], stats["kappa_text"] * plain[p], **TOL)
    assert stats["kappa_image"] != pytest.approx(1.0)


def _head_flat(d, model):
    return torch.cat([d[p].flatten() for p in head_params(model)])


def test_head_gradient_clipped_to_norm_one_when_an_entry_exceeds_one():
    model = make_model("concat", seed=7, encoder_scale=40.0)
    x_v, x_l, y = make_batch(seed=7)
    strategy = AGM()
    got, stats = _step(model, strategy, x_v, x_l, y)
    expected, _, _ = _reference_agm(model, x_v, x_l, y, stats_running_first(stats), 1.0)
    ref_head = _head_flat(expected, model)
    assert ref_head.abs().max() > 1
    assert stats["head_clipped"] == 1.0
    head = _head_flat(got, model)
    assert float(head.norm()) == pytest.approx(1.0, rel=1e-12)
    torch.testing.assert_close(head, ref_head / ref_head.norm(), **TOL)
    # the towers are not clipped
    for p in [*image_params(model), *text_params(model)]:
        torch.testing.assert_close(got[p], expected[p], **TOL)
    # and without clipping the head gets the raw gradient
    got2, stats2 = _step(model, AGM(clip_head=False), x_v, x_l, y)
    assert stats2["head_clipped"] == 0.0
    torch.testing.assert_close(_head_flat(got2, model), ref_head, **TOL)


def test_head_gradient_not_clipped_when_entries_are_within_one():
    """Norm above 1 but every entry inside [−1, 1]: SPEC clips on entries, not the norm."""
    model = make_model("concat", seed=1, encoder_scale=5.0)
    x_v, x_l, y = make_batch(seed=1)
    got, stats = _step(model, AGM(), x_v, x_l, y)
    expected, _, _ = _reference_agm(model, x_v, x_l, y, stats_running_first(stats), 1.0)
    assert _head_flat(expected, model).abs().max() <= 1
    assert _head_flat(expected, model).norm() > 1
    assert stats["head_clipped"] == 0.0
    torch.testing.assert_close(_head_flat(got, model), _head_flat(expected, model), **TOL)


def stats_running_first(stats):
    """On the first step the running means are this step's scores (κ = 1)."""
    return (stats["agm_score_image"], stats["agm_score_text"])


def test_state_dict_round_trip_reproduces_kappa():
    a = AGM(alpha=0.3)
    for s in [(0.2, 0.9), (0.5, 0.4), (1.1, 0.3)]:
        a.coefficients(*s)
    b = AGM(alpha=0.3)
    b.load_state_dict(a.state_dict())
    assert b.coefficients(0.7, 0.6) == a.coefficients(0.7, 0.6)
