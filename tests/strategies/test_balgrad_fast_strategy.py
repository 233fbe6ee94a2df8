"""balgrad_fast's ``.grad`` against docs/spec.md §2b computed another way.

The reference below never calls balgrad's gradient code: the embedding gradients G come
from ``torch.autograd.functional.jacobian`` of losses written with
``torch.nn.functional`` on leaf copies of h_v, h_l; the tower gradients from a dense
Jacobian J_m = ∂h_m/∂θ_m (shape [B·d, P_m]) contracted with the cotangent by einsum;
the per-sample projection is a Python loop over rows.
"""

from __future__ import annotations

import copy

import pytest
import torch
from strategy_reference import (
    all_params,
    current_grads,
    grads_of,
    head_by_hand,
    head_params,
    image_params,
    make_batch,
    make_model,
    ref_score,
    ref_symmetric_kl,
    ref_task_loss,
    text_params,
    trainable,
)
from torch import nn
from torch.autograd.functional import jacobian
from torch.func import functional_call

from balgrad.strategies import BalGrad, create_strategy
from balgrad.strategies._balgrad_fast import BalGradFast

TOL = dict(rtol=1e-9, atol=1e-12)


def _tower(model, modality):
    if modality == "image":
        return nn.Sequential(model.image_encoder, model.image_embedding)
    return nn.Sequential(model.text_encoder, model.text_embedding)


def _losses_at(model, h_v, h_l, y, tau):
    """L_T, L_v, L_l, D as functions of the embeddings."""
    task = model.task
    z, z_v, z_l = head_by_hand(model, h_v, h_l)
    return (
        ref_task_loss(z, y, task),
        ref_task_loss(z_v, y, task),
        ref_task_loss(z_l, y, task),
        ref_symmetric_kl(z_v, z_l, task, tau),
        z_v,
        z_l,
    )


def _vjp_through_tower(model, modality, x, cotangent):
    """{param: J^T cotangent} from the dense Jacobian of h_m w.r.t. the tower's parameters."""
    tower = _tower(model, modality)
    names = [n for n, p in tower.named_parameters() if p.requires_grad]
    params = [dict(tower.named_parameters())[n] for n in names]

    def h_of(*ps):
        return functional_call(tower, dict(zip(names, ps)), (x,))

    jac = jacobian(h_of, tuple(p.detach() for p in params))  # each [B, d, *p.shape]
    c = cotangent.reshape(-1)
    return {
        p: torch.einsum("k,k...->...", c, j.reshape(c.numel(), *p.shape))
        for p, j in zip(params, jac)
    }


def reference_fast(
    model,
    x_v,
    x_l,
    y,
    *,
    reweight="contribution",
    equalize_norms=True,
    project=True,
    projection_scope="global",
    kl_weight=1.0,
    unimodal_weight=1.0,
    temperature=1.0,
):
    h_v = _tower(model, "image")(x_v).detach()
    h_l = _tower(model, "text")(x_l).detach()

    def loss_fn(i):
        return lambda a, b: _losses_at(model, a, b, y, temperature)[i]

    G_t, G_u_v, G_k = (jacobian(loss_fn(i), (h_v, h_l)) for i in (0, 1, 3))
    G_u = (G_u_v[0], jacobian(loss_fn(2), (h_v, h_l))[1])  # ∂L_v/∂h_v, ∂L_l/∂h_l
    *_, z_v, z_l = _losses_at(model, h_v, h_l, y, temperature)

    s_v, s_l = (ref_score(z, y, model.task, temperature) for z in (z_v, z_l))
    c_v, c_l = s_v / (s_v + s_l), s_l / (s_v + s_l)
    w = (2 * (1 - c_v), 2 * (1 - c_l))
    norms = [float(g.norm()) for g in G_k]
    if reweight == "none":
        f = (1.0, 1.0)
    elif equalize_norms:
        n = sum(norms) / 2
        f = tuple(w[m] * n / norms[m] if norms[m] > 0 else 0.0 for m in range(2))
    else:
        f = w
    G_kl = [f[m] * G_k[m] for m in range(2)]

    T = torch.cat(G_t, 1)  # [B, 2d]
    K = torch.cat(G_kl, 1)
    if not project:
        T_proj = T
    elif projection_scope == "global":
        d = float((T * K).sum())
        T_proj = T - d / float((K * K).sum()) * K if d < 0 else T
    elif projection_scope == "per_modality":
        dim = G_t[0].shape[1]
        parts = []
        for sl in (slice(0, dim), slice(dim, 2 * dim)):
            t, k = T[:, sl], K[:, sl]
            d = float((t * k).sum())
            parts.append(t - d / float((k * k).sum()) * k if d < 0 else t)
        T_proj = torch.cat(parts, 1)
    else:
        rows = []
        for i in range(T.shape[0]):
            t, k = T[i], K[i]
            d = float(t @ k)
            rows.append(t - d / float(k @ k) * k if d < 0 and float(k @ k) > 0 else t)
        T_proj = torch.stack(rows)
    dim = G_t[0].shape[1]
    T_parts = (T_proj[:, :dim], T_proj[:, dim:])

    expected = {p: torch.zeros_like(p) for p in all_params(model)}
    for m, (modality, x) in enumerate((("image", x_v), ("text", x_l))):
        cot = T_parts[m] + unimodal_weight * G_u[m] + kl_weight * G_kl[m]
        expected.update(_vjp_through_tower(model, modality, x, cot))
    # θ_T: the task gradient, exactly; separate unimodal heads: μ ∇ L_m
    h_v_, h_l_ = _tower(model, "image")(x_v), _tower(model, "text")(x_l)
    loss_t, loss_v, loss_l, *_ = _losses_at(model, h_v_, h_l_, y, temperature)
    expected.update(grads_of(loss_t, head_params(model)))
    if model.unimodal_head == "separate":
        for p, g in grads_of(loss_v, trainable(model.image_head)).items():
            expected[p] = unimodal_weight * g
        for p, g in grads_of(loss_l, trainable(model.text_head)).items():
            expected[p] = unimodal_weight * g
    cos_before = float((T * K).sum() / (T.norm() * K.norm())) if float(K.norm()) > 0 else 0.0
    return expected, {"cos": cos_before, "weights": w, "conflict_rows": None}


def run_step(model, strategy, x_v, x_l, y):
    model.zero_grad(set_to_none=True)
    stats = strategy.backward(model, model({"image": x_v, "text": x_l}), y)
    return current_grads(model), stats


CASES = [
    ("defaults", {}),
    ("per_modality", {"projection_scope": "per_modality"}),
    ("per_sample", {"projection_scope": "per_sample"}),
    ("reweight_none", {"reweight": "none"}),
    ("no_equalize", {"equalize_norms": False}),
    ("no_project", {"project": False}),
    ("weights", {"kl_weight": 0.37, "unimodal_weight": 2.5}),
    ("unimodal_weight_zero", {"unimodal_weight": 0.0}),
    ("temperature", {"temperature": 2.0, "projection_scope": "per_sample"}),
]


@pytest.mark.parametrize("fusion", ["concat", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("name,options", CASES, ids=[c[0] for c in CASES])
def test_grad_matches_the_embedding_space_reference(fusion, task, name, options):
    model = make_model(fusion, task, seed=3)
    x_v, x_l, y = make_batch(task, seed=3)
    got, stats = run_step(model, BalGradFast(**options), x_v, x_l, y)
    expected, pieces = reference_fast(model, x_v, x_l, y, **options)
    for p in all_params(model):
        torch.testing.assert_close(got[p], expected[p], **TOL)
    assert float(stats["cos_task_kl"]) == pytest.approx(pieces["cos"], abs=1e-10)


@pytest.mark.parametrize("options", [{}, {"projection_scope": "per_sample"}])
def test_separate_unimodal_heads(options):
    model = make_model("concat", unimodal_head="separate", seed=5)
    x_v, x_l, y = make_batch(seed=5)
    got, _ = run_step(model, BalGradFast(**options), x_v, x_l, y)
    expected, _ = reference_fast(model, x_v, x_l, y, **options)
    for p in all_params(model):
        torch.testing.assert_close(got[p], expected[p], **TOL)


def _conflicting_seeds(scope, want):
    """Seeds whose step projects (want=True) or not, found with the reference alone."""
    found = []
    for seed in range(40):
        model = make_model("concat", seed=seed)
        x_v, x_l, y = make_batch(seed=seed)
        _, pieces = reference_fast(model, x_v, x_l, y)
        if (pieces["cos"] < -1e-3) == want and abs(pieces["cos"]) > 1e-3:
            found.append(seed)
        if len(found) == 2:
            return found
    raise AssertionError(f"no seed with conflict={want}")


@pytest.mark.parametrize("want", [True, False])
def test_both_branches_of_the_global_projection(want):
    for seed in _conflicting_seeds("global", want):
        model = make_model("concat", seed=seed)
        x_v, x_l, y = make_batch(seed=seed)
        got, stats = run_step(model, BalGradFast(), x_v, x_l, y)
        expected, pieces = reference_fast(model, x_v, x_l, y)
        for p in all_params(model):
            torch.testing.assert_close(got[p], expected[p], **TOL)
        assert float(stats["projected"]) == float(want)
        assert float(stats["conflict"]) == float(want)
        if want:  # orthogonal after the projection, in embedding space
            assert abs(float(stats["cos_task_kl_projected"])) < 1e-10
        else:
            assert float(stats["cos_task_kl_projected"]) == pytest.approx(pieces["cos"])


def test_per_sample_projection_projects_some_rows_only():
    """A batch where some rows conflict and others do not: the per-row branch both ways."""
    for seed in range(40):
        model = make_model("concat", seed=seed)
        x_v, x_l, y = make_batch(seed=seed)
        got, stats = run_step(model, BalGradFast(projection_scope="per_sample"), x_v, x_l, y)
        if 0 < float(stats["projected"]) < 1:
            expected, _ = reference_fast(model, x_v, x_l, y, projection_scope="per_sample")
            for p in all_params(model):
                torch.testing.assert_close(got[p], expected[p], **TOL)
            assert float(stats["conflict"]) == float(stats["projected"])
            return
    raise AssertionError("no batch with some conflicting rows")


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("scope", ["global", "per_sample"])
def test_head_gets_exactly_the_task_gradient(fusion, scope):
    model = make_model(fusion, seed=11, head_hidden=4 if fusion == "concat" else 0)
    x_v, x_l, y = make_batch(seed=11)
    got, _ = run_step(model, BalGradFast(projection_scope=scope), x_v, x_l, y)
    h_v = model.image_embedding(model.image_encoder(x_v))
    h_l = model.text_embedding(model.text_encoder(x_l))
    expected = grads_of(ref_task_loss(model.head(h_v, h_l), y, "single_label"), head_params(model))
    for p in head_params(model):
        torch.testing.assert_close(got[p], expected[p], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "options", [{"project": False, "reweight": "none"}, {"kl_weight": 0.0, "project": False}]
)
def test_without_projection_or_reweighting_it_is_the_exact_method(options):
    """With no scalar from the geometry left (no projection, w = 1 or λ = 0), the
    update J^T(G_T + μ G_u + λ G_k) is the exact method's, term by term."""
    model = make_model("attention", "multi_label", seed=2)
    twin = copy.deepcopy(model)
    x_v, x_l, y = make_batch("multi_label", seed=2)
    fast, _ = run_step(model, BalGradFast(**options), x_v, x_l, y)
    exact, _ = run_step(twin, BalGrad(**options), x_v, x_l, y)
    for p, q in zip(all_params(model), all_params(twin)):
        torch.testing.assert_close(fast[p], exact[q], **TOL)


@pytest.mark.parametrize("frozen", ["image", "text"])
def test_a_frozen_tower_gets_no_gradient(frozen):
    model = make_model("concat", seed=4)
    tower = _tower(model, frozen)
    tower.requires_grad_(False)
    x_v, x_l, y = make_batch(seed=4)
    got, stats = run_step(model, BalGradFast(), x_v, x_l, y)
    for p in tower.parameters():
        assert p.grad is None
    assert float(stats[f"norm_kl_{frozen}"]) == 0.0
    other = text_params(model) if frozen == "image" else image_params(model)
    assert all(torch.isfinite(got[p]).all() and got[p].abs().sum() > 0 for p in other)


def test_registered_and_per_sample_is_its_own_option():
    assert isinstance(create_strategy("balgrad_fast"), BalGradFast)
    assert create_strategy("balgrad_fast", projection_scope="per_sample").projection_scope == (
        "per_sample"
    )
    with pytest.raises(Exception, match="projection_scope"):
        BalGrad(projection_scope="per_sample")
