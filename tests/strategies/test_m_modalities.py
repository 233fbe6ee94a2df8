"""Every strategy at M = 3 (and 4) against an independent computation of SPEC section 6,
and invariance of the update under a reordering of the modalities."""

from __future__ import annotations

import math

import pytest
import torch
from lifecycle import prepared, run_backward
from reference_m import (
    all_params_m,
    check_close,
    grads_now,
    make_batch_m,
    make_model_m,
    reference_agm_m,
    reference_balgrad_m,
    reference_ogm_m,
    shapley_by_orderings,
    tower_params,
)

from balgrad.errors import ConfigError
from balgrad.strategies import create_strategy, list_strategies
from balgrad.strategies._agm import shapley_responses

THREE = ("audio", "visual", "text")
FOUR = ("audio", "visual", "text", "depth")


def step(model, strategy, inputs, y):
    model.zero_grad(set_to_none=True)
    stats = run_backward(strategy, model, model(inputs), y)
    return grads_now(model), stats


# -- BalGrad ---------------------------------------------------------------------------------
@pytest.mark.parametrize("names", [THREE, FOUR], ids=["M3", "M4"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"projection_scope": "per_modality"},
        {"reweight": "none"},
        {"project": False},
        {"kl_weight": 0.0, "project": False, "reweight": "none"},
        {"kl_weight": 0.4, "unimodal_weight": 2.0},
    ],
    ids=["default", "per_modality", "no_reweight", "no_project", "unimodal_only", "weights"],
)
@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
def test_balgrad_matches_spec_section_6(names, options, fusion):
    model = make_model_m(names, fusion, seed=1, scales={names[0]: 3.0})  # one dominant tower
    inputs, y = make_batch_m(names, seed=1)
    got, stats = step(model, create_strategy("balgrad", **options), inputs, y)
    want = reference_balgrad_m(model, inputs, y, **options)
    check_close(got, want, all_params_m(model))
    weights = [float(stats[f"weight_{m}"]) for m in names]
    if options.get("reweight") != "none":
        assert sum(weights) / len(names) == pytest.approx(1.0)  # mean weight 1
    assert sum(float(stats[f"contrib_{m}"]) for m in names) == pytest.approx(1.0)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_balgrad_multi_label_and_separate_heads_at_three_modalities(task):
    model = make_model_m(THREE, "concat", task=task, unimodal_head="separate", seed=2)
    inputs, y = make_batch_m(THREE, task=task, seed=2)
    got, _ = step(model, create_strategy("balgrad"), inputs, y)
    check_close(got, reference_balgrad_m(model, inputs, y), all_params_m(model))


def test_balgrad_needs_three_backward_passes_at_any_m(monkeypatch):
    """SPEC section 6: one backward of D gives every g_kl^m, one of Σ L_m every g_T^m."""
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for names in (("audio", "visual"), THREE, FOUR):
        model = make_model_m(names, seed=0)
        inputs, y = make_batch_m(names, seed=0)
        strategy = create_strategy("balgrad", head_diagnostics=False)
        out = model(inputs)
        calls.clear()
        monkeypatch.setattr(torch.autograd, "grad", counting)
        run_backward(strategy, model, out, y)
        monkeypatch.setattr(torch.autograd, "grad", real)
        assert len(calls) == 3, names


def test_balgrad_fast_equals_exact_without_projection_and_reweighting():
    """Then both write ∇L_T + μ Σ_m ∇L_m + λ ∇D (the chain rule through each h_m), at
    any M; the two differ only in where the geometry is taken."""
    model = make_model_m(THREE, seed=3)
    inputs, y = make_batch_m(THREE, seed=3)
    opts = {"reweight": "none", "project": False}
    fast, _ = step(model, create_strategy("balgrad_fast", **opts), inputs, y)
    exact, _ = step(model, create_strategy("balgrad", **opts), inputs, y)
    check_close(fast, exact, all_params_m(model))


# -- OGM-GE ------------------------------------------------------------------------------------
def test_ogm_ge_one_versus_rest_at_three_modalities():
    model = make_model_m(THREE, seed=4, scales={"audio": 4.0})
    inputs, y = make_batch_m(THREE, seed=4)
    strategy = create_strategy("ogm_ge", alpha=0.8, noise=False)
    got, stats = step(model, strategy, inputs, y)
    want, k = reference_ogm_m(model, inputs, y, alpha=0.8)
    check_close(got, want, all_params_m(model))
    for m in THREE:
        assert float(stats[f"coef_{m}"]) == pytest.approx(k[m])
    assert min(k.values()) < 1  # something was damped


def test_ogm_ge_half_bias_logits_at_three_modalities():
    """z_m = W[:, cols_m] h_m + b/3: the three add up to the fused logits."""
    from balgrad.strategies._ogm_ge import official_unimodal_logits

    model = make_model_m(THREE, seed=5)
    inputs, _ = make_batch_m(THREE, seed=5)
    out = model(inputs)
    z = official_unimodal_logits(model, out.embeddings)
    torch.testing.assert_close(sum(z.values()), out.logits)


# -- AGM --------------------------------------------------------------------------------------
@pytest.mark.parametrize("names", [THREE, FOUR], ids=["M3", "M4"])
def test_agm_shapley_responses_match_the_orderings_definition(names):
    gen = torch.Generator().manual_seed(0)
    table = {}

    def value(subset):  # an arbitrary set function, one random tensor per subset
        key = frozenset(subset)
        if key not in table:
            table[key] = torch.randn(3, generator=gen, dtype=torch.float64)
        return table[key]

    idx = {m: i for i, m in enumerate(names)}
    got = shapley_responses(lambda s: value({names[i] for i in s}), len(names))
    want = shapley_by_orderings(value, names)
    for m in names:
        torch.testing.assert_close(got[idx[m]], want[m])
    torch.testing.assert_close(sum(got), value(set(names)))  # efficiency


def test_agm_three_modal_weights_are_the_official_ones():
    """Official URFunny code: o_A = 1/3 (AVT − VT) + 1/6 (AV − V + AT − T) + 1/3 A."""
    vals = {
        frozenset(k): torch.tensor(float(v))
        for k, v in [("A", 1), ("V", 2), ("T", 3), ("AV", 5), ("AT", 7), ("VT", 11), ("AVT", 13)]
    }
    o_a = shapley_responses(lambda s: vals[frozenset("AVT"[i] for i in s)], 3)[0]
    assert float(o_a) == pytest.approx(1 / 3 * (13 - 11) + 1 / 6 * (5 - 2 + 7 - 3) + 1 / 3 * 1)


@pytest.mark.parametrize("names", [THREE, FOUR], ids=["M3", "M4"])
def test_agm_matches_an_independent_computation(names):
    model = make_model_m(names, "concat", seed=6, scales={names[1]: 3.0})
    inputs, y = make_batch_m(names, seed=6)
    got, stats = step(model, create_strategy("agm", alpha=0.7, clip="none"), inputs, y)
    want, kappa = reference_agm_m(model, inputs, y, alpha=0.7)
    check_close(got, want, all_params_m(model))
    for m in names:
        assert float(stats[f"kappa_{m}"]) == pytest.approx(kappa[m])


def test_agm_refuses_more_than_six_modalities():
    from balgrad.strategies._agm import AGM

    agm = AGM()
    with pytest.raises(ConfigError, match="at most 6"):
        agm.responses(_SevenModalities(), _SevenModalities.output())


class _SevenModalities:
    modalities = tuple(f"m{i}" for i in range(7))
    task = "single_label"

    @classmethod
    def output(cls):
        from balgrad.models import ModelOutput

        h = {m: torch.zeros(2, 3) for m in cls.modalities}
        return ModelOutput(torch.zeros(2, 4), dict(h), h)


# -- MSLR -------------------------------------------------------------------------------------
def test_mslr_gives_each_named_modality_its_rate_and_dynamic_factor():
    model = make_model_m(THREE, seed=7)
    strategy = create_strategy("mslr", mode="dynamic", lr_scales={"audio": 2.0, "text": 0.5})
    optimizer = torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"audio": 0.2, "visual": 0.1, "text": 0.05, "head": 0.1})
    strategy.on_epoch_end(0, optimizer, {"audio": 50.0, "visual": 40.0, "text": 30.0})
    out = strategy.on_epoch_end(1, optimizer, {"audio": 25.0, "visual": 80.0, "text": 30.0})
    assert out["lr_factor_audio"] == pytest.approx(0.5)
    assert out["lr_factor_visual"] == pytest.approx(2.0)
    assert out["lr_text"] == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="visual"):
        strategy.on_epoch_end(2, optimizer, {"audio": 1.0, "text": 1.0})
    bad = create_strategy("mslr", lr_scales={"video": 2.0})
    with pytest.raises(ConfigError, match="video"):
        bad.param_groups(model, 0.1)


# -- a reordering of the modalities changes nothing ----------------------------------------------
def _reordered(model, order, scales):
    """The same modules and weights with the modalities in ``order`` (concat's classifier
    columns and attention's type embeddings permuted to match)."""
    twin = make_model_m(order, model.fusion_name, seed=99, scales=scales)
    d = 6
    state = {}
    for k, v in model.state_dict().items():
        state[k] = v.clone()
    if model.fusion_name == "concat":
        w = state["head.classifier.1.weight"]
        blocks = {m: w[:, i * d : (i + 1) * d] for i, m in enumerate(model.modalities)}
        state["head.classifier.1.weight"] = torch.cat([blocks[m] for m in order], dim=1)
    if model.fusion_name == "attention":
        t = state["head.fusion.type_embedding"]
        rows = {m: t[i] for i, m in enumerate(model.modalities)}
        state["head.fusion.type_embedding"] = torch.stack([rows[m] for m in order])
    twin.load_state_dict(state)
    return twin


def _seeded_options(name):
    return {"noise": False} if name == "ogm_ge" else {}


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("name", list_strategies())
def test_reordering_the_modalities_does_not_change_the_update(name, fusion):
    scales = {"visual": 2.5}
    model = make_model_m(THREE, fusion, seed=8, scales=scales)
    twin = _reordered(model, ("text", "audio", "visual"), scales)
    inputs, y = make_batch_m(THREE, seed=8)
    a = create_strategy(name, **_seeded_options(name))
    b = create_strategy(name, **_seeded_options(name))
    for strategy, net in ((a, model), (b, twin)):
        strategy.on_epoch_start(0, 2)
        prepared(strategy, net, inputs, y)
        net.zero_grad(set_to_none=True)
        run_backward(strategy, net, net(inputs), y)
    grads_b = dict(twin.named_parameters())
    for key, p in model.named_parameters():
        g, h = p.grad, grads_b[key].grad
        if key == "head.classifier.1.weight" and fusion == "concat":
            h = _reordered_back(h, ("text", "audio", "visual"), THREE)
        if key == "head.fusion.type_embedding":
            h = h[[("text", "audio", "visual").index(m) for m in THREE]]
        assert (g is None) == (h is None), key
        if g is not None:
            torch.testing.assert_close(g, h, atol=1e-10, rtol=1e-9, msg=key)


def _reordered_back(w, order, original):
    d = 6
    blocks = {m: w[:, i * d : (i + 1) * d] for i, m in enumerate(order)}
    return torch.cat([blocks[m] for m in original], dim=1)


def test_every_tower_gets_its_own_statistics_at_three_modalities():
    model = make_model_m(THREE, seed=9)
    inputs, y = make_batch_m(THREE, seed=9)
    stats = run_backward(create_strategy("balgrad"), model, model(inputs), y)
    for m in THREE:
        for prefix in ("loss", "score", "contrib", "weight", "norm_kl", "norm_uni", "norm_task"):
            assert math.isfinite(float(stats[f"{prefix}_{m}"])), f"{prefix}_{m}"
    assert tower_params(model, "audio")[0].grad is not None
