"""OGM-GE (SPEC section 3) against hand-worked coefficients and plain autograd."""

from __future__ import annotations

import math

import pytest
import torch
from strategy_reference import (
    all_params,
    current_grads,
    forward_by_hand,
    grads_of,
    head_params,
    image_params,
    make_batch,
    make_model,
    ref_task_loss,
    text_params,
)

from balgrad.strategies import OGMGE
from balgrad.strategies.ogm_ge import ogm_coefficients

TOL = dict(rtol=1e-10, atol=1e-13)


# -- coefficients -------------------------------------------------------------------------
def test_coefficients_image_dominant():
    rho, k_v, k_l = ogm_coefficients(3.0, 1.0, 0.1)
    assert rho == pytest.approx(3.0)
    assert k_v == pytest.approx(1 - math.tanh(0.3))
    assert k_v == pytest.approx(0.708687, abs=1e-6)
    assert k_l == 1.0


def test_coefficients_text_dominant():
    # ρ_v = 1/4: k_l = 1 − tanh(0.1 · 4), k_v = 1
    rho, k_v, k_l = ogm_coefficients(1.0, 4.0, 0.1)
    assert rho == pytest.approx(0.25)
    assert k_v == 1.0
    assert k_l == pytest.approx(1 - math.tanh(0.4))
    assert k_l == pytest.approx(0.620051, abs=1e-6)


def test_coefficients_balanced_take_the_else_branch():
    # ρ_v = 1 is not > 1: k_l = 1 − tanh(α · 1)
    rho, k_v, k_l = ogm_coefficients(2.0, 2.0, 0.5)
    assert rho == 1.0
    assert k_v == 1.0
    assert k_l == pytest.approx(1 - math.tanh(0.5))


def test_coefficients_alpha_zero_is_no_modulation():
    assert ogm_coefficients(5.0, 1.0, 0.0)[1:] == (1.0, 1.0)


def test_coefficients_zero_score_is_finite():
    rho, k_v, k_l = ogm_coefficients(2.0, 0.0, 0.1)
    assert k_v == pytest.approx(0.0) and k_l == 1.0
    rho, k_v, k_l = ogm_coefficients(0.0, 2.0, 0.1)
    assert k_v == 1.0 and k_l == pytest.approx(0.0)


# -- the modulated gradient ----------------------------------------------------------------
def _scores(model, x_v, x_l, y):
    """s_m = batch *sum* of softmax(z_m)[y], by hand."""
    with torch.no_grad():
        _, z_v, z_l = forward_by_hand(model, x_v, x_l)
        p_v, p_l = torch.softmax(z_v, -1), torch.softmax(z_l, -1)
        s_v = sum(float(p_v[i, int(y[i])]) for i in range(len(y)))
        s_l = sum(float(p_l[i, int(y[i])]) for i in range(len(y)))
    return s_v, s_l


def _plain_grads(model, x_v, x_l, y):
    z, _, _ = forward_by_hand(model, x_v, x_l)
    return grads_of(ref_task_loss(z, y, "single_label"), all_params(model))


def _hand_k(s_v, s_l, alpha):
    rho = s_v / s_l
    if rho > 1:
        return 1 - math.tanh(alpha * rho), 1.0
    return 1.0, 1 - math.tanh(alpha / rho)


def _step(model, strategy, x_v, x_l, y):
    model.zero_grad(set_to_none=True)
    stats = strategy.backward(model, model(x_v, x_l), y)
    return current_grads(model), stats


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_modulated_grad_without_noise(fusion, seed):
    alpha = 0.8  # large, so k is visibly below 1
    model = make_model(fusion, seed=seed)
    x_v, x_l, y = make_batch(seed=seed)
    got, stats = _step(model, OGMGE(alpha=alpha, noise=False), x_v, x_l, y)
    plain = _plain_grads(model, x_v, x_l, y)
    s_v, s_l = _scores(model, x_v, x_l, y)
    k_v, k_l = _hand_k(s_v, s_l, alpha)
    assert min(k_v, k_l) < 0.95
    assert stats["coef_image"] == pytest.approx(k_v, rel=1e-10)
    assert stats["coef_text"] == pytest.approx(k_l, rel=1e-10)
    assert stats["modulated"] == 1.0
    for group, k in ((image_params(model), k_v), (text_params(model), k_l)):
        for p in group:
            expected = k * plain[p] if p.dim() >= 2 else plain[p]
            torch.testing.assert_close(got[p], expected, **TOL)
    for p in head_params(model):
        torch.testing.assert_close(got[p], plain[p], **TOL)


def _big_model(seed=0):
    """The image encoder weight is 200x200 (40 000 entries) for noise statistics."""
    return make_model("concat", seed=seed, image_in=200, encoder_dim=200)


def _big_batch(seed=0):
    return make_batch(seed=seed, image_in=200, batch=16)


def test_noise_statistics_on_a_large_weight():
    model = _big_model()
    x_v, x_l, y = _big_batch()
    alpha = 0.5
    got, stats = _step(model, OGMGE(alpha=alpha, noise=True, seed=3), x_v, x_l, y)
    plain = _plain_grads(model, x_v, x_l, y)
    k = {"image": stats["coef_image"], "text": stats["coef_text"]}
    w = model.image_encoder.linear.weight
    g = plain[w]
    noise = got[w] - k["image"] * g
    std = g.std()
    assert std > 0
    assert abs(float(noise.mean())) < 0.05 * float(std)  # 40 000 draws: se = std / 200
    assert float(noise.std()) == pytest.approx(float(std), rel=0.03)
    # the noise is not a rescaled gradient: nearly uncorrelated with it
    assert abs(float(torch.corrcoef(torch.stack([noise.flatten(), g.flatten()]))[0, 1])) < 0.05
    # 1-dim parameters and the head are untouched
    for p in [*image_params(model), *text_params(model)]:
        if p.dim() < 2:
            torch.testing.assert_close(got[p], plain[p], **TOL)
    for p in head_params(model):
        torch.testing.assert_close(got[p], plain[p], **TOL)


def test_noise_is_added_where_k_is_one():
    model = _big_model(seed=1)
    x_v, x_l, y = _big_batch(seed=1)
    got, stats = _step(model, OGMGE(alpha=0.5, noise=True), x_v, x_l, y)
    plain = _plain_grads(model, x_v, x_l, y)
    undamped = "text" if stats["coef_text"] == 1.0 else "image"
    assert stats[f"coef_{undamped}"] == 1.0
    params = text_params(model) if undamped == "text" else image_params(model)
    for p in params:
        if p.dim() >= 2:
            diff = got[p] - plain[p]
            assert diff.abs().max() > 0
            # std of the noise ≈ std of the gradient of that parameter (a loose bound:
            # the small matrices have tens of entries)
            assert 0.3 < float(diff.std() / plain[p].std()) < 3.0


def test_same_seed_same_noise_and_other_seed_other_noise():
    model = _big_model(seed=2)
    x_v, x_l, y = _big_batch(seed=2)
    a, _ = _step(model, OGMGE(noise=True, seed=7), x_v, x_l, y)
    b, _ = _step(model, OGMGE(noise=True, seed=7), x_v, x_l, y)
    c, _ = _step(model, OGMGE(noise=True, seed=8), x_v, x_l, y)
    w = model.image_encoder.linear.weight
    for p in all_params(model):
        assert torch.equal(a[p], b[p])
    assert not torch.equal(a[w], c[w])


def test_noise_changes_from_step_to_step():
    model = _big_model(seed=2)
    x_v, x_l, y = _big_batch(seed=2)
    strategy = OGMGE(noise=True, seed=7)
    a, _ = _step(model, strategy, x_v, x_l, y)
    b, _ = _step(model, strategy, x_v, x_l, y)
    assert not torch.equal(
        a[model.image_encoder.linear.weight], b[model.image_encoder.linear.weight]
    )


# -- the modulation window -----------------------------------------------------------------
def test_default_window_is_first_half():
    s = OGMGE()
    active = []
    for epoch in range(10):
        s.on_epoch_start(epoch, num_epochs=10)
        active.append(s.active())
    assert active == [True] * 5 + [False] * 5


def test_custom_window():
    s = OGMGE(modulation_start=2, modulation_end=4)
    active = []
    for epoch in range(8):
        s.on_epoch_start(epoch, num_epochs=8)
        active.append(s.active())
    assert active == [False, False, True, True, False, False, False, False]


def test_outside_the_window_the_grad_is_plain_joint_training():
    model = make_model("concat", seed=4)
    x_v, x_l, y = make_batch(seed=4)
    strategy = OGMGE(alpha=0.8, noise=True)
    strategy.on_epoch_start(5, num_epochs=10)
    got, stats = _step(model, strategy, x_v, x_l, y)
    assert stats["modulated"] == 0.0
    plain = _plain_grads(model, x_v, x_l, y)
    for p in all_params(model):
        torch.testing.assert_close(got[p], plain[p], **TOL)


def test_bad_window_raises():
    from balgrad.errors import ConfigError

    with pytest.raises(ConfigError, match="modulation_end"):
        OGMGE(modulation_start=5, modulation_end=2)
    with pytest.raises(ConfigError, match="alpha"):
        OGMGE(alpha=-1.0)
