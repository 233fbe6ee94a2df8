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
tower; D), fewer when μ = 0 or when λ = 0 and projection is off; plus one through the
head alone for the head-cosine diagnostic (cheap: it stops at h_v, h_l).
"""

from __future__ import annotations

import torch

from balgrad._grad import EPS, assert_finite_grad, cosine, norm, project_conflicting, scale_to
from balgrad.errors import ConfigError
from balgrad.strategies.base import Strategy, checked_loss
from balgrad.tasks import symmetric_kl, task_loss, true_class_prob

REWEIGHTS = ("contribution", "none")
SCOPES = ("global", "per_modality")
MODALITIES = ("image", "text")


class BalGrad(Strategy):
    """See the module docstring. All options are SPEC section 2's, by the same names.

    Args:
        reweight: ``"contribution"`` (default) or ``"none"`` (w = 1, no norm equalisation).
        equalize_norms: rescale g_kl^v and g_kl^l to their mean norm before weighting.
        contribution_ema: EMA factor for s_m across steps (0 = this batch only).
        project: project g_T away from g_kl when they conflict.
        projection_scope: ``"global"`` or ``"per_modality"`` (within θ_v and θ_l apart).
        kl_weight: λ. unimodal_weight: μ. temperature: τ of p_m = softmax(z_m / τ).
        head_diagnostics: also log cos of the unimodal gradients on the shared head.
    """

    name = "balgrad"

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
    ):
        super().__init__()
        if reweight not in REWEIGHTS:
            raise ConfigError(f"reweight: unknown value {reweight!r}; expected one of {REWEIGHTS}")
        if projection_scope not in SCOPES:
            raise ConfigError(
                f"projection_scope: unknown value {projection_scope!r}; expected one of {SCOPES}"
            )
        if not 0.0 <= contribution_ema < 1.0:
            raise ConfigError(f"contribution_ema: must be in [0, 1), got {contribution_ema}")
        if temperature <= 0:
            raise ConfigError(f"temperature: must be > 0, got {temperature}")
        if kl_weight < 0 or unimodal_weight < 0:
            raise ConfigError("kl_weight and unimodal_weight must be >= 0")
        self.reweight = reweight
        self.equalize_norms = bool(equalize_norms)
        self.contribution_ema = float(contribution_ema)
        self.project = bool(project)
        self.projection_scope = projection_scope
        self.kl_weight = float(kl_weight)
        self.unimodal_weight = float(unimodal_weight)
        self.temperature = float(temperature)
        self.head_diagnostics = bool(head_diagnostics)
        self._ema: torch.Tensor | None = None

    # -- contribution weights ---------------------------------------------------------
    def contribution_weights(
        self, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """s = (s_v, s_l) -> (s used, c, w) with c = s / sum(s), w = 2 (1 − c)."""
        if self.contribution_ema > 0:
            prev = None if self._ema is None else self._ema.to(s)
            self._ema = (
                s.clone()
                if prev is None
                else self.contribution_ema * prev + (1 - self.contribution_ema) * s
            )
            s = self._ema
        total = s.sum()
        c = s / total if total > EPS else torch.full_like(s, 0.5)
        return s, c, 2.0 * (1.0 - c)

    def compute(self, model, output, target):
        task = model.task
        layout = self.layout(model)
        groups = set(layout.groups)
        uni_groups = [g for g in (*MODALITIES, "unimodal_heads") if g in groups]

        loss_t = checked_loss("task loss L_T", task_loss(output.logits, target, task))
        loss_v = checked_loss("image loss L_v", task_loss(output.logits_image, target, task))
        loss_l = checked_loss("text loss L_l", task_loss(output.logits_text, target, task))
        kl = checked_loss(
            "KL divergence D",
            symmetric_kl(output.logits_image, output.logits_text, task, self.temperature),
        )

        need_kl = self.kl_weight > 0 or self.project
        need_uni = self.unimodal_weight > 0
        g_t = layout.grad(loss_t, retain_graph=True)
        g_uni = (
            layout.grad(loss_v + loss_l, uni_groups, retain_graph=True)
            if need_uni
            else layout.zeros()
        )
        g_kl_raw = layout.grad(kl, MODALITIES, retain_graph=True) if need_kl else layout.zeros()
        # one all-reduce for the three separate gradients, before any norm or projection
        g_t, g_uni, g_kl_raw = self.sync.mean(torch.stack([g_t, g_uni, g_kl_raw])).unbind(0)
        for name, g in (("g_T", g_t), ("g_uni", g_uni), ("g_kl", g_kl_raw)):
            assert_finite_grad(name, g)

        # s_m = mean p_m[y] with p_m = softmax(z_m / τ), the distribution D compares
        tau = self.temperature
        s = torch.stack(
            [
                self.batch_mean(true_class_prob(output.logits_image / tau, target, task)),
                self.batch_mean(true_class_prob(output.logits_text / tau, target, task)),
            ]
        )
        s, c, w = self.contribution_weights(s)

        g_kl_v = layout.part(g_kl_raw, "image")
        g_kl_l = layout.part(g_kl_raw, "text")
        if self.reweight == "contribution":
            if self.equalize_norms:
                n = (norm(g_kl_v) + norm(g_kl_l)) / 2
                g_kl_v, g_kl_l = scale_to(g_kl_v, n), scale_to(g_kl_l, n)
            g_kl = w[0] * g_kl_v + w[1] * g_kl_l
        else:
            w = torch.ones_like(w)
            g_kl = g_kl_v + g_kl_l

        g_t_proj, conflict = g_t, False
        if self.project:
            if self.projection_scope == "global":
                g_t_proj, conflict = project_conflicting(g_t, g_kl)
            else:
                g_t_proj = g_t.clone()
                for m in MODALITIES:
                    sl = layout.slices[m]
                    g_t_proj[sl], hit = project_conflicting(g_t[sl], g_kl[sl])
                    conflict = conflict or hit

        update = g_t_proj + self.unimodal_weight * g_uni + self.kl_weight * g_kl
        layout.write_grads(update)

        stats = {
            "loss_task": loss_t.item(),
            "loss_image": loss_v.item(),
            "loss_text": loss_l.item(),
            "kl": kl.item(),
            "score_image": s[0].item(),
            "score_text": s[1].item(),
            "contrib_image": c[0].item(),
            "contrib_text": c[1].item(),
            "weight_image": w[0].item(),
            "weight_text": w[1].item(),
            "cos_task_kl": cosine(g_t, g_kl),
            "cos_task_kl_projected": cosine(g_t_proj, g_kl),
            "conflict": float(torch.dot(g_t, g_kl) < 0),
            "projected": float(conflict),
            "norm_kl_image": norm(layout.part(g_kl_raw, "image")).item(),
            "norm_kl_text": norm(layout.part(g_kl_raw, "text")).item(),
            "norm_uni_image": norm(layout.part(g_uni, "image")).item(),
            "norm_uni_text": norm(layout.part(g_uni, "text")).item(),
            "norm_task_image": norm(layout.part(g_t, "image")).item(),
            "norm_task_text": norm(layout.part(g_t, "text")).item(),
        }
        if self.head_diagnostics and "head" in groups:
            stats["cos_head_unimodal"] = self._head_cosine(model, output, target, layout)
        return stats

    def _head_cosine(self, model, output, target, layout) -> float:
        """cos(∇_θT ℓ(f_T(h_v, 0)), ∇_θT ℓ(f_T(0, h_l))): do the modalities pull the head apart?"""
        h_v, h_l = output.h_image.detach(), output.h_text.detach()
        z_v = model.classify(h_v, torch.zeros_like(h_l))
        z_l = model.classify(torch.zeros_like(h_v), h_l)
        g_v = layout.grad(task_loss(z_v, target, model.task), ["head"], retain_graph=False)
        g_l = layout.grad(task_loss(z_l, target, model.task), ["head"], retain_graph=False)
        g_v, g_l = self.sync.mean(torch.stack([g_v, g_l])).unbind(0)
        return cosine(g_v, g_l)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["ema"] = None if self._ema is None else self._ema.tolist()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        ema = state.get("ema")
        # float64: a float32 round trip would change the restored weights
        self._ema = None if ema is None else torch.tensor(ema, dtype=torch.float64)
