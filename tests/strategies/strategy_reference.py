"""Tiny models, batches and an independent re-derivation of SPEC section 2 for the tests.

Nothing here calls balgrad's gradient arithmetic or loss helpers: losses are written
with ``torch.nn.functional`` (or out by hand), gradients come from plain
``torch.autograd.grad`` on explicit parameter lists, and the reweighting and projection
are done with dictionaries of tensors keyed by parameter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from balgrad.models import MultimodalModel

IMAGE_IN, TEXT_IN = 5, 7


class TinyEncoder(nn.Module):
    """A linear "backbone" with the ``out_dim`` attribute MultimodalModel expects."""

    def __init__(self, in_dim: int, out_dim: int, scale: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.out_dim = out_dim
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x)) * self.scale


def make_model(
    fusion: str = "concat",
    task: str = "single_label",
    unimodal_head: str = "shared",
    num_classes: int = 4,
    embed_dim: int = 6,
    seed: int = 0,
    image_in: int = IMAGE_IN,
    text_in: int = TEXT_IN,
    encoder_dim: int = 5,
    encoder_scale: float = 1.0,
    head_hidden: int = 0,
    dtype: torch.dtype = torch.float64,
) -> MultimodalModel:
    torch.manual_seed(seed)
    model = MultimodalModel(
        {
            "image": TinyEncoder(image_in, encoder_dim, encoder_scale),
            "text": TinyEncoder(text_in, encoder_dim, encoder_scale),
        },
        num_classes=num_classes,
        task=task,
        embed_dim=embed_dim,
        fusion=fusion,
        unimodal_head=unimodal_head,
        head_hidden=head_hidden,
    ).to(dtype)
    if fusion == "attention":
        # the type embedding starts at zero; make it non-trivial
        with torch.no_grad():
            model.head.fusion.type_embedding.normal_(0, 0.5)
    return model


def make_batch(
    task: str = "single_label",
    num_classes: int = 4,
    batch: int = 8,
    seed: int = 0,
    image_in: int = IMAGE_IN,
    text_in: int = TEXT_IN,
):
    gen = torch.Generator().manual_seed(1000 + seed)
    x_v = torch.randn(batch, image_in, generator=gen, dtype=torch.float64)
    x_l = torch.randn(batch, text_in, generator=gen, dtype=torch.float64)
    if task == "single_label":
        y = torch.randint(0, num_classes, (batch,), generator=gen)
    else:
        y = (torch.rand(batch, num_classes, generator=gen) < 0.4).double()
    return x_v, x_l, y


# -- parameter lists, built from the modules (not from parameter_groups) ----------------
def trainable(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def image_params(model) -> list[nn.Parameter]:
    return trainable(model.image_encoder, model.image_embedding)


def text_params(model) -> list[nn.Parameter]:
    return trainable(model.text_encoder, model.text_embedding)


def head_params(model) -> list[nn.Parameter]:
    return trainable(model.head)


def all_params(model) -> list[nn.Parameter]:
    ps = image_params(model) + text_params(model) + head_params(model)
    if model.unimodal_head == "separate":
        ps += trainable(model.image_head, model.text_head)
    return ps


def grads_of(loss: torch.Tensor, params: list[nn.Parameter]) -> dict[nn.Parameter, torch.Tensor]:
    """{param: d loss / d param} with zeros where the loss does not depend on it."""
    if not params:
        return {}
    if not loss.requires_grad:
        return {p: torch.zeros_like(p) for p in params}
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return {p: torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)}


def current_grads(model) -> dict[nn.Parameter, torch.Tensor]:
    return {
        p: (torch.zeros_like(p) if p.grad is None else p.grad.clone()) for p in all_params(model)
    }


# -- losses written from the SPEC ---------------------------------------------------------
def ref_task_loss(z: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "single_label":
        return F.nll_loss(F.log_softmax(z, dim=-1), y)
    # mean over samples and labels of −[y log σ(z) + (1−y) log(1 − σ(z))]
    p = torch.sigmoid(z)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def ref_symmetric_kl(z_a: torch.Tensor, z_b: torch.Tensor, task: str, tau: float) -> torch.Tensor:
    """KL(p_a||p_b) + KL(p_b||p_a), batch mean; Bernoulli KLs summed over labels."""
    if task == "single_label":
        la, lb = F.log_softmax(z_a / tau, -1), F.log_softmax(z_b / tau, -1)
        # F.kl_div(input=log q, target=log p, log_target) = sum p (log p − log q)
        kl_ab = F.kl_div(lb, la, reduction="batchmean", log_target=True)
        kl_ba = F.kl_div(la, lb, reduction="batchmean", log_target=True)
        return kl_ab + kl_ba
    a, b = torch.sigmoid(z_a / tau), torch.sigmoid(z_b / tau)

    def bern_kl(p, q):
        return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))

    return (bern_kl(a, b) + bern_kl(b, a)).sum(-1).mean()


def ref_score(z: torch.Tensor, y: torch.Tensor, task: str, tau: float = 1.0) -> float:
    """s_m = batch mean of p_m[y] (multi-label: mean probability of the true state)."""
    if task == "single_label":
        p = torch.softmax(z / tau, -1)
        return float(sum(p[i, int(y[i])].detach() for i in range(len(y))) / len(y))
    p = torch.sigmoid(z / tau)
    return float(torch.where(y > 0.5, p, 1 - p).detach().mean())


def forward_by_hand(model, x_v, x_l):
    """(z, z_v, z_l) from the model's modules; the head is *not* detached here (the
    reference only ever differentiates the unimodal losses w.r.t. tower parameters)."""
    h_v = model.image_embedding(model.image_encoder(x_v))
    h_l = model.text_embedding(model.text_encoder(x_l))
    return head_by_hand(model, h_v, h_l)


def head_by_hand(model, h_v, h_l):
    """(z, z_v, z_l) from the embeddings."""
    z = model.head(h_v, h_l)
    if model.unimodal_head == "separate":
        z_v, z_l = model.image_head(h_v), model.text_head(h_l)
    else:
        z_v = model.head(h_v, torch.zeros_like(h_l))
        z_l = model.head(torch.zeros_like(h_v), h_l)
    return z, z_v, z_l


# -- SPEC section 2 by hand ---------------------------------------------------------------
def _dot(a: dict, b: dict) -> torch.Tensor:
    return sum((a[p] * b[p]).sum() for p in a)


def _norm(a: dict) -> torch.Tensor:
    return torch.sqrt(sum((g * g).sum() for g in a.values())) if a else torch.tensor(0.0)


def _project(g: dict, ref: dict) -> dict:
    """g − <g,ref>/|ref|² ref when <g,ref> < 0 (and ref non-zero), over ref's keys."""
    d = _dot(g, ref)
    r2 = _dot(ref, ref)
    if float(d) < 0 and float(r2) > 0:
        return {p: g[p] - (d / r2) * ref[p] for p in g}
    return dict(g)


def reference_balgrad(
    model,
    x_v,
    x_l,
    y,
    *,
    reweight: str = "contribution",
    equalize_norms: bool = True,
    project: bool = True,
    projection_scope: str = "global",
    kl_weight: float = 1.0,
    unimodal_weight: float = 1.0,
    temperature: float = 1.0,
    contribution_ema: float = 0.0,
    previous_scores: tuple[float, float] | None = None,
) -> tuple[dict, dict]:
    """The gradient SPEC section 2 writes to ``.grad`` ({param: tensor}) and the pieces."""
    task = model.task
    z, z_v, z_l = forward_by_hand(model, x_v, x_l)
    loss_t = ref_task_loss(z, y, task)
    loss_v = ref_task_loss(z_v, y, task)
    loss_l = ref_task_loss(z_l, y, task)
    kl = ref_symmetric_kl(z_v, z_l, task, temperature)

    pv, pl = image_params(model), text_params(model)
    everything = all_params(model)
    g_t = grads_of(loss_t, everything)

    g_uni = {p: torch.zeros_like(p) for p in everything}
    g_uni.update(grads_of(loss_v, pv))
    g_uni.update(grads_of(loss_l, pl))
    if model.unimodal_head == "separate":
        g_uni.update(grads_of(loss_v, trainable(model.image_head)))
        g_uni.update(grads_of(loss_l, trainable(model.text_head)))

    g_kl_v = grads_of(kl, pv)
    g_kl_l = grads_of(kl, pl)

    # learning status and contribution weights
    s_v = ref_score(z_v, y, task, temperature)
    s_l = ref_score(z_l, y, task, temperature)
    if contribution_ema > 0 and previous_scores is not None:
        b = contribution_ema
        s_v = b * previous_scores[0] + (1 - b) * s_v
        s_l = b * previous_scores[1] + (1 - b) * s_l
    c_v, c_l = s_v / (s_v + s_l), s_l / (s_v + s_l)
    w_v, w_l = 2 * (1 - c_v), 2 * (1 - c_l)

    n_v, n_l = _norm(g_kl_v), _norm(g_kl_l)
    if reweight == "contribution":
        if equalize_norms:
            n = (n_v + n_l) / 2
            f_v = w_v * n / n_v if float(n_v) > 0 else 0.0
            f_l = w_l * n / n_l if float(n_l) > 0 else 0.0
        else:
            f_v, f_l = w_v, w_l
    else:
        f_v = f_l = 1.0
    g_kl = {p: torch.zeros_like(p) for p in everything}
    g_kl.update({p: f_v * g for p, g in g_kl_v.items()})
    g_kl.update({p: f_l * g for p, g in g_kl_l.items()})

    g_proj = dict(g_t)
    if project:
        if projection_scope == "global":
            g_proj = _project(g_t, g_kl)
        else:
            for ps in (pv, pl):
                g_proj.update(_project({p: g_t[p] for p in ps}, {p: g_kl[p] for p in ps}))

    update = {p: g_proj[p] + unimodal_weight * g_uni[p] + kl_weight * g_kl[p] for p in everything}
    pieces = {
        "g_t": g_t,
        "g_uni": g_uni,
        "g_kl": g_kl,
        "g_proj": g_proj,
        "scores": (s_v, s_l),
        "weights": (w_v, w_l),
        "losses": tuple(float(v.detach()) for v in (loss_t, loss_v, loss_l, kl)),
        "conflict": float(_dot(g_t, g_kl)) < 0,
        "cos": float(_dot(g_t, g_kl) / (_norm(g_t) * _norm(g_kl)))
        if float(_norm(g_kl)) > 0
        else 0.0,
    }
    return update, pieces


def flat(d: dict, params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([d[p].reshape(-1) for p in params])


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def isclose(a: float, b: float, tol: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
