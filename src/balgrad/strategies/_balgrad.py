"""BalGrad (Kwon et al., "See-Saw Modality Balance", NAACL 2025), SPEC sections 2 and 6.

Per batch, for M ≥ 2 modalities, with L_T = ℓ(z, y), L_m = ℓ(z_m, y) and
D = the mean over the M(M−1)/2 pairs {i, j} of KL(p_i‖p_j) + KL(p_j‖p_i)
(M = 2: KL(p_v‖p_l) + KL(p_l‖p_v)), and x[θ_m] the part of a gradient x on θ_m:

1. Inter-modality reweighting of the KL gradients g_kl^m = ∇_{θ_m} D by each
   modality's contribution c_m = s_m / Σ_k s_k, s_m = mean p_m[y]:
   w_m = M (1 − c_m) / (M − 1) (mean weight 1; M = 2: 2 (1 − c_m)); with
   ``equalize_norms`` every g_kl^m is first rescaled to their mean norm n, so
   g_kl[θ_m] = w_m n/‖g_kl^m‖ g_kl^m (zero on θ_T).
2. Inter-task projection: if <g_T, g_kl> < 0, g_T⊥ = g_T − <g_T, g_kl>/‖g_kl‖² g_kl.
3. Update: θ_T ← g_T⊥;  θ_m ← g_T⊥[θ_m] + μ g_T^m + λ g_kl[θ_m].

Ablations (paper Table 2): ``reweight="none"`` is "w/ projection",
``project=False`` is "w/ reweighting"; ``kl_weight=0, project=False,
reweight="none"`` keeps only the auxiliary unimodal losses.

Backward passes per step: 3 for any M (L_T; Σ_m L_m together, since each touches only
its own tower; D, whose gradient on each tower is that tower's g_kl^m), fewer when μ = 0 or when λ = 0 and projection is off; that is the floor of
the exact method. The three gradients stay lists of per-parameter tensors, combined in
place with foreach ops: g_kl is never materialised (its weights multiply the raw
∇_{θ_m} D inside the projection and the update), and every coefficient and conflict
flag is a device tensor, so the step never waits on the device. The head-cosine
diagnostic (one more pass through the head alone) runs every
``head_diagnostics_every`` steps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field

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
from balgrad.names import statistics
from balgrad.registry import validated
from balgrad.strategies._base import NonNegative, Positive, Strategy
from balgrad.tasks import symmetric_kl, task_loss, true_class_prob

#: the statistics of BalGrad (and balgrad_fast), declared once: the strategies build
#: their keys through it and the report's diagnostics read them through it
STATISTICS = statistics(
    "BalGrad",
    [
        "loss_task",
        "kl",
        "cos_task_kl",
        "cos_task_kl_projected",
        "conflict",
        "projected",
        "cos_head_unimodal",
    ],
    ["loss", "score", "contrib", "weight", "norm_kl", "norm_uni", "norm_task"],
)
#: the loss names of the (image, text) case, as SPEC section 2 writes them
PAIR_LOSS_NAMES = {"image": "image loss L_v", "text": "text loss L_l"}


@dataclass
class Losses:
    """One step's losses: L_T (``task``), L_m by modality in the model's order
    (``unimodal``) and D (``kl``).
    """

    task: torch.Tensor
    unimodal: dict[str, torch.Tensor]  # L_m by modality, in the model's order
    kl: torch.Tensor

    def unimodal_sum(self) -> torch.Tensor:
        """Σ_m L_m, left to right (M = 2: L_v + L_l).

        Returns:
            A 0-d tensor.
        """
        first, *rest = self.unimodal.values()
        return sum(rest, first)

    def stats(self) -> dict[str, torch.Tensor]:
        """The losses as statistics, detached.

        Returns:
            ``{"loss_task": L_T, "loss_<m>": L_m, ..., "kl": D}``.
        """
        return {
            "loss_task": self.task.detach(),
            **{STATISTICS.key("loss", m): v.detach() for m, v in self.unimodal.items()},
            "kl": self.kl.detach(),
        }


def pairwise_kl(logits: list[torch.Tensor], task: str, temperature: float = 1.0) -> torch.Tensor:
    """D: the mean symmetric KL divergence over the pairs of modalities (M = 2: the one
    pair's, exactly).

    Args:
        logits: z_m per modality, each ``[batch, classes]``.
        task: ``"single_label"`` or ``"multi_label"``.
        temperature: τ: the distributions are softmax(z_m / τ).

    Returns:
        D, a 0-d tensor.
    """
    terms = [symmetric_kl(a, b, task, temperature) for a, b in itertools.combinations(logits, 2)]
    return terms[0] if len(terms) == 1 else torch.stack(terms).mean()


# -- the method's arithmetic: pure functions of per-modality tensors [M] -----------------
def ema_scores(prev: torch.Tensor | None, s: torch.Tensor, b: float) -> torch.Tensor:
    """The scores s_m averaged across steps: b · prev + (1 − b) · s (s itself at the first
    step, and where prev is not finite); prev unchanged when a score of this batch is
    not finite (reported at the next check), so it cannot poison the average.

    Args:
        prev: The previous average, or None at the first step.
        s: This step's scores ``[M]``.
        b: The decay.

    Returns:
        The new average, detached.
    """
    prev = s if prev is None else prev.to(s)
    blended = torch.where(torch.isfinite(prev), b * prev + (1 - b) * s, s)
    return torch.where(torch.isfinite(s).all(), blended, prev).detach()


def contribution_weights(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, w) from the scores s [M]: c = s / Σ s (uniform 1/M when Σ s ≤ EPS) and
    w = M (1 − c) / (M − 1) (mean 1; M = 2: 2 (1 − c)).

    Args:
        s: The scores ``[M]``.

    Returns:
        (c, w), each ``[M]``.
    """
    total = s.sum()
    ok = total > EPS
    m = s.numel()
    c = torch.where(ok, s / torch.where(ok, total, 1.0), 1.0 / m)
    return c, m / (m - 1) * (1.0 - c)


def kl_scale_factors(
    kl_norms: torch.Tensor, w: torch.Tensor, reweight: str, equalize_norms: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, w reported) [M] with g_kl[θ_m] = f_m ∇_{θ_m} D: f = w n / ‖g_kl^m‖ with n the
    mean of the norms ‖g_kl^m‖ (0 where a norm is 0), f = w without ``equalize_norms``,
    f = w = 1 with ``reweight="none"``.

    Args:
        kl_norms: ‖g_kl^m‖ per modality ``[M]``.
        w: The contribution weights ``[M]``.
        reweight: ``"contribution"`` or ``"none"``.
        equalize_norms: Whether to rescale each g_kl^m to the mean norm first.

    Returns:
        (f, w reported), each ``[M]``.
    """
    if reweight == "none":
        ones = torch.ones_like(w)
        return ones, ones
    if not equalize_norms:
        return w, w
    n = kl_norms.mean()
    ok = kl_norms > EPS  # a zero-norm g_kl^m contributes zero
    return torch.where(ok, w * n / torch.where(ok, kl_norms, 1.0), 0.0), w


def projection_coefficients(
    d_m: torch.Tensor, r2_m: torch.Tensor, scope: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(α [M], projected) of the conflict projection g_T^m ← g_T^m − α_m g_kl^m, from
    d_m = <g_T^m, g_kl^m> and r2_m = ‖g_kl^m‖² per modality: ``"global"`` projects the
    whole of g_T off the whole of g_kl (one α = Σd / Σr2 when Σd < 0), ``"per_modality"``
    each part off its own (α_m = d_m / r2_m where d_m < 0); α = 0 where there is no
    conflict or g_kl is (numerically) zero.

    Args:
        d_m: <g_T^m, g_kl^m> ``[M]``.
        r2_m: ‖g_kl^m‖² ``[M]``.
        scope: ``"global"`` or ``"per_modality"``.

    Returns:
        (α ``[M]``, a 0-d bool: whether anything was projected).
    """
    if scope == "global":
        d, r2 = d_m.sum(), r2_m.sum()
        hit = (d < 0) & (r2 > EPS)
        alpha = torch.where(hit, d / torch.where(hit, r2, 1.0), 0.0).expand(len(d_m))
        return alpha, hit
    hit = (d_m < 0) & (r2_m > EPS)
    return torch.where(hit, d_m / torch.where(hit, r2_m, 1.0), 0.0), hit.any()


def projected_geometry(
    d_m: torch.Tensor, r2_m: torch.Tensor, t2_m: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(<g_T⊥, g_kl>, ‖g_T⊥‖²) after g_T^m ← g_T^m − α_m g_kl^m, from the per-modality
    d_m = <g_T^m, g_kl^m>, r2_m = ‖g_kl^m‖², t2_m = ‖g_T^m‖² (no pass over gradients).

    Args:
        d_m: <g_T^m, g_kl^m> ``[M]``.
        r2_m: ‖g_kl^m‖² ``[M]``.
        t2_m: ‖g_T^m‖² ``[M]``.
        alpha: α_m ``[M]``.

    Returns:
        (<g_T⊥, g_kl>, ‖g_T⊥‖²), 0-d each.
    """
    dot_after = (d_m - alpha * r2_m).sum()
    sq_after = (t2_m - 2 * alpha * d_m + alpha.square() * r2_m).sum().clamp_min(0)
    return dot_after, sq_after


def consecutive_slices(sizes: list[int]) -> list[slice]:
    """The ranges of consecutive runs of ``sizes`` entries.

    Args:
        sizes: Run lengths.

    Returns:
        One slice per run, in order.
    """
    ends = list(itertools.accumulate(sizes))
    return [slice(end - size, end) for size, end in zip(sizes, ends)]


def _pick(layout, grads: list, *names: str) -> list:
    """The tensors of ``grads`` (one per parameter, in layout order) of the named groups."""
    return [g for n in names if n in layout.index for g in grads[layout.index[n]]]


class BalGrad(Strategy):
    """See the module docstring. All options are SPEC section 2's, by the same names.

    Args:
        reweight: ``"contribution"`` (default) or ``"none"`` (w = 1, no norm equalisation).
        equalize_norms: rescale every g_kl^m to their mean norm before weighting.
        contribution_ema: EMA factor for s_m across steps (0 = this batch only).
        project: project g_T away from g_kl when they conflict.
        projection_scope: ``"global"`` or ``"per_modality"`` (within each θ_m apart).
        kl_weight: λ.
        unimodal_weight: μ.
        temperature: τ of p_m = softmax(z_m / τ).
        head_diagnostics: also log cos of the unimodal gradients on the shared head
            (``cos_head_unimodal``) ...
        head_diagnostics_every: ... at steps 0, N, 2N, ... (it costs a pass through the
            head and a reduction over its parameters).
    """

    name = "balgrad"
    statistics = STATISTICS
    full_precision_compute = True

    @validated
    def __init__(
        self,
        *,
        reweight: Literal["contribution", "none"] = "contribution",
        equalize_norms: bool = True,
        contribution_ema: Annotated[float, Field(ge=0, lt=1)] = 0.0,
        project: bool = True,
        projection_scope: Literal["global", "per_modality"] = "global",
        kl_weight: NonNegative = 1.0,
        unimodal_weight: NonNegative = 1.0,
        temperature: Positive = 1.0,
        head_diagnostics: bool = True,
        head_diagnostics_every: Annotated[int, Field(ge=1)] = 50,
    ):
        super().__init__()
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
    def losses(self, output, target, task, ctx) -> Losses:
        """L_T, L_m for each modality, D (float32 at least), checked for finiteness at
        the next check.

        Args:
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels.
            task: ``"single_label"`` or ``"multi_label"``.
            ctx: The step's context (the finiteness check).

        Returns:
            The step's losses.
        """
        z = output.unimodal
        losses = Losses(
            task_loss(output.logits, target, task),
            {m: task_loss(z[m], target, task) for m in z},
            pairwise_kl(list(z.values()), task, self.temperature),
        )
        names = ("task loss L_T", *(PAIR_LOSS_NAMES.get(m, f"{m} loss L_{m}") for m in z))
        ctx.check_finite(
            (*names, "KL divergence D"),
            torch.stack([losses.task, *losses.unimodal.values(), losses.kl]),
        )
        return losses

    def score_sums(self, output, target, task) -> torch.Tensor:
        """(Σ p_1[y], .., Σ p_M[y], batch size) on this rank, p_m = softmax(z_m / τ), the
        distributions D compares; all-reduce and divide to get s_m.

        Args:
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels.
            task: ``"single_label"`` or ``"multi_label"``.

        Returns:
            ``[M + 1]``: the M sums and the batch size.
        """
        with torch.no_grad():
            tau = self.temperature
            probs = [
                true_class_prob(widen(z) / tau, target, task) for z in output.unimodal.values()
            ]
            return torch.stack([*(p.sum() for p in probs), probs[0].new_full((), probs[0].numel())])

    def contribution_weights(
        self, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """s = (s_1, .., s_M) -> (s used, c, w): :func:`contribution_weights` of the
        scores, averaged across steps first with ``contribution_ema`` (:func:`ema_scores`).

        Args:
            s: This step's scores ``[M]``.

        Returns:
            The scores used, c and w, each ``[M]``.
        """
        if self.contribution_ema > 0:
            self._ema = ema_scores(self._ema, s, self.contribution_ema)
            s = self._ema
        return (s, *contribution_weights(s))

    def kl_factors(
        self, kl_norms: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_m for each m) with g_kl[θ_m] = f_m ∇_{θ_m} D, and the weights w reported
        (:func:`kl_scale_factors` with this strategy's options).

        Args:
            kl_norms: ‖g_kl^m‖ per modality ``[M]``.
            w: The contribution weights ``[M]``.

        Returns:
            (f, w reported), each ``[M]``.
        """
        return kl_scale_factors(kl_norms, w, self.reweight, self.equalize_norms)

    def wants_head_cosine(self, step: int) -> bool:
        """Whether this step computes the head cosine (``head_diagnostics``).

        Args:
            step: The step index.

        Returns:
            True on every ``head_diagnostics_every``-th step with the diagnostic on.
        """
        return self.head_diagnostics and step % self.head_diagnostics_every == 0

    def head_cosine(self, model, output, target, ctx) -> torch.Tensor | None:
        """cos(∇_θT ℓ(f_T(h_v, 0)), ∇_θT ℓ(f_T(0, h_l))): do the modalities pull the head
        apart? For M > 2, the mean of that cosine over the pairs of modalities. Computed
        at the head's own precision (autocast is off here), from the embeddings cast to it.

        Args:
            model: The model.
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels.
            ctx: The step's context.

        Returns:
            The cosine (0-d), or None when the model has no head parameters.
        """
        head = ctx.layout.groups.get("head", [])
        if not head:
            return None
        h = {m: v.detach().to(head[0].dtype) for m, v in output.embeddings.items()}
        grads = []
        for m in h:
            alone = {k: v if k == m else torch.zeros_like(v) for k, v in h.items()}
            z = model.classify(alone)
            grads.append(grads_of(task_loss(z, target, model.task), head, retain_graph=False))
        sync = ctx.sync
        if sync.world_size > 1:
            sync.mean_([g for gs in grads for g in gs])
        norms = [sq_norms(g).sum().sqrt() for g in grads]
        cosines = [
            cosine(dots(grads[i], grads[j]).sum(), norms[i], norms[j])
            for i, j in itertools.combinations(range(len(grads)), 2)
        ]
        return cosines[0] if len(cosines) == 1 else torch.stack(cosines).mean()

    # -- the exact step ---------------------------------------------------------------------
    def compute(self, model, output, target, ctx):
        """One step (SPEC section 2, section 6 for M): the losses, the scores s_m and weights
        w_m, the gradients g_T and g_kl per modality, the reweighting and the conflict
        projection, written to ``.grad``.
        """
        layout = ctx.layout
        modalities = self.modalities(model)
        sizes = [len(layout.groups[m]) for m in modalities]
        towers = [p for m in modalities for p in layout.groups[m]]
        uni = towers + layout.groups.get("unimodal_heads", [])
        losses = self.losses(output, target, model.task, ctx)
        like = losses.task.detach()
        need_uni = self.unimodal_weight > 0 and bool(uni)
        need_kl = (self.kl_weight > 0 or self.project) and bool(towers)
        g_t, g_u, g_k = self._gradients(losses, ctx, uni, towers, need_uni, need_kl)
        t_towers = _pick(layout, g_t, *modalities)
        tt, tt_m, uu_m, kk = self._norms(g_t, g_u, g_k, sizes, modalities, ctx, like)

        counts = ctx.sync.sum(self.score_sums(output, target, model.task))
        m_count = len(modalities)
        s, c, w = self.contribution_weights(counts[:m_count] / counts[m_count].clamp_min(1))
        kl_norms = kk.sqrt()
        f, w = self.kl_factors(kl_norms, w)
        scale = torch.cat([f[i].expand(n) for i, n in enumerate(sizes)]).to(like.dtype)
        dot, dot_after, task_sq_after, projected, kl_coef = self._conflict(
            t_towers, g_k, scale, sizes, tt, need_kl, like
        )

        if need_uni:
            uni_t = _pick(layout, g_t, *modalities, "unimodal_heads")
            torch._foreach_add_(uni_t, g_u, alpha=self.unimodal_weight)
        if need_kl:
            axpy_(t_towers, g_k, kl_coef)
        add_to_grads_(layout.params, g_t)

        geometry = dict(
            dot=dot,
            dot_after=dot_after,
            task_sq=tt.sum(),
            task_sq_after=task_sq_after,
            kl_sq=(f.square() * kk).sum(),  # |g_kl|²
            conflict=(dot < 0).to(like.dtype),
            projected=projected.to(like.dtype),
            kl_norms=kl_norms,
            uni_sq=torch.stack(uu_m),
            task_sq_m=torch.stack(tt_m),
        )
        return self.step_stats(model, output, target, ctx, losses, s, c, w, **geometry)

    def _gradients(self, losses, ctx, uni, towers, need_uni: bool, need_kl: bool):
        """(g_T on every parameter, g_uni = ∇ Σ_m L_m on ``uni``, ∇D on ``towers``), the
        last two [] where not needed, averaged over the ranks before any norm, coefficient
        or projection."""
        g_t = grads_of(ctx.scaled(losses.task), ctx.layout.params, retain_graph=need_uni or need_kl)
        g_u = (
            grads_of(ctx.scaled(losses.unimodal_sum()), uni, retain_graph=need_kl)
            if need_uni
            else []
        )
        g_k = grads_of(ctx.scaled(losses.kl), towers, retain_graph=False) if need_kl else []
        sync = ctx.sync
        if sync.world_size > 1:
            sync.mean_(g_t + g_u + g_k)
        return g_t, g_u, g_k

    def _norms(self, g_t, g_u, g_k, sizes, modalities, ctx, like):
        """(‖g_T‖² per parameter in layout order, ‖g_T^m‖², ‖g_uni^m‖², ‖∇_{θ_m} D‖² [M]);
        the three gradients checked finite (not under a grad scaler, which skips the
        steps of non-finite gradients itself)."""
        tt = sq_norms(g_t, like)  # one entry per parameter, in layout order
        tt_m = [tt[ctx.layout.index[m]].sum() for m in modalities]
        uu_m = group_sums(sq_norms(g_u, like), sizes, like)
        kk = torch.stack(group_sums(sq_norms(g_k, like), sizes, like))
        if ctx.scaler is None:
            grad_sq = torch.stack([tt.sum(), sum(uu_m[1:], uu_m[0]), kk.sum()])
            ctx.check_finite(("gradient g_T", "gradient g_uni", "gradient g_kl"), grad_sq)
        return tt, tt_m, uu_m, kk

    def _conflict(self, t_towers, g_k, scale, sizes, tt, need_kl: bool, like):
        """(<g_T, g_kl>, <g_T⊥, g_kl>, ‖g_T⊥‖², projected, the per-tensor coefficient of
        g_k in the rest of the update): :meth:`_project_` when projecting, else g_T as is."""
        if need_kl and self.project:
            return self._project_(t_towers, g_k, scale, sizes, tt.sum())
        zero = like.new_zeros(())
        dot = (scale * dots(t_towers, g_k, like)).sum() if need_kl else zero
        projected = torch.zeros((), dtype=torch.bool, device=like.device)
        return dot, dot, tt.sum(), projected, self.kl_weight * scale

    def step_stats(
        self,
        model,
        output,
        target,
        ctx,
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
        three), and the head cosine on its steps.

        Args:
            model: The model.
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels.
            ctx: The step's context.
            losses: The step's :class:`Losses`.
            s, c, w: The scores, contributions and weights ``[M]``.
            dot, dot_after: <g_T, g_kl> before and after the projection.
            task_sq, task_sq_after: ‖g_T‖² before and after it.
            kl_sq: ‖g_kl‖².
            conflict: 1 where <g_T, g_kl> < 0, else 0.
            projected: The share of the step's projections that ran.
            kl_norms: ‖g_kl^m‖ per modality.
            uni_sq: ‖∇_{θ_m} L_m‖² per modality.
            task_sq_m: ‖g_T^m‖² per modality.

        Returns:
            The statistics, by name (``STATISTICS``).
        """
        kl_norm = kl_sq.sqrt()
        names = list(losses.unimodal)

        def per_modality(prefix, values):
            return {STATISTICS.key(prefix, m): values[i] for i, m in enumerate(names)}

        stats = {
            **losses.stats(),
            **per_modality("score", s),
            **per_modality("contrib", c),
            **per_modality("weight", w),
            "cos_task_kl": cosine(dot, task_sq.sqrt(), kl_norm),
            "cos_task_kl_projected": cosine(dot_after, task_sq_after.sqrt(), kl_norm),
            "conflict": conflict,
            "projected": projected,
            **per_modality("norm_kl", kl_norms),
            **per_modality("norm_uni", uni_sq.sqrt()),
            **per_modality("norm_task", task_sq_m.sqrt()),
        }
        if self.wants_head_cosine(ctx.step):
            head_cos = self.head_cosine(model, output, target, ctx)
            if head_cos is not None:
                stats["cos_head_unimodal"] = head_cos
        return stats

    def _project_(self, t_towers, g_k, scale, sizes, task_sq):
        """Project the towers' part of g_T (in place) off g_kl = scale ⊙ g_k, globally or
        per tower (``sizes``: each tower's number of tensors); returns (<g_T, g_kl>,
        <g_T⊥, g_kl>, ‖g_T⊥‖², projected, the per-tensor coefficient of g_k in the rest of
        the update)."""
        whole = slice(0, len(t_towers))
        parts = [whole] if self.projection_scope == "global" else consecutive_slices(sizes)
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
        """The base state plus the scores' moving average (``contribution_ema``).

        Returns:
            A dict of plain values.
        """
        state = super().state_dict()
        state["ema"] = None if self._ema is None else self._ema.tolist()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the scores' moving average, with the base state.

        Args:
            state: What :meth:`state_dict` returned.
        """
        super().load_state_dict(state)
        ema = state.get("ema")
        # float64: a float32 round trip would change the restored weights
        self._ema = None if ema is None else torch.tensor(ema, dtype=torch.float64)
