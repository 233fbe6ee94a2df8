"""PMR under ``semantics="paper"`` (Fan et al., CVPR 2023, §4 Eqs. 8–13, Algorithm 1):
the coefficients, the entropy and the loss worked out by hand at M = 2 and M = 3, the
step at M = 3 against the loss written out independently (autograd), the regulariser's
epochs, and the official script's CREMA-D preset. Float64 throughout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from reference_m import make_batch_m, make_model_m

from balgrad.errors import ConfigError
from balgrad.strategies import create_strategy
from balgrad.strategies._pmr import (
    paper_coefficients,
    pmr_paper_loss,
    prototype_entropy,
    prototype_logits,
)

THREE = ("audio", "visual", "text")
D = torch.float64


# -- by hand --------------------------------------------------------------------------
def test_the_loss_at_three_modalities_by_hand():
    # scores 5, 3, 4: ρ = 5/3.5 = 10/7, 3/4.5 = 2/3, 4/4 = 1
    # β (slow)     = 0, clip(0, 3/2 − 1, 1) = 1/2, 0
    # γ (dominant) = clip(0, 10/7 − 1, 1) = 3/7, 0, 0
    # α = 2, μ = 0.1: L = 2 + 2·(1/2)·1.2 − 0.1·(3/7)·0.5 = 3.2 − 0.15/7
    scores = torch.tensor([5.0, 3.0, 4.0], dtype=D)
    pce = torch.tensor([0.7, 1.2, 0.9], dtype=D)
    entropy = torch.tensor([0.5, 1.0, 0.8], dtype=D)
    task = torch.tensor(2.0, dtype=D)
    loss, rho, w_pce, w_per = pmr_paper_loss(task, pce, entropy, scores, alpha=2.0, mu=0.1)
    assert rho.tolist() == pytest.approx([10 / 7, 2 / 3, 1.0], abs=1e-15)
    assert w_pce.tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-15)
    assert w_per.tolist() == pytest.approx([0.3 / 7, 0.0, 0.0], abs=1e-15)
    assert float(loss) == pytest.approx(3.2 - 0.15 / 7, abs=1e-14)
    # outside the first E_r epochs: no entropy term; outside the PCE window: no PCE term
    loss, *_ = pmr_paper_loss(task, pce, entropy, scores, 2.0, 0.1, regularize=False)
    assert float(loss) == pytest.approx(3.2, abs=1e-14)
    loss, _, w_pce, _ = pmr_paper_loss(task, pce, entropy, scores, 2.0, 0.1, accelerate=False)
    assert float(loss) == pytest.approx(2.0 - 0.15 / 7, abs=1e-14)
    assert w_pce.tolist() == [0.0, 0.0, 0.0]


def test_the_coefficients_clip_at_one():
    # ρ = 1/4.5, 1/4.5, 8/1: 1/ρ − 1 = 3.5 and ρ − 1 = 7 are both clipped to 1
    _, beta, gamma = paper_coefficients(torch.tensor([1.0, 1.0, 8.0], dtype=D))
    assert beta.tolist() == [1.0, 1.0, 0.0]
    assert gamma.tolist() == [0.0, 0.0, 1.0]


def test_two_modalities_are_eq_11_on_rho_t():
    for scores, beta, gamma in (
        ([3.0, 2.0], [0.0, 0.5], [0.5, 0.0]),  # ρ_t = 1.5: γ = 0.5 on PCE_2 and H_1
        ([2.0, 3.0], [0.5, 0.0], [0.0, 0.5]),  # ρ_t = 2/3: β = 1.5 − 1 on PCE_1 and H_2
        ([4.0, 1.0], [0.0, 1.0], [1.0, 0.0]),  # ρ_t = 4: clipped
        ([2.0, 2.0], [0.0, 0.0], [0.0, 0.0]),  # ρ_t = 1: γ = clip(0, 0, 1) = 0
    ):
        _, b, g = paper_coefficients(torch.tensor(scores, dtype=D))
        assert b.tolist() == pytest.approx(beta, abs=1e-15)
        assert g.tolist() == pytest.approx(gamma, abs=1e-15)


def test_the_entropy_by_hand_and_a_class_without_a_prototype_adds_nothing():
    # h = 0, prototypes at 0 and (ln 3, 0): logits (0, −ln 3), π = (3/4, 1/4),
    # H = −(3/4 ln 3/4 + 1/4 ln 1/4) = ln 4 − (3/4) ln 3; the third class is unknown
    h = torch.zeros(2, 2, dtype=D, requires_grad=True)
    P = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, 5.0]], dtype=D)
    s = prototype_logits(h, P, torch.tensor([True, True, False]))
    H = prototype_entropy(s)
    assert float(H.detach()) == pytest.approx(math.log(4.0) - 0.75 * math.log(3.0), abs=1e-15)
    H.backward()
    assert torch.isfinite(h.grad).all()
    two = torch.tensor([[0.0, 0.0, -math.inf]], dtype=D)
    assert float(prototype_entropy(two)) == pytest.approx(math.log(2.0), abs=1e-15)


# -- the step at M = 3 against the loss written out -----------------------------------
def _written_out(model, inputs, y, alpha, mu, with_entropy):
    """L = CE(z) + α Σ β_m CE(s_m) − μ Σ γ_m H(s_m), prototypes the class means by hand."""
    with torch.no_grad():
        h0 = model.eval()(inputs).embeddings
    model.train()
    out = model(inputs)
    loss = nn.functional.cross_entropy(out.logits, y)
    s = {}
    for m in THREE:
        P = torch.stack([h0[m][y == c].mean(0) for c in range(4)])
        s[m] = -torch.cdist(out.embeddings[m], P)
    scores = [float(torch.softmax(s[m].detach(), -1)[torch.arange(len(y)), y].sum()) for m in THREE]
    beta, gamma = [], []
    for i, m in enumerate(THREE):
        rho = scores[i] / ((sum(scores) - scores[i]) / 2)
        beta.append(min(max(1 / rho - 1, 0.0), 1.0) if rho < 1 else 0.0)
        gamma.append(min(max(rho - 1, 0.0), 1.0) if rho > 1 else 0.0)
        p = torch.softmax(s[m], -1)
        H = -(p * torch.log(p)).sum(-1).mean()
        loss = loss + alpha * beta[i] * nn.functional.cross_entropy(s[m], y)
        if with_entropy:
            loss = loss - mu * gamma[i] * H
    loss.backward()
    return beta, gamma


@pytest.mark.parametrize("epoch, regularized", [(0, True), (2, False)])
def test_the_step_at_three_modalities_is_the_gradient_of_the_written_out_loss(epoch, regularized):
    model = make_model_m(THREE, seed=3, scales={"visual": 3.0})
    inputs, y = make_batch_m(THREE, seed=3)
    strategy = create_strategy("pmr", semantics="paper", alpha=0.7, mu=0.3, e_r=2)
    strategy.on_epoch_start(epoch, 4)
    strategy.prepare_epoch(model, [(inputs, y)])
    stats = strategy.backward(model, model(inputs), y)
    got = {k: p.grad.clone() for k, p in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    beta, gamma = _written_out(model, inputs, y, 0.7, 0.3, regularized)
    assert any(0 < b < 1 for b in beta) and any(0 < g < 1 for g in gamma)  # unclipped
    assert float(stats["regularized"]) == float(regularized)
    for i, m in enumerate(THREE):
        assert float(stats[f"coef_{m}"]) == pytest.approx(0.7 * beta[i], abs=1e-12)
        assert float(stats[f"reg_coef_{m}"]) == pytest.approx(
            0.3 * gamma[i] if regularized else 0.0, abs=1e-12
        )
    for k, p in model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-12, atol=1e-13, msg=k)


def test_the_regulariser_runs_in_the_first_e_r_epochs_of_the_window():
    strategy = create_strategy("pmr", semantics="paper", e_r=3, modulation_start=2)
    flags = []
    for epoch in range(7):
        strategy.on_epoch_start(epoch, 7)
        flags.append(strategy.regularizing())
    assert flags == [False, False, True, True, True, False, False]


def test_bad_paper_options_are_named():
    with pytest.raises(ConfigError, match="mu"):
        create_strategy("pmr", semantics="paper", mu=-0.1)
    with pytest.raises(ConfigError, match="e_r"):
        create_strategy("pmr", semantics="paper", e_r=-1)
    with pytest.raises(ConfigError, match="semantics"):
        create_strategy("pmr", semantics="released")


# -- the official script's preset ------------------------------------------------------
def test_the_cremad_preset_resolves_to_the_official_script_options():
    from balgrad.strategies._registry import list_strategies, strategy_info, strategy_options

    assert "pmr_cremad" in list_strategies()
    assert strategy_info("pmr_cremad")["base"] == "pmr"
    options = strategy_options("pmr_cremad")
    assert options["alpha"] == 2.0
    assert options["momentum_coef"] == 0.0
    assert (options["modulation_start"], options["modulation_end"]) == (0, 70)
    assert options["semantics"] == "official"
    strategy = create_strategy("pmr_cremad")
    assert (strategy.alpha, strategy.momentum_coef, strategy.modulation_end) == (2.0, 0.0, 70)
    assert create_strategy("pmr_cremad", alpha=3.0).alpha == 3.0  # still overridable
