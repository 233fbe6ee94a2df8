"""BalGrad (Kwon et al., "See-Saw Modality Balance", NAACL 2025), SPEC section 2.

Per batch, with L_T = ℓ(z, y), L_m = ℓ(z_m, y), D = KL(p_v||p_l) + KL(p_l||p_v):

1. Inter-modality reweighting of the KL gradients g_kl^m = ∇_{θ_m} D by each
   modality's contribution c_m = s_m / (s_v + s_l), s_m = mean p_m[y]:
   w_m = 2 (1 − c_m); with ``equalize_norms`` both are first rescaled to their mean
   norm n, so g_kl = [w_v n/|g_kl^v| g_kl^v ; w_l n/|g_kl^l| g_kl^l] (zero on θ_T).
2. Inter-task projection: if <g_T, g_kl> < 0, g_T⊥ = g_T − <g_T, g_kl>/|g_kl|² g_kl.
3. Update: θ_T ← g_T⊥;  θ_m ← g_T⊥|θ_m + μ g_T^m + λ g_kl|θ_m.

Ablations (paper Table 2): ``reweight="none"`` is "w/ projection",
``project=False`` is "w/ reweighting"; ``kl_weight=0, project=False,
reweight="none"`` keeps only the auxiliary unimodal losses.

Backward passes per step: 3 (L_T; L_v + L_l together, since each touches only its own
tower; D), fewer when μ = 0 or when λ = 0 and projection is off; that is the floor of
the exact method. The three gradients stay lists of per-parameter tensors, combined in
place with foreach ops: g_kl is never materialised (its weights multiply the raw
∇_{θ_m} D inside the projection and the update), and every coefficient and conflict
flag is a device tensor, so the step never waits on the device. The head-cosine
diagnostic (one more pass through the head alone) runs every
``head_diagnostics_every`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from balgrad._grad import (
    EPS,
    add_to_grads_,
    axpy_,
    cosine,
    dots,
    grads_of,
    group_sums,
    project_conflicting_,
    sq_norms,
    widen,
)
from balgrad.errors import ConfigError
from balgrad.strategies.base import Strategy
from balgrad.tasks import symmetric_kl, task_loss, true_class_prob

REWEIGHTS = ("contribution", "none")
MODALITIES = ("image", "text")
LOSS_NAMES = ("task loss L_T", "image loss L_v", "text loss L_l", "KL divergence D")


@dataclass
class Losses:
    task: torch.Tensor
    image: torch.Tensor
    text: torch.Tensor
    kl: torch.Tensor

    def stats(self) -> dict[str, torch.Tensor]:
        return {
            "loss_task": self.task.detach(),
            "loss_image": self.image.detach(),
            "loss_text": self.text.detach(),
            "kl": self.kl.detach(),
        }


class BalGrad(Strategy):
    """See the module docstring. All options are SPEC section 2's, by the same names.

    Args:
        reweight: ``"contribution"`` (default) or ``"none"`` (w = 1, no norm equalisation).
        equalize_norms: rescale g_kl^v and g_kl^l to their mean norm before weighting.
        contribution_ema: EMA factor for s_m across steps (0 = this batch only).
        project: project g_T away from g_kl when they conflict.
        projection_scope: ``"global"`` or ``"per_modality"`` (within θ_v and θ_l apart).
        kl_weight: λ. unimodal_weight: μ. temperature: τ of p_m = softmax(z_m / τ).
        head_diagnostics: also log cos of the unimodal gradients on the shared head
            (``cos_head_unimodal``) ...
        head_diagnostics_every: ... at steps 0, N, 2N, ... (it costs a pass through the
            head and a reduction over its parameters).
    """

    name = "balgrad"
    scopes: tuple[str, ...] = ("global", "per_modality")
    full_precision_compute = True

    def __init__(
        self,
        *,
        reweight: str = "contribution",
        equalize_norms: bool = True,
        contribution_ema: float = 0.0,
        project: bool = True,
        projection_scope: str = "global",
        kl_weight: float = 1.0,
        unimodal_weight: float = 1.0,
        temperature: float = 1.0,
        head_diagnostics: bool = True,
        head_diagnostics_every: int = 50,
    ):
        super().__init__()
        if reweight not in REWEIGHTS:
            raise ConfigError(f"reweight: unknown value {reweight!r}; expected one of {REWEIGHTS}")
        if projection_scope not in self.scopes:
            raise ConfigError(
                f"projection_scope: unknown value {projection_scope!r}; expected one of {self.scopes}"
            )
        if not 0.0 <= contribution_ema < 1.0:
            raise ConfigError(f"contribution_ema: must be in [0, 1), got {contribution_ema}")
        if temperature <= 0:
            raise ConfigError(f"temperature: must be > 0, got {temperature}")
        if kl_weight < 0 or unimodal_weight < 0:
            raise ConfigError("kl_weight and unimodal_weight must be >= 0")
        if int(head_diagnostics_every) < 1:
            raise ConfigError(f"head_diagnostics_every: must be >= 1, got {head_diagnostics_every}")
        self.reweight = reweight
        self.equalize_norms = bool(equalize_norms)
        self.contribution_ema = float(contribution_ema)
        self.project = bool(project)
        self.projection_scope = projection_scope
        self.kl_weight = float(kl_weight)
        self.unimodal_weight = float(unimodal_weight)
        self.temperature = float(temperature)
        self.head_diagnostics = bool(head_diagnostics)
        self.head_diagnostics_every = int(head_diagnostics_every)
        self._ema: torch.Tensor | None = None

    # -- pieces shared with balgrad_fast ----------------------------------------------------
    def losses(self, output, target, task) -> Losses:
        """L_T, L_v, L_l, D (float32 at least), checked for finiteness at the next check."""
        losses = Losses(
            task_loss(output.logits, target, task),
            task_loss(output.logits_image, target, task),
            task_loss(output.logits_text, target, task),
            symmetric_kl(output.logits_image, output.logits_text, task, self.temperature),
        )
        self.check_finite(
            LOSS_NAMES, torch.stack([losses.task, losses.image, losses.text, losses.kl])
        )
        return losses

    def score_sums(self, output, target, task) -> torch.Tensor:
        """(Σ p_v[y], Σ p_l[y], batch size) on this rank, p_m = softmax(z_m / τ), the
        distributions D compares; all-reduce and divide to get s_m."""
        with torch.no_grad():
            tau = self.temperature
            p_v = true_class_prob(widen(output.logits_image) / tau, target, task)
            p_l = true_class_prob(widen(output.logits_text) / tau, target, task)
            return torch.stack([p_v.sum(), p_l.sum(), p_v.new_full((), p_v.numel())])

    def contribution_weights(
        self, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """s = (s_v, s_l) -> (s used, c, w) with c = s / sum(s), w = 2 (1 − c)."""
        if self.contribution_ema > 0:
            b = self.contribution_ema
            prev = s if self._ema is None else self._ema.to(s)
            blended = torch.where(torch.isfinite(prev), b * prev + (1 - b) * s, s)
            # a non-finite batch (reported at the next check) must not poison the average
            self._ema = torch.where(torch.isfinite(s).all(), blended, prev).detach()
            s = self._ema
        total = s.sum()
        ok = total > EPS
        c = torch.where(ok, s / torch.where(ok, total, 1.0), 0.5)
        return s, c, 2.0 * (1.0 - c)

    def kl_factors(
        self, kl_norms: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_v, f_l) with g_kl|θ_m = f_m ∇_{θ_m} D, and the weights w reported."""
        if self.reweight == "none":
            ones = torch.ones_like(w)
            return ones, ones
        if not self.equalize_norms:
            return w, w
        n = kl_norms.mean()
        ok = kl_norms > EPS  # a zero-norm g_kl^m contributes zero
        return torch.where(ok, w * n / torch.where(ok, kl_norms, 1.0), 0.0), w

    def wants_head_cosine(self) -> bool:
        return self.head_diagnostics and self.step % self.head_diagnostics_every == 0

    def head_cosine(self, model, output, target) -> torch.Tensor | None:
        """cos(∇_θT ℓ(f_T(h_v, 0)), ∇_θT ℓ(f_T(0, h_l))): do the modalities pull the head
        apart? Computed at the head's own precision (autocast is off here), from the
        embeddings cast to it."""
        head = self.layout(model).groups.get("head", [])
        if not head:
            return None
        h_v = output.h_image.detach().to(head[0].dtype)
        h_l = output.h_text.detach().to(head[0].dtype)
        z_v = model.classify(h_v, torch.zeros_like(h_l))
        z_l = model.classify(torch.zeros_like(h_v), h_l)
        g_v = grads_of(task_loss(z_v, target, model.task), head, retain_graph=False)
        g_l = grads_of(task_loss(z_l, target, model.task), head, retain_graph=False)
        sync = self.sync
        if sync.world_size > 1:
            sync.mean_(g_v + g_l)
        return cosine(dots(g_v, g_l).sum(), sq_norms(g_v).sum().sqrt(), sq_norms(g_l).sum().sqrt())

    # -- the exact step ---------------------------------------------------------------------
    def compute(self, model, output, target):
        task = model.task
        layout = self.layout(model)
        image, text = layout.groups.get("image", []), layout.groups.get("text", [])
        towers = image + text
        uni = towers + layout.groups.get("unimodal_heads", [])
        params = layout.params
        losses = self.losses(output, target, task)
        like = losses.task.detach()
        zero = like.new_zeros(())

        need_uni = self.unimodal_weight > 0 and bool(uni)
        need_kl = (self.kl_weight > 0 or self.project) and bool(towers)
        g_t = grads_of(self.scaled(losses.task), params, retain_graph=need_uni or need_kl)
        g_u = (
            grads_of(self.scaled(losses.image + losses.text), uni, retain_graph=need_kl)
            if need_uni
            else []
        )
        g_k = grads_of(self.scaled(losses.kl), towers, retain_graph=False) if need_kl else []
        sync = self.sync
        if sync.world_size > 1:  # before any norm, coefficient or projection
            sync.mean_(g_t + g_u + g_k)

        def pick(grads, *names):  # g_t's tensors for the named groups
            return [g for n in names if n in layout.index for g in grads[layout.index[n]]]

        nv, nl = len(image), len(text)
        t_towers = pick(g_t, "image", "text")
        tt = sq_norms(g_t, like)  # one entry per parameter, in layout order
        tt_v, tt_l = (tt[layout.index[n]].sum() if n in layout.index else zero for n in MODALITIES)
        uu_v, uu_l = group_sums(sq_norms(g_u, like), [nv, nl], like)
        kk = torch.stack(group_sums(sq_norms(g_k, like), [nv, nl], like))
        if self.scaler is None:
            grad_sq = torch.stack([tt.sum(), uu_v + uu_l, kk.sum()])
            self.check_finite(("gradient g_T", "gradient g_uni", "gradient g_kl"), grad_sq)

        counts = sync.sum(self.score_sums(output, target, task))
        s, c, w = self.contribution_weights(counts[:2] / counts[2].clamp_min(1))
        kl_norms = kk.sqrt()
        f, w = self.kl_factors(kl_norms, w)
        scale = torch.cat([f[0].expand(nv), f[1].expand(nl)]).to(like.dtype)
        kl_sq = (f.square() * kk).sum()  # |g_kl|²

        if need_kl and self.project:
            dot, dot_after, task_sq_after, projected, kl_coef = self._project_(
                t_towers, g_k, scale, nv, tt.sum()
            )
        else:
            dot = (scale * dots(t_towers, g_k, like)).sum() if need_kl else zero
            dot_after, task_sq_after, kl_coef = dot, tt.sum(), self.kl_weight * scale
            projected = torch.zeros((), dtype=torch.bool, device=like.device)

        if need_uni:
            uni_t = pick(g_t, "image", "text", "unimodal_heads")
            torch._foreach_add_(uni_t, g_u, alpha=self.unimodal_weight)
        if need_kl:
            axpy_(t_towers, g_k, kl_coef)
        add_to_grads_(params, g_t)

        geometry = dict(
            dot=dot,
            dot_after=dot_after,
            task_sq=tt.sum(),
            task_sq_after=task_sq_after,
            kl_sq=kl_sq,
            conflict=(dot < 0).to(like.dtype),
            projected=projected.to(like.dtype),
            kl_norms=kl_norms,
            uni_sq=torch.stack([uu_v, uu_l]),
            task_sq_m=torch.stack([tt_v, tt_l]),
        )
        return self.step_stats(model, output, target, losses, s, c, w, **geometry)

    def step_stats(
        self,
        model,
        output,
        target,
        losses,
        s,
        c,
        w,
        *,
        dot,
        dot_after,
        task_sq,
        task_sq_after,
        kl_sq,
        conflict,
        projected,
        kl_norms,
        uni_sq,
        task_sq_m,
    ) -> dict[str, torch.Tensor]:
        """The step's statistics (0-d tensors) from its losses, s/c/w and gradient
        geometry (<g_T, g_kl> before/after, squared norms; per modality for the last
        three), and the head cosine on its steps."""
        kl_norm = kl_sq.sqrt()
        stats = {
            **losses.stats(),
            "score_image": s[0],
            "score_text": s[1],
            "contrib_image": c[0],
            "contrib_text": c[1],
            "weight_image": w[0],
            "weight_text": w[1],
            "cos_task_kl": cosine(dot, task_sq.sqrt(), kl_norm),
            "cos_task_kl_projected": cosine(dot_after, task_sq_after.sqrt(), kl_norm),
            "conflict": conflict,
            "projected": projected,
            "norm_kl_image": kl_norms[0],
            "norm_kl_text": kl_norms[1],
            "norm_uni_image": uni_sq[0].sqrt(),
            "norm_uni_text": uni_sq[1].sqrt(),
            "norm_task_image": task_sq_m[0].sqrt(),
            "norm_task_text": task_sq_m[1].sqrt(),
        }
        if self.wants_head_cosine():
            head_cos = self.head_cosine(model, output, target)
            if head_cos is not None:
                stats["cos_head_unimodal"] = head_cos
        return stats

    def _project_(self, t_towers, g_k, scale, nv, task_sq):
        """Project the towers' part of g_T (in place) off g_kl = scale ⊙ g_k, globally or
        per tower; returns (<g_T, g_kl>, <g_T⊥, g_kl>, |g_T⊥|², projected, the per-tensor
        coefficient of g_k in the rest of the update)."""
        whole = slice(0, len(t_towers))
        parts = [whole] if self.projection_scope == "global" else [slice(0, nv), slice(nv, None)]
        done = [
            (sl, project_conflicting_(t_towers[sl], g_k[sl], scale[sl], apply_correction=False))
            for sl in parts
            if t_towers[sl]
        ]
        kl_coef = self.kl_weight * scale
        for sl, pr in done:  # the second Gram-Schmidt pass rides on the λ g_kl update
            kl_coef[sl] -= pr.correction * scale[sl]
        # |g_T⊥|² = |g_T|² − <g_T, r>²/|r|² for each projected part (a diagnostic)
        removed = [
            torch.where(
                pr.conflict, pr.dot.square() / torch.where(pr.conflict, pr.ref_sq_norm, 1.0), 0.0
            )
            for _, pr in done
        ]
        return (
            torch.stack([pr.dot for _, pr in done]).sum(),
            torch.stack([pr.dot_after for _, pr in done]).sum(),
            (task_sq - torch.stack(removed).sum()).clamp_min(0),
            torch.stack([pr.conflict for _, pr in done]).any(),
            kl_coef,
        )

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["ema"] = None if self._ema is None else self._ema.tolist()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        ema = state.get("ema")
        # float64: a float32 round trip would change the restored weights
        self._ema = None if ema is None else torch.tensor(ema, dtype=torch.float64)
