"""Tiny M-modality models and an independent re-derivation of SPEC section 6.

As ``strategy_reference.py`` for two modalities: nothing here calls balgrad's gradient
arithmetic or loss helpers. Losses come from ``torch.nn.functional`` (via
``strategy_reference``), gradients from plain ``torch.autograd.grad`` on explicit
parameter lists, and the method's arithmetic is done on dictionaries keyed by
parameter. AGM's Shapley responses are computed from the M! orderings of the
modalities (marginal contributions averaged over orderings), not from the subset
formula the library uses.
"""

from __future__ import annotations

import itertools
import math

import torch
from strategy_reference import (
    TinyEncoder,
    _norm,
    _project,
    grads_of,
    ref_score,
    ref_symmetric_kl,
    ref_task_loss,
    trainable,
)

from balgrad.models._multimodal import MultimodalModel

#: each modality's input size
IN_DIMS = {"audio": 5, "visual": 7, "text": 4, "depth": 6}


def make_model_m(
    names=("audio", "visual", "text"),
    fusion: str = "concat",
    task: str = "single_label",
    unimodal_head: str = "shared",
    num_classes: int = 4,
    seed: int = 0,
    scales: dict | None = None,
) -> MultimodalModel:
    torch.manual_seed(seed)
    scales = scales or {}
    model = MultimodalModel(
        {m: TinyEncoder(IN_DIMS[m], 5, scales.get(m, 1.0)) for m in names},
        num_classes=num_classes,
        task=task,
        embed_dim=6,
        fusion=fusion,
        unimodal_head=unimodal_head,
    ).double()
    if fusion == "attention":
        with torch.no_grad():
            model.head.fusion.type_embedding.normal_(0, 0.5)
    return model


def make_batch_m(names=("audio", "visual", "text"), task="single_label", num_classes=4, seed=0):
    gen = torch.Generator().manual_seed(2000 + seed)
    inputs = {m: torch.randn(8, IN_DIMS[m], generator=gen, dtype=torch.float64) for m in names}
    if task == "single_label":
        y = torch.randint(0, num_classes, (8,), generator=gen)
    else:
        y = (torch.rand(8, num_classes, generator=gen) < 0.4).double()
    return inputs, y


def tower_params(model, m) -> list:
    return trainable(getattr(model, f"{m}_encoder"), getattr(model, f"{m}_embedding"))


def all_params_m(model) -> list:
    ps = [p for m in model.modalities for p in tower_params(model, m)] + trainable(model.head)
    if model.unimodal_head == "separate":
        ps += [p for m in model.modalities for p in trainable(getattr(model, f"{m}_head"))]
    return ps


def embeddings_by_hand(model, inputs) -> dict:
    return {
        m: getattr(model, f"{m}_embedding")(getattr(model, f"{m}_encoder")(inputs[m]))
        for m in model.modalities
    }


def head_on(model, h: dict, keep) -> torch.Tensor:
    """The head with every modality outside ``keep`` zeroed (in the model's order)."""
    return model.head(*(h[m] if m in keep else torch.zeros_like(h[m]) for m in model.modalities))


def unimodal_by_hand(model, h: dict) -> dict:
    if model.unimodal_head == "separate":
        return {m: getattr(model, f"{m}_head")(h[m]) for m in model.modalities}
    return {m: head_on(model, h, {m}) for m in model.modalities}


# -- BalGrad, SPEC section 6 -------------------------------------------------------------------
def reference_balgrad_m(
    model,
    inputs,
    y,
    *,
    reweight: str = "contribution",
    project: bool = True,
    projection_scope: str = "global",
    kl_weight: float = 1.0,
    unimodal_weight: float = 1.0,
) -> dict:
    """{param: the gradient SPEC section 6 writes to .grad}."""
    task, names = model.task, model.modalities
    M = len(names)
    h = embeddings_by_hand(model, inputs)
    z = model.head(*(h[m] for m in names))
    zs = unimodal_by_hand(model, h)
    everything = all_params_m(model)
    g_t = grads_of(ref_task_loss(z, y, task), everything)
    g_uni = {p: torch.zeros_like(p) for p in everything}
    for m in names:
        g_uni.update(grads_of(ref_task_loss(zs[m], y, task), tower_params(model, m)))
        if model.unimodal_head == "separate":
            head_m = trainable(getattr(model, f"{m}_head"))
            g_uni.update(grads_of(ref_task_loss(zs[m], y, task), head_m))
    pairs = list(itertools.combinations(names, 2))
    kl = sum(ref_symmetric_kl(zs[a], zs[b], task, 1.0) for a, b in pairs) / len(pairs)
    g_kl_m = {m: grads_of(kl, tower_params(model, m)) for m in names}

    s = {m: ref_score(zs[m], y, task) for m in names}
    total = sum(s.values())
    w = {m: M * (1 - s[m] / total) / (M - 1) for m in names}
    norms = {m: float(_norm(g_kl_m[m])) for m in names}
    n = sum(norms.values()) / M
    g_kl = {}
    for m in names:
        f = 1.0 if reweight == "none" else (w[m] * n / norms[m] if norms[m] > 0 else 0.0)
        g_kl.update({p: f * g for p, g in g_kl_m[m].items()})

    towers = {p: g_t[p] for m in names for p in tower_params(model, m)}
    if project and projection_scope == "global":
        towers = _project(towers, g_kl)
    elif project:
        for m in names:
            part = {p: towers[p] for p in tower_params(model, m)}
            towers.update(_project(part, {p: g_kl[p] for p in part}))
    out = dict(g_t)
    for p in everything:
        if p in towers:
            out[p] = towers[p] + unimodal_weight * g_uni[p] + kl_weight * g_kl[p]
        else:
            out[p] = g_t[p] + unimodal_weight * g_uni[p]
    return out


# -- OGM-GE, one versus rest ---------------------------------------------------------------
def reference_ogm_m(model, inputs, y, alpha: float) -> tuple[dict, dict]:
    """({param: g_T with each tower's matrices scaled by k_m}, {m: k_m}) without the noise."""
    task, names = model.task, model.modalities
    h = embeddings_by_hand(model, inputs)
    z = model.head(*(h[m] for m in names))
    zs = unimodal_by_hand(model, h)
    sums = {m: ref_score(zs[m], y, task) * len(y) for m in names}
    k = {}
    for m in names:
        rest = sum(sums[j] for j in names if j != m) / (len(names) - 1)
        rho = sums[m] / rest
        k[m] = 1 - math.tanh(alpha * rho) if rho > 1 else 1.0
    grads = grads_of(ref_task_loss(z, y, task), all_params_m(model))
    for m in names:
        for p in tower_params(model, m):
            if p.dim() >= 2:
                grads[p] = grads[p] * k[m]
    return grads, k


# -- AGM, Shapley over orderings -----------------------------------------------------------
def shapley_by_orderings(value, names) -> dict:
    """φ_m = mean over the M! orderings of v(before ∪ {m}) − v(before), v(∅) = 0."""
    phi = {m: 0.0 for m in names}
    orders = list(itertools.permutations(names))
    for order in orders:
        before: set = set()
        for m in order:
            prev = value(frozenset(before)) if before else 0.0
            phi[m] = phi[m] + (value(frozenset(before | {m})) - prev)
            before.add(m)
    return {m: phi[m] / len(orders) for m in names}


def reference_agm_m(model, inputs, y, alpha: float, max_gap: float = 10.0) -> tuple[dict, dict]:
    """({param: AGM's first-step gradient, no clip}, {m: κ_m}) with zeroed embeddings."""
    task, names = model.task, model.modalities
    M = len(names)
    h = embeddings_by_hand(model, inputs)
    o = shapley_by_orderings(lambda keep: head_on(model, h, keep), names)
    scores = {}
    for m in names:
        logp = torch.log_softmax(o[m].detach(), -1).gather(-1, y.view(-1, 1)).squeeze(-1)
        scores[m] = float((-logp.exp().clamp_min(1e-8).log()).mean())
    mean = sum(scores.values()) / M
    r = {m: math.exp(M / (M - 1) * (mean - scores[m])) for m in names}
    kappa = {m: math.exp(alpha * min(1.0 - r[m], max_gap)) for m in names}  # r̄ = 1 at step 1
    fused = sum(o.values()).detach().requires_grad_(True)
    (g_z,) = torch.autograd.grad(ref_task_loss(fused, y, task), fused)
    params = all_params_m(model)
    grads = {p: torch.zeros_like(p) for p in params}
    for m in names:
        gs = torch.autograd.grad(
            o[m], params, grad_outputs=g_z, retain_graph=True, allow_unused=True
        )
        for p, g in zip(params, gs):
            if g is not None:
                grads[p] = grads[p] + kappa[m] * g
    return grads, kappa


def check_close(got: dict, want: dict, params, tol: float = 1e-10) -> None:
    for p in params:
        err = float((got[p] - want[p]).abs().max())
        scale = max(1.0, float(want[p].abs().max()))
        assert err <= tol * scale, f"parameter of shape {list(p.shape)}: max |Δ| = {err:.3g}"


def grads_now(model) -> dict:
    return {
        p: torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in all_params_m(model)
    }
