"""Each method's arithmetic as pure functions of per-modality tensors, on hand-worked
three-modality cases (the expected numbers are worked out in the comments, or come from
an independent formula: an explicit projection of the concatenated vectors, a closed-form
minimisation), and the step's context passed to ``compute``, not stored on the strategy."""

from __future__ import annotations

import math

import pytest
import torch
from strategy_reference import TinyEncoder

from balgrad._grad import project_conflicting_
from balgrad.errors import ConfigError
from balgrad.models._multimodal import MultimodalModel
from balgrad.names import Schema
from balgrad.report import _diagnostics as diagnostics
from balgrad.strategies import Joint, StepContext, create_strategy
from balgrad.strategies._agm import agm_kappa, agm_ratios, running_scores
from balgrad.strategies._balgrad import (
    contribution_weights,
    ema_scores,
    kl_scale_factors,
    projected_geometry,
    projection_coefficients,
)
from balgrad.strategies._base import Strategy
from balgrad.strategies._mmpareto import min_norm_weights, mmpareto_weights
from balgrad.strategies._mslr import lr_ratio, rate_change
from balgrad.strategies._ogm_ge import ogm_ge_coefficients
from balgrad.strategies._pmr import pmr_coefficients


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=torch.float64))


# -- BalGrad ---------------------------------------------------------------------------
def test_balgrad_contribution_weights_at_three_modalities():
    # c = s / Σs = (.2, .3, .5); w = 3 (1 − c) / 2 = (1.2, 1.05, .75), mean 1
    c, w = contribution_weights(t(0.2, 0.3, 0.5))
    close(c, t(0.2, 0.3, 0.5))
    close(w, t(1.2, 1.05, 0.75))
    # s = (1, 1, 2): c = (.25, .25, .5), w = (1.125, 1.125, .75)
    close(contribution_weights(t(1.0, 1.0, 2.0))[1], t(1.125, 1.125, 0.75))
    # no score at all: every modality contributes a third, weight 1
    c, w = contribution_weights(t(0.0, 0.0, 0.0))
    close(c, t(1 / 3, 1 / 3, 1 / 3))
    close(w, t(1.0, 1.0, 1.0))


def test_balgrad_score_average_across_steps():
    # b = .5: .5 (.2, .4, .6) + .5 (.4, .4, 0) = (.3, .4, .3)
    close(ema_scores(t(0.2, 0.4, 0.6), t(0.4, 0.4, 0.0), 0.5), t(0.3, 0.4, 0.3))
    close(ema_scores(None, t(0.4, 0.4, 0.0), 0.5), t(0.4, 0.4, 0.0))  # the first step
    # a batch with a NaN score leaves the average as it was
    close(ema_scores(t(0.2, 0.4, 0.6), t(0.4, math.nan, 0.0), 0.5), t(0.2, 0.4, 0.6))


def test_balgrad_kl_factors_at_three_modalities():
    w = t(1.2, 1.05, 0.75)
    # norms (1, 2, 3), mean n = 2: f = w n / norm = (2.4, 1.05, .5)
    f, shown = kl_scale_factors(t(1.0, 2.0, 3.0), w, "contribution", True)
    close(f, t(2.4, 1.05, 0.5))
    close(shown, w)
    # a zero-norm g_kl^m contributes zero; norms (0, 2, 4), n = 2: f = (0, 1.05, .375)
    close(kl_scale_factors(t(0.0, 2.0, 4.0), w, "contribution", True)[0], t(0.0, 1.05, 0.375))
    close(kl_scale_factors(t(1.0, 2.0, 3.0), w, "contribution", False)[0], w)
    f, shown = kl_scale_factors(t(1.0, 2.0, 3.0), w, "none", True)
    close(f, t(1.0, 1.0, 1.0))
    close(shown, t(1.0, 1.0, 1.0))


# three modalities, each a 2-vector: g_T^m and g_kl^m
G_T = [t(-1.0, 1.0), t(0.5, 0.0), t(-0.5, 0.0)]
G_KL = [t(1.0, 0.0), t(1.0, 0.0), t(1.0, 1.0)]


def _stats(g_t, g_k):
    return (
        torch.stack([a @ b for a, b in zip(g_t, g_k)]),
        torch.stack([b @ b for b in g_k]),
        torch.stack([a @ a for a in g_t]),
    )


def _project(g, r):
    """g − <g, r>/|r|² r where <g, r> < 0: PCGrad's rule on one vector, written out."""
    d = g @ r
    return g - d / (r @ r) * r if d < 0 else g


def test_balgrad_projection_rule_matches_the_explicit_projection():
    d, r2, t2 = _stats(G_T, G_KL)
    close(d, t(-1.0, 0.5, -0.5))  # <g_T^m, g_kl^m>
    close(r2, t(1.0, 1.0, 2.0))
    # global: Σd = −1 < 0, Σr2 = 4: one α = −1/4 for every modality
    alpha, projected = projection_coefficients(d, r2, "global")
    close(alpha, t(-0.25, -0.25, -0.25))
    assert bool(projected)
    whole = _project(torch.cat(G_T), torch.cat(G_KL))
    after = torch.cat([g - a * k for g, a, k in zip(G_T, alpha, G_KL)])
    close(after, whole)
    dot_after, sq_after = projected_geometry(d, r2, t2, alpha)
    close(dot_after, whole @ torch.cat(G_KL))  # 0: the conflict is gone
    close(sq_after, whole @ whole)  # by hand: |(−.75, 1, .75, 0, −.25, .25)|² = 2.25
    close(sq_after, 1.5625 + (0.75**2) + (0.25**2 + 0.25**2))
    # per modality: α = d_m / r2_m where d_m < 0: (−1, 0, −1/4)
    alpha, projected = projection_coefficients(d, r2, "per_modality")
    close(alpha, t(-1.0, 0.0, -0.25))
    assert bool(projected)
    for g, a, k in zip(G_T, alpha, G_KL):
        close(g - a * k, _project(g, k))
    # no conflict: Σd = 1 > 0, nothing projected
    alpha, projected = projection_coefficients(t(1.0, 0.5, -0.5), r2, "global")
    close(alpha, t(0.0, 0.0, 0.0))
    assert not bool(projected)


def test_the_exact_balgrad_projection_over_parameter_lists_follows_the_same_rule():
    """BalGrad's projection over its per-parameter lists (``_grad.project_conflicting_``)
    ends where the explicit projection of the concatenated vectors does."""
    g = [v.clone() for v in G_T]
    result = project_conflicting_(g, G_KL, torch.ones(3, dtype=torch.float64))
    close(torch.cat(g), _project(torch.cat(G_T), torch.cat(G_KL)))
    close(result.dot, -1.0)
    close(result.ref_sq_norm, 4.0)


# -- OGM-GE, AGM, MSLR, MMPareto, PMR ----------------------------------------------------
def test_ogm_ge_coefficients_at_three_modalities():
    # rest means (5/2, 2, 3/2): ρ = (.4, 1, 2); only ρ > 1 is damped, k = 1 − tanh(.1 · 2)
    rho, k = ogm_ge_coefficients(t(1.0, 2.0, 3.0), 0.1)
    close(rho, t(0.4, 1.0, 2.0))
    close(k, t(1.0, 1.0, 1 - math.tanh(0.2)))
    rho, k = ogm_ge_coefficients(t(2.0, 2.0, 2.0), 0.1)  # a tie damps nobody
    close(k, t(1.0, 1.0, 1.0))
    # two modalities: the official ρ = s_1 / s_2 = 3, k_1 = 1 − tanh(.3)
    rho, k = ogm_ge_coefficients(t(3.0, 1.0), 0.1)
    close(rho, t(3.0))
    close(k, t(1 - math.tanh(0.3), 1.0))


def test_agm_kappa_and_running_scores_at_three_modalities():
    s = t(0.5, 1.0, 1.5)
    # mean 1: r_m = exp(3/2 (1 − s_m)) = (e^.75, 1, e^−.75); r̄ = 1 on zero running means
    close(agm_ratios(s), t(math.exp(0.75), 1.0, math.exp(-0.75)))
    kappa, r, rbar = agm_kappa(s, torch.zeros(3, dtype=torch.float64), 1.0, 10.0)
    close(rbar, t(1.0, 1.0, 1.0))
    close(kappa, t(math.exp(1 - math.exp(0.75)), 1.0, math.exp(1 - math.exp(-0.75))))
    # the cap: 1 − e^−.75 ≈ .53 > .1, so κ_3 = e^.1
    close(agm_kappa(s, torch.zeros(3, dtype=torch.float64), 1.0, 0.1)[0][2], math.exp(0.1))
    # n = 3: S = 2/3 (.3, .6, .9) + 1/3 (.6, .9, 1.2) = (.4, .7, 1)
    running, count = running_scores(t(0.3, 0.6, 0.9), torch.tensor(2), t(0.6, 0.9, 1.2))
    close(running, t(0.4, 0.7, 1.0))
    assert int(count) == 3
    running, count = running_scores(t(0.3, 0.6, 0.9), torch.tensor(2), t(0.6, math.nan, 1.2))
    close(running, t(0.3, 0.6, 0.9))
    assert int(count) == 2


def test_mslr_rules():
    assert lr_ratio(60.0, [40.0, 50.0], needed=1) == pytest.approx(60 / 45)
    assert lr_ratio(60.0, [40.0, 50.0], needed=5) == 1.0  # non-cumulative: too few yet
    assert lr_ratio(60.0, [], needed=1) == 1.0
    assert lr_ratio(60.0, [0.0, 0.0], needed=1) == 1.0
    assert rate_change(1.2, 1.5, "cumulative") == 1.2  # compounds
    assert rate_change(1.2, 1.5, "non_cumulative") == pytest.approx(0.8)  # 1.2 / 1.5


def test_mmpareto_min_norm_weights_at_three_encoders():
    # encoder 1: g_T = (1, 0), g_u = (0, 1): orthogonal, MinNorm c = 1/2
    # encoder 2: g_T = (1, 0), g_u = (−1, 1): |(2c − 1, 1 − c)|² is least at c = 3/5
    # encoder 3: g_T = (2, 0), g_u = (3, 0): they agree (cos > 0), 1/2 each
    dot, sq_t, sq_u = t(0.0, -1.0, 6.0), t(1.0, 1.0, 4.0), t(1.0, 2.0, 9.0)
    k = mmpareto_weights(dot, sq_t, sq_u, official=False)
    close(k, torch.tensor([[0.5, 0.5], [0.6, 0.4], [0.5, 0.5]], dtype=torch.float64))
    # an end point: g_1 = (1, 0), g_2 = (2, 0): |(2 − c, 0)| is least at c = 1
    # (0.999 in the official solver)
    c, rest = min_norm_weights(t(1.0), t(2.0), t(4.0), official=False)
    close(c, t(1.0))
    close(rest, t(0.0))
    close(min_norm_weights(t(1.0), t(2.0), t(4.0), official=True)[0], t(0.999))


def test_pmr_coefficients_at_three_modalities():
    # ρ = (.4, 1, 2) as OGM-GE's; only the slow modality (ρ < 1) gets α
    rho, beta = pmr_coefficients(t(1.0, 2.0, 3.0), 2.0)
    close(rho, t(0.4, 1.0, 2.0))
    close(beta, t(2.0, 0.0, 0.0))


# -- the step's context, declared statistics and capabilities ----------------------------
THREE = ("audio", "video", "text")


def _model_and_batch():
    torch.manual_seed(0)
    model = MultimodalModel(
        {m: TinyEncoder(3 + i, 5) for i, m in enumerate(THREE)}, num_classes=3, embed_dim=4
    ).double()
    inputs = {m: torch.randn(6, 3 + i, dtype=torch.float64) for i, m in enumerate(THREE)}
    return model, inputs, torch.tensor([0, 1, 2, 0, 1, 2])


def test_compute_gets_the_step_context_and_nothing_is_left_on_the_strategy():
    seen = []

    class Recording(Joint):
        def compute(self, model, output, target, ctx):
            seen.append(ctx)
            return super().compute(model, output, target, ctx)

    model, inputs, y = _model_and_batch()
    strategy = Recording()
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    strategy.backward(model, model(inputs), y)
    strategy.backward(model, model(inputs), y, scaler=scaler)
    assert [type(c) for c in seen] == [StepContext, StepContext]
    assert [c.step for c in seen] == [0, 1]
    assert seen[0].scaler is None and seen[1].scaler is scaler and not seen[1].ddp
    assert seen[1].layout is strategy.layout(model)
    assert not any(hasattr(strategy, a) for a in ("scaler", "ddp", "scaled", "loss_grads"))


def test_a_compute_with_the_old_signature_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"compute\(self, model, output, target, ctx\)"):

        class Old(Strategy):
            def compute(self, model, output, target):
                return {}


def test_the_report_reads_the_keys_the_strategies_build():
    model, inputs, y = _model_and_batch()
    stats = create_strategy("balgrad").backward(model, model(inputs), y)
    for key in (diagnostics.COS_RAW, diagnostics.COS_PROJECTED, diagnostics.PROJECTED):
        assert key in stats
    assert all(diagnostics.loss_key(m) in stats for m in THREE)


def test_a_schema_refuses_a_statistic_it_does_not_declare():
    schema = Schema("a test's", ("loss_task",), ("loss_{m}",))
    assert schema.key("loss", "audio") == "loss_audio"
    assert schema.key("loss_task") == "loss_task"
    with pytest.raises(ConfigError, match=r"a test's: declares no per-modality statistic 'cos'"):
        schema.key("cos", "audio")
    with pytest.raises(ConfigError, match="global statistic 'loss'"):
        schema.key("loss")


def test_capabilities_are_declared_on_the_class():
    for name in ("joint", "balgrad", "balgrad_fast", "ogm_ge", "agm", "mslr", "dgl", "pmr"):
        cls = type(create_strategy(name))
        for flag in ("supports_ddp", "reduces_own_gradients", "supports_grad_scaler"):
            assert isinstance(getattr(cls, flag), bool), (name, flag)
    assert type(create_strategy("pmr")).needs_epoch_pass
    assert create_strategy("mslr", mode="dynamic").needs_unimodal_validation
