"""BalGrad's ``.grad`` against SPEC section 2 recomputed by hand (strategy_reference)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from strategy_reference import (
    IMAGE_IN,
    all_params,
    cos,
    current_grads,
    flat,
    grads_of,
    head_params,
    image_params,
    make_batch,
    make_model,
    ref_task_loss,
    reference_balgrad,
    text_params,
    trainable,
)

from balgrad.strategies import BalGrad, create_strategy

TOL = dict(rtol=1e-9, atol=1e-12)

# (name, options) pairs: each option of SPEC section 2 on and off
OPTION_CASES = [
    ("defaults", {}),
    ("reweight_none", {"reweight": "none"}),
    ("no_equalize", {"equalize_norms": False}),
    ("no_project", {"project": False}),
    ("per_modality", {"projection_scope": "per_modality"}),
    ("kl_weight", {"kl_weight": 0.37}),
    ("kl_weight_zero", {"kl_weight": 0.0}),
    ("unimodal_weight", {"unimodal_weight": 2.5}),
    ("unimodal_weight_zero", {"unimodal_weight": 0.0}),
    ("temperature", {"temperature": 2.0}),
    ("temperature_no_equalize", {"temperature": 0.5, "equalize_norms": False}),
    ("unimodal_only", {"kl_weight": 0.0, "project": False, "reweight": "none"}),
]


def run_step(model, strategy, x_v, x_l, y):
    model.zero_grad(set_to_none=True)
    out = model({"image": x_v, "text": x_l})
    stats = strategy.backward(model, out, y)
    return current_grads(model), stats


def assert_grads_equal(model, got, expected):
    for p in all_params(model):
        torch.testing.assert_close(got[p], expected[p], **TOL)


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("name,options", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_grad_matches_spec(fusion, task, name, options):
    model = make_model(fusion, task, seed=3)
    x_v, x_l, y = make_batch(task, seed=3)
    got, stats = run_step(model, BalGrad(**options), x_v, x_l, y)
    expected, pieces = reference_balgrad(model, x_v, x_l, y, **options)
    assert_grads_equal(model, got, expected)
    loss_t, loss_v, loss_l, kl = pieces["losses"]
    assert stats["loss_task"] == pytest.approx(loss_t, rel=1e-10)
    assert stats["loss_image"] == pytest.approx(loss_v, rel=1e-10)
    assert stats["loss_text"] == pytest.approx(loss_l, rel=1e-10)
    assert stats["kl"] == pytest.approx(kl, rel=1e-9, abs=1e-14)
    if options.get("reweight", "contribution") == "contribution":
        assert (stats["weight_image"], stats["weight_text"]) == pytest.approx(pieces["weights"])
    if options.get("project", True) or options.get("kl_weight", 1.0) > 0:
        # (with neither, g_kl is never computed and no conflict is reported)
        assert stats["conflict"] == float(pieces["conflict"])


@pytest.mark.parametrize("fusion", ["concat", "attention"])
@pytest.mark.parametrize("options", [{}, {"projection_scope": "per_modality"}])
def test_hidden_layer_head_matches_spec(fusion, options):
    model = make_model(fusion, seed=8, head_hidden=5)
    x_v, x_l, y = make_batch(seed=8)
    got, _ = run_step(model, BalGrad(**options), x_v, x_l, y)
    expected, _ = reference_balgrad(model, x_v, x_l, y, **options)
    assert_grads_equal(model, got, expected)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_float32_model_matches_float64_reference(task):
    """The default dtype path (float32 model, EMA state across steps) agrees with the
    float64 reference to float32 precision."""
    model = make_model("concat", task, seed=12, dtype=torch.float32)
    twin = copy.deepcopy(model).double()
    strategy = BalGrad(contribution_ema=0.5)
    previous = None
    for seed in (12, 13):
        x_v, x_l, y = make_batch(task, seed=seed)
        y32 = y if task == "single_label" else y.float()
        got, _ = run_step(model, strategy, x_v.float(), x_l.float(), y32)
        expected, pieces = reference_balgrad(
            twin, x_v, x_l, y, contribution_ema=0.5, previous_scores=previous
        )
        previous = pieces["scores"]
        for p, q in zip(all_params(model), all_params(twin)):
            assert got[p].dtype == torch.float32
            torch.testing.assert_close(got[p].double(), expected[q], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fusion", ["concat", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("options", [{}, {"projection_scope": "per_modality", "kl_weight": 0.5}])
def test_separate_unimodal_heads_match_spec(fusion, task, options):
    model = make_model(fusion, task, unimodal_head="separate", seed=5)
    x_v, x_l, y = make_batch(task, seed=5)
    got, _ = run_step(model, BalGrad(**options), x_v, x_l, y)
    expected, _ = reference_balgrad(model, x_v, x_l, y, **options)
    assert_grads_equal(model, got, expected)


@pytest.mark.parametrize("mu", [1.0, 0.3])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_separate_heads_get_exactly_mu_grad_of_their_unimodal_loss(task, mu):
    model = make_model("concat", task, unimodal_head="separate", seed=7)
    x_v, x_l, y = make_batch(task, seed=7)
    got, _ = run_step(model, BalGrad(unimodal_weight=mu), x_v, x_l, y)
    h_v = model.image_embedding(model.image_encoder(x_v))
    h_l = model.text_embedding(model.text_encoder(x_l))
    g_v = grads_of(ref_task_loss(model.image_head(h_v), y, task), trainable(model.image_head))
    g_l = grads_of(ref_task_loss(model.text_head(h_l), y, task), trainable(model.text_head))
    for p, g in {**g_v, **g_l}.items():
        torch.testing.assert_close(got[p], mu * g, **TOL)


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize(
    "options", [{}, {"projection_scope": "per_modality"}, {"reweight": "none"}]
)
def test_head_gets_only_the_task_gradient(fusion, task, options):
    """θ_T receives ∇_{θ_T} L_T exactly: no unimodal or KL gradient reaches the head."""
    model = make_model(fusion, task, seed=11)
    x_v, x_l, y = make_batch(task, seed=11)
    got, _ = run_step(model, BalGrad(**options), x_v, x_l, y)
    h_v = model.image_embedding(model.image_encoder(x_v))
    h_l = model.text_embedding(model.text_encoder(x_l))
    expected = grads_of(ref_task_loss(model.head(h_v, h_l), y, task), head_params(model))
    for p in head_params(model):
        assert torch.equal(got[p], expected[p]) or torch.allclose(
            got[p], expected[p], rtol=1e-12, atol=1e-15
        )


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("reweight", ["contribution", "none"])
def test_contribution_ema_over_two_steps(task, reweight):
    beta = 0.6
    model = make_model("concat", task, seed=13)
    strategy = BalGrad(contribution_ema=beta, reweight=reweight)
    x1, t1, y1 = make_batch(task, seed=13)
    x2, t2, y2 = make_batch(task, seed=14)

    got1, stats1 = run_step(model, strategy, x1, t1, y1)
    exp1, pieces1 = reference_balgrad(model, x1, t1, y1, reweight=reweight)
    assert_grads_equal(model, got1, exp1)
    assert (stats1["score_image"], stats1["score_text"]) == pytest.approx(pieces1["scores"])

    # change the weights, as an optimizer step would, so the second batch differs
    with torch.no_grad():
        for p in all_params(model):
            p.sub_(0.5 * p.grad)
    got2, stats2 = run_step(model, strategy, x2, t2, y2)
    exp2, pieces2 = reference_balgrad(
        model,
        x2,
        t2,
        y2,
        reweight=reweight,
        contribution_ema=beta,
        previous_scores=pieces1["scores"],
    )
    assert_grads_equal(model, got2, exp2)
    s_v = (
        beta * pieces1["scores"][0]
        + (1 - beta) * reference_balgrad(model, x2, t2, y2)[1]["scores"][0]
    )
    assert stats2["score_image"] == pytest.approx(s_v, rel=1e-10)
    assert (stats2["score_image"], stats2["score_text"]) == pytest.approx(pieces2["scores"])


def test_ema_state_survives_a_checkpoint_round_trip():
    model = make_model("concat", seed=2)
    a = BalGrad(contribution_ema=0.5)
    x1, t1, y1 = make_batch(seed=2)
    x2, t2, y2 = make_batch(seed=3)
    run_step(model, a, x1, t1, y1)
    b = BalGrad(contribution_ema=0.5)
    b.load_state_dict(a.state_dict())
    ga, _ = run_step(model, a, x2, t2, y2)
    gb, _ = run_step(model, b, x2, t2, y2)
    assert_grads_equal(model, gb, ga)


# -- projection ----------------------------------------------------------------------
def _cosines_for_seed(seed, fusion="concat", task="single_label", **options):
    """Library g_T⊥ (with μ = λ = 0 the whole .grad is g_T⊥) and the reference g_T, g_kl."""
    model = make_model(fusion, task, seed=seed)
    x_v, x_l, y = make_batch(task, seed=seed)
    got, stats = run_step(
        model, BalGrad(kl_weight=0.0, unimodal_weight=0.0, **options), x_v, x_l, y
    )
    _, pieces = reference_balgrad(model, x_v, x_l, y, **options)
    ps = all_params(model)
    return flat(got, ps), flat(pieces["g_t"], ps), flat(pieces["g_kl"], ps), stats, model


def _find_seeds(conflicting: bool, count: int = 2, **kw) -> list[int]:
    seeds = []
    for seed in range(60):
        _, g_t, g_kl, _, _ = _cosines_for_seed(seed, **kw)
        if (cos(g_t, g_kl) < -1e-3) == conflicting and (conflicting or cos(g_t, g_kl) > 1e-3):
            seeds.append(seed)
            if len(seeds) == count:
                return seeds
    raise AssertionError(f"no seed with conflicting={conflicting} in range(60)")


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("reweight", ["contribution", "none"])
def test_projection_removes_conflict(task, reweight):
    for seed in _find_seeds(True, task=task, reweight=reweight):
        g_proj, g_t, g_kl, stats, _ = _cosines_for_seed(seed, task=task, reweight=reweight)
        assert cos(g_t, g_kl) < 0
        # orthogonal after projection (so cos >= 0 up to rounding)
        assert cos(g_proj, g_kl) >= -1e-10
        assert abs(cos(g_proj, g_kl)) < 1e-10
        expected = g_t - (g_t @ g_kl) / (g_kl @ g_kl) * g_kl
        torch.testing.assert_close(g_proj, expected, **TOL)
        assert stats["conflict"] == 1.0 and stats["projected"] == 1.0
        assert stats["cos_task_kl"] == pytest.approx(cos(g_t, g_kl), abs=1e-10)
        assert stats["cos_task_kl_projected"] == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_projection_leaves_agreeing_gradient_untouched(task):
    for seed in _find_seeds(False, task=task):
        g_proj, g_t, g_kl, stats, _ = _cosines_for_seed(seed, task=task)
        assert cos(g_t, g_kl) > 0
        torch.testing.assert_close(g_proj, g_t, **TOL)
        assert stats["conflict"] == 0.0 and stats["projected"] == 0.0


def test_per_modality_projection_is_per_tower():
    """Within θ_v and within θ_l the projected task gradient never opposes g_kl."""
    found = 0
    for seed in range(40):
        g_proj, g_t, g_kl, stats, model = _cosines_for_seed(seed, projection_scope="per_modality")
        ps = all_params(model)
        sizes = [p.numel() for p in ps]
        offsets = torch.tensor([0, *sizes]).cumsum(0).tolist()
        index = {p: slice(offsets[i], offsets[i + 1]) for i, p in enumerate(ps)}

        def restrict(v, group, index=index):
            return torch.cat([v[index[p]] for p in group])

        for group in (image_params(model), text_params(model)):
            a, b, c = restrict(g_t, group), restrict(g_kl, group), restrict(g_proj, group)
            if cos(a, b) < 0:
                found += 1
                assert abs(cos(c, b)) < 1e-10
            else:
                assert torch.equal(c, a)
        hp = head_params(model)
        assert torch.equal(restrict(g_proj, hp), restrict(g_t, hp))
        if found >= 3:
            return
    raise AssertionError("no per-tower conflict found")


# -- zero-norm KL gradients ---------------------------------------------------------------
def _identical_towers_model(task):
    """Sum fusion, the same weights in both towers and the same inputs: z_v == z_l,
    so D = 0 and its gradient is exactly zero."""
    model = make_model("sum", task, seed=1, text_in=IMAGE_IN)
    model.text_encoder.load_state_dict(model.image_encoder.state_dict())
    model.text_embedding.load_state_dict(model.image_embedding.state_dict())
    return model


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize(
    "options",
    [{}, {"equalize_norms": False}, {"projection_scope": "per_modality"}, {"reweight": "none"}],
)
def test_identical_unimodal_logits_give_finite_grads(task, options):
    model = _identical_towers_model(task)
    x_v, _, y = make_batch(task, seed=1, text_in=IMAGE_IN)
    x_l = x_v.clone()
    got, stats = run_step(model, BalGrad(**options), x_v, x_l, y)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-15)
    assert stats["norm_kl_image"] == 0.0 and stats["norm_kl_text"] == 0.0
    for g in got.values():
        assert torch.isfinite(g).all()
    # with g_kl = 0 nothing is projected: .grad = g_T + μ g_uni (μ = 1)
    _, pieces = reference_balgrad(model, x_v, x_l, y, **options)
    for p in all_params(model):
        expected = pieces["g_t"][p] + pieces["g_uni"][p]
        torch.testing.assert_close(got[p], expected, **TOL)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("frozen", ["text", "image"])
@pytest.mark.parametrize("options", [{}, {"projection_scope": "per_modality"}])
def test_frozen_tower_gives_finite_grads_matching_spec(task, frozen, options):
    model = make_model("concat", task, seed=4)
    tower = (
        [model.text_encoder, model.text_embedding]
        if frozen == "text"
        else [model.image_encoder, model.image_embedding]
    )
    for m in tower:
        m.requires_grad_(False)
    x_v, x_l, y = make_batch(task, seed=4)
    got, stats = run_step(model, BalGrad(**options), x_v, x_l, y)
    assert stats[f"norm_kl_{frozen}"] == 0.0
    for m in tower:
        for p in m.parameters():
            assert p.grad is None
    expected, _ = reference_balgrad(model, x_v, x_l, y, **options)
    for p in all_params(model):
        assert torch.isfinite(got[p]).all()
        torch.testing.assert_close(got[p], expected[p], **TOL)


def test_backward_accumulates_into_existing_grad():
    model = make_model("concat", seed=9)
    x_v, x_l, y = make_batch(seed=9)
    first, _ = run_step(model, BalGrad(), x_v, x_l, y)
    out = model({"image": x_v, "text": x_l})
    BalGrad().backward(model, out, y)  # no zero_grad: adds
    for p in all_params(model):
        torch.testing.assert_close(p.grad, 2 * first[p], **TOL)


def test_presets_are_the_ablations():
    model = make_model("concat", seed=6)
    x_v, x_l, y = make_batch(seed=6)
    cases = {
        "balgrad_projection_only": {"reweight": "none"},
        "balgrad_reweight_only": {"project": False},
        "balgrad_unimodal_only": {"kl_weight": 0.0, "project": False, "reweight": "none"},
    }
    for name, options in cases.items():
        got, _ = run_step(model, create_strategy(name), x_v, x_l, y)
        expected, _ = reference_balgrad(model, x_v, x_l, y, **options)
        assert_grads_equal(model, got, expected)


def test_scores_and_contributions_are_hand_checkable():
    """Equal unimodal logits give c = ½ and w = 1 for both modalities."""
    model = _identical_towers_model("single_label")
    x_v, _, y = make_batch(seed=1, text_in=IMAGE_IN)
    _, stats = run_step(model, BalGrad(), x_v, x_v.clone(), y)
    assert stats["contrib_image"] == pytest.approx(0.5)
    assert stats["weight_image"] == pytest.approx(1.0)
    assert stats["weight_text"] == pytest.approx(1.0)
    assert math.isfinite(stats["cos_head_unimodal"])
