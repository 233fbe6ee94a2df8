"""PMR (Fan, Xu, Wang, Wang & Wang, "PMR: Prototypical Modal Rebalance for Multimodal
Learning", CVPR 2023), as its official code does it: fanyunfeng-bit/Modal-Imbalance-PMR
@3615e48, ``main_Prototype_grad.py`` (``train_epoch``, ``calculate_prototype`` and their
calls in ``main``).

**Prototypes.** Each modality m has one prototype per class c, the mean of its
embeddings h_m (the features the encoder hands to the fusion) over the training samples
of that class:

    P_m[c] = (1 / #S_c) Σ_{i ∈ S_c} h_m(x_i),

computed with the model in eval mode and without gradients over the first
max(1, ⌊N/10⌋) of the N training batches (the official loop breaks once it has taken
``len(dataloader) // 10`` batches, at least one). They are computed before the first
epoch and again at the start of every later one (the official code computes them after
each epoch: the same weights). From the third computation on they are smoothed,

    P ← (1 − μ) P_new + μ P_old        (μ = ``momentum_coef``),

because the official code passes its ``epoch`` argument 0 both before training and after
epoch 0 and smooths only for ``epoch > 0``: computations 1 and 2 are fresh. The
strategy counts its computations to reproduce this.

**The step.** With the prototypes fixed (constants, no gradient), each modality is a
non-parametric classifier, its logits the negative Euclidean distances (not squared; the
official ``--temperature`` is parsed and never used),

    s_m[i, c] = −‖h_m(x_i) − P_m[c]‖₂,

and its batch score is score_m = Σ_i softmax(s_m)_i[y_i]. With ρ = score_1 / score_2
(the official ``ratio_a_p``, audio over visual) the slow modality's prototype
cross-entropy is added, inside the window ``modulation_start ≤ epoch ≤ modulation_end``:

    L = CE(z) + α CE(s_2)   if ρ > 1,
    L = CE(z) + α CE(s_1)   if ρ < 1,
    L = CE(z)               if ρ = 1 or outside the window;

one backward pass and the optimizer step. CE(s_m) reaches only θ_m (the prototypes are
constants), so it speeds up the slow modality's encoder alone.

**M > 2** (the official code is two-modal; the reading of docs/spec.md, as SPEC §6 reads
OGM-GE): ρ_m = score_m / mean_{j≠m} score_j and L = CE(z) + α Σ_{m: ρ_m < 1} CE(s_m).
At M = 2 this is the official switch (ρ_1 < 1 ⟺ ρ_2 > 1); the two-modality case
decides on ρ_1 alone, as the official code, so that no rounding of 1/ρ can differ.

**Where ours differs from the official code** (each only where the official code
crashes or where balgrad's loop has no counterpart; docs/spec.md lists them):

- a class with no sample in the pass: the official code divides by zero (a NaN
  prototype, NaN losses). Ours keeps that class's previous prototype; before it has one,
  the class is left out of the prototype softmax (logit −inf) and samples of that class
  out of the prototype cross-entropy (the mean over the others);
- at distance exactly 0 the official gradient of √· is NaN; ours takes 0 there;
- the pass draws its own sample of the training data (the trainer: a separate seeded
  shuffle), so that the training epoch's data order and RNG are those of every other
  method; the official code iterates its shuffled training loader once more, which
  shifts the training order;
- the official AVE and colored-MNIST runs compute prototypes on the validation split
  (AVE on all of it); here it is always a tenth of the training data;
- distributed: the scores and the prototype sums and counts are summed over ranks.

**``semantics="paper"``** (the CVPR 2023 paper, §4 Eqs. 8–13 and Algorithm 1; the
official repository has none of it: ``bash.sh`` runs a ``main_Proto_PER.py`` that was
never committed, and ``main_Prototype_grad.py`` has no entropy term). With
ρ_t = score_1 / score_2 (Eq. 8, the same ratio) the paper's coefficients are
continuous, not the official switch (Eq. 11):

    ρ_t < 1:  β = clip(0, 1/ρ_t − 1, 1),  γ = 0;
    ρ_t ≥ 1:  β = 0,                      γ = clip(0, ρ_t − 1, 1);

the slow modality's prototype cross-entropy gets α·β (modality 1) or α·γ (modality 2)
(Eq. 10), and in the first E_r epochs the *other* modality, the dominant one, gets the
prototypical entropy regulariser (PER, Eq. 13) subtracted with the same coefficient:

    L = CE(z) + α β CE(s_1) + α γ CE(s_2) − μ γ H(s_1) − μ β H(s_2)   (e < E_r),
    L = CE(z) + α β CE(s_1) + α γ CE(s_2)                             (later),

H(s_m) = mean_i −Σ_c π(s_m)_ic log π(s_m)_ic, the entropy of the prototype softmax
(π = softmax; the paper writes H without its reduction over the batch: the mean, as
its E[·] of the cross-entropy in Eq. 9; BalanceBenchmark's ``PMR_PER`` sums). Raising
the dominant modality's entropy slows its convergence. Options: ``mu`` (μ, 0.01: the
paper's "1e-2 or 1e-3") and ``e_r`` (E_r, 10: the paper gives no number; 10 is
BalanceBenchmark's ``norm_epoch`` default, whose test ``e ≤ start + 10`` spans 11
epochs). The paper's ε of Eq. 12 is ``momentum_coef`` (the μ above). The PCE term keeps the window ``modulation_start
≤ e ≤ modulation_end`` (Algorithm 1 has none: ``modulation_end=None``); PER runs in
its first E_r epochs, ``modulation_start ≤ e < modulation_start + E_r`` (the paper's
e < E_r at the default start 0). The prototypes, the scores and ρ are those above.

**M > 2 under "paper"** (the paper is two-modal): per modality, with the
one-versus-rest ρ_m above, β_m = clip(0, 1/ρ_m − 1, 1) weighs its PCE (α β_m) and
γ_m = clip(0, ρ_m − 1, 1) its PER (μ γ_m): a slow modality is accelerated, a dominant
one regularised, one at ρ_m = 1 neither. At M = 2, ρ_2 = 1/ρ_1 and this is Eqs. 11
and 13 exactly; the two-modality case computes both from ρ_1 = ρ_t alone.

Single-label tasks only: per-class prototypes assume one label per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from itertools import islice
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from balgrad._grad import add_to_grads_
from balgrad.errors import ConfigError, DataError
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import (
    Epoch,
    NonNegative,
    Strategy,
    check_window,
    checked_loss,
    in_window,
)
from balgrad.tasks import task_loss, widen

#: the pass takes the first max(1, N // PASS_DIVISOR) of N batches (the official tenth)
PASS_DIVISOR = 10


# -- the math: pure functions of per-modality tensors ------------------------------------
def class_sums(
    h: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_{i: y_i = c} h_i for each class c [C, d], the class counts [C]).

    Args:
        h: Embeddings ``[B, d]``.
        y: Class indices ``[B]``.
        num_classes: C.

    Returns:
        (sums, counts).
    """
    sums = h.new_zeros(num_classes, h.shape[-1]).index_add_(0, y, h)
    counts = torch.bincount(y, minlength=num_classes).to(h.dtype)
    return sums, counts


def prototypes(
    h: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P [C, d], counts [C]): P[c] the mean of the h_i with y_i = c; a class without a
    sample gets a zero row and count 0 (see :func:`update_prototypes`).

    Args:
        h: Embeddings ``[B, d]``.
        y: Class indices ``[B]``.
        num_classes: C.

    Returns:
        (P, counts).
    """
    sums, counts = class_sums(h, y, num_classes)
    return means(sums, counts), counts


def means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Class sums over counts; 0 where a count is 0.

    Args:
        sums: ``[C, d]``.
        counts: ``[C]``.

    Returns:
        ``[C, d]``.
    """
    return sums / counts.clamp_min(1).unsqueeze(-1)


def update_prototypes(
    new: torch.Tensor,
    counts: torch.Tensor,
    old: torch.Tensor | None,
    known: torch.Tensor | None,
    momentum: float,
    smooth: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, known [C] bool) after a pass: ``(1 − μ) new + μ old`` where ``smooth`` and the
    class had a prototype, ``new`` where it had none or without ``smooth``; a class the
    pass did not see keeps its old prototype (or stays unknown).

    Args:
        new: This pass's prototypes ``[C, d]``.
        counts: This pass's class counts ``[C]``.
        old: The previous prototypes, or None.
        known: Which classes had one, or None.
        momentum: μ.
        smooth: Mix with the old prototypes.

    Returns:
        (P, known).
    """
    seen = counts > 0
    if old is None or known is None:
        return new.clone(), seen.clone()
    mixed = (1 - momentum) * new + momentum * old if smooth else new
    fresh = torch.where(known.unsqueeze(-1), mixed, new)
    return torch.where(seen.unsqueeze(-1), fresh, old), seen | known


def prototype_logits(
    h: torch.Tensor, P: torch.Tensor, known: torch.Tensor | None = None
) -> torch.Tensor:
    """s[i, c] = −‖h_i − P[c]‖₂ [B, C] (the official ``-EU_dist``); −inf for a class
    without a prototype. The gradient at distance 0 is 0 (the official one is NaN).

    Args:
        h: Embeddings ``[B, d]``.
        P: Prototypes ``[C, d]``.
        known: Which classes have a prototype ``[C]``, or None for all.

    Returns:
        s ``[B, C]``.
    """
    sq = (h.unsqueeze(1) - P.unsqueeze(0)).square().sum(-1)
    positive = sq > 0
    dist = torch.where(positive, torch.where(positive, sq, torch.ones_like(sq)).sqrt(), 0.0)
    s = -dist
    if known is not None:
        s = s.masked_fill(~known.unsqueeze(0), float("-inf"))
    return s


def prototype_score(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """score = Σ_i softmax(s)_i[y_i] (a batch sum, as the official ``score_a_p``).

    Args:
        s: Prototype logits ``[B, C]``.
        y: Class indices ``[B]``.

    Returns:
        The score, 0-d.
    """
    return F.softmax(s, dim=-1).gather(-1, y.view(-1, 1)).sum()


def prototype_loss(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE(s, y), the mean over the samples whose class has a prototype (all of them
    once every class was seen; 0 when none has).

    Args:
        s: Prototype logits ``[B, C]``.
        y: Class indices ``[B]``.

    Returns:
        The loss, 0-d.
    """
    usable = torch.isfinite(s.gather(-1, y.view(-1, 1)).squeeze(-1))
    ce = F.cross_entropy(s, torch.where(usable, y, 0), reduction="none")
    ce = torch.where(usable, ce, 0.0)
    return ce.sum() / usable.sum().clamp_min(1)


def pmr_ratios(scores: torch.Tensor) -> torch.Tensor:
    """ρ_m = score_m / mean_{j≠m} score_j (M = 2: score_1 / score_2 and its inverse).
    A zero rest with a positive score is +inf; all zero counts as balanced (ρ = 1).

    Args:
        scores: ``[M]``.

    Returns:
        ρ ``[M]``.
    """
    rest = (scores.sum() - scores) / (scores.numel() - 1)
    inf = torch.full_like(scores, float("inf"))
    return torch.where(
        rest > 0, scores / rest, torch.where(scores > 0, inf, torch.ones_like(scores))
    )


def pmr_coefficients(scores: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(ρ [M], β [M]): β_m = α for each slow modality (ρ_m < 1), else 0; the loss is
    CE(z) + Σ_m β_m CE(s_m). M = 2 decides on ρ_1 = score_1 / score_2 alone (the official
    ``ratio_a_p``): β_2 = α if ρ_1 > 1, β_1 = α if ρ_1 < 1, none at ρ_1 = 1.

    Args:
        scores: The scores ``[M]``.
        alpha: α.

    Returns:
        (ρ, β).
    """
    rho = pmr_ratios(scores)
    zero, a = torch.zeros_like(rho), torch.full_like(rho, float(alpha))
    if scores.numel() == 2:
        slow = torch.stack([rho[0] < 1, rho[0] > 1])
    else:
        slow = rho < 1
    return rho, torch.where(slow, a, zero)


def prototype_entropy(s: torch.Tensor) -> torch.Tensor:
    """H(s) = mean_i −Σ_c π(s)_ic log π(s)_ic, π = softmax over the classes: the
    paper's H(π(−d(z, c))) (Eq. 13). A class without a prototype (logit −inf) has
    π = 0 and adds 0 (0 log 0 = 0), its gradient 0, not NaN.

    Args:
        s: Prototype logits ``[B, C]``.

    Returns:
        H, 0-d.
    """
    p = F.softmax(s, dim=-1)
    log_p = torch.where(p > 0, F.log_softmax(s, dim=-1), 0.0)  # no −inf in the product
    return -(p * log_p).sum(-1).mean()


def paper_coefficients(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ρ [M], β [M], γ [M]) of the paper's Eq. 11, per modality: β_m = clip(0, 1/ρ_m − 1,
    1) where ρ_m < 1 (the PCE weight of a slow modality, before α), γ_m = clip(0, ρ_m − 1,
    1) where ρ_m > 1 (the PER weight of a dominant one, before μ), 0 otherwise. M = 2
    reads both from ρ_1 = ρ_t (ρ_2 = 1/ρ_t): β_1 = γ_2 = clip(0, 1/ρ_t − 1, 1) if
    ρ_t < 1, γ_1 = β_2 = clip(0, ρ_t − 1, 1) if ρ_t ≥ 1, as Eq. 11 writes them.

    Args:
        scores: The scores ``[M]``.

    Returns:
        (ρ, β, γ).
    """
    rho = pmr_ratios(scores)
    zero = torch.zeros_like(rho)
    if scores.numel() == 2:  # Eq. 11 as written, on ρ_t alone
        r = rho[0]
        b = torch.where(r < 1, (1 / r - 1).clamp(0, 1), zero[0])
        g = torch.where(r >= 1, (r - 1).clamp(0, 1), zero[0])
        return rho, torch.stack([b, g]), torch.stack([g, b])
    slow = torch.where(rho < 1, (1 / rho - 1).clamp(0, 1), zero)
    dominant = torch.where(rho > 1, (rho - 1).clamp(0, 1), zero)
    return rho, slow, dominant


def pmr_paper_loss(
    loss_task: torch.Tensor,
    pce: torch.Tensor,
    entropy: torch.Tensor,
    scores: torch.Tensor,
    alpha: float,
    mu: float,
    *,
    accelerate: bool = True,
    regularize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's loss (Eqs. 10, 11 and 13) and (ρ, α·β, μ·γ) [M] each:

        L = CE(z) + α Σ_m β_m PCE_m − μ Σ_m γ_m H_m

    with ``pce`` [M] the prototype cross-entropies CE(s_m), ``entropy`` [M] the
    H(s_m), ``scores`` [M] the batch sums of the true class's prototype probability and
    β, γ of :func:`paper_coefficients`. ``accelerate`` (the PCE window) and
    ``regularize`` (the first E_r epochs) leave a term out (its weights reported 0).
    At M = 2 this is Eq. 13: γ weighs modality 2's PCE and modality 1's entropy, β the
    reverse.

    Args:
        loss_task: CE(z).
        pce: CE(s_m) ``[M]``.
        entropy: H(s_m) ``[M]``.
        scores: ``[M]``.
        alpha: α.
        mu: μ.
        accelerate: Keep the PCE term.
        regularize: Keep the entropy term.

    Returns:
        (L, ρ, α·β, μ·γ).
    """
    rho, beta, gamma = paper_coefficients(scores)
    w_pce = alpha * beta if accelerate else torch.zeros_like(beta)
    w_per = mu * gamma if regularize else torch.zeros_like(gamma)
    dt = loss_task.dtype
    loss = loss_task + (w_pce.to(dt) * pce).sum() - (w_per.to(dt) * entropy).sum()
    return loss, rho, w_pce, w_per


def first_tenth(batches: Iterable) -> Iterable:
    """The batches the official pass takes: the first max(1, N // 10) of N, or all of
    them when ``batches`` has no length (a generator, or a loader over an iterable
    dataset: it is taken whole).

    Args:
        batches: The batches.

    Returns:
        The batches taken.
    """
    try:
        n = len(batches) if isinstance(batches, Sized) else None
    except TypeError:  # a loader over an iterable dataset without a length
        n = None
    return batches if n is None else islice(batches, max(1, n // PASS_DIVISOR))


# -- the strategy -------------------------------------------------------------------------
class PMR(Strategy):
    """See the module docstring. Options (the official argparse names and defaults):

    Args:
        alpha: α, the weight of the slow modality's prototype cross-entropy (1.0; the
            official CREMA-D and AVE scripts mostly use 2.0).
        momentum_coef: μ of the prototypes' moving average (0.2; every official script
            passes 0.0).
        modulation_start, modulation_end: the epochs (inclusive) that add the prototype
            term (0 and 100; ``None``: to the end).
        semantics: ``"official"`` (the official switch, α on the slow modality's PCE) or
            ``"paper"`` (Eqs. 10–13: α·β, α·γ and the entropy regulariser; see the
            module docstring).
        mu: μ, the weight of the paper's entropy regulariser (0.01; the paper: 1e-2 or
            1e-3); read under ``"paper"``.
        e_r: E_r, the paper's regularisation epoch number: the regulariser runs in the
            first E_r epochs of the window (10; the paper gives none, 10 is
            BalanceBenchmark's); read under ``"paper"``.
    """

    name = "pmr"
    statistics = statistics(
        "PMR",
        ["loss_task", "modulated", "regularized"],
        ["loss", "score", "loss_proto", "ratio", "coef", "entropy", "reg_coef"],
    )
    needs_epoch_pass = True
    full_precision_compute = True

    @validated
    def __init__(
        self,
        *,
        alpha: NonNegative = 1.0,
        momentum_coef: Annotated[float, Field(ge=0, le=1)] = 0.2,
        modulation_start: Epoch = 0,
        modulation_end: int | None = 100,
        semantics: Literal["official", "paper"] = "official",
        mu: NonNegative = 0.01,
        e_r: Epoch = 10,
    ):
        super().__init__()
        check_window(modulation_start, modulation_end)
        self.alpha = float(alpha)
        self.momentum_coef = float(momentum_coef)
        self.modulation_start = int(modulation_start)
        self.modulation_end = modulation_end
        self.semantics = semantics
        self.mu = float(mu)
        self.e_r = int(e_r)
        self.prototypes: dict[str, torch.Tensor] = {}  # modality -> P_m [C, d]
        self.known: torch.Tensor | None = None  # [C] bool: the classes with a prototype
        self.computations = 0  # how many passes ran (the EMA starts with the third)

    def active(self) -> bool:
        """Whether this epoch is in the rebalancing window.

        Returns:
            True between ``modulation_start`` and ``modulation_end``, inclusive.
        """
        end = float("inf") if self.modulation_end is None else self.modulation_end
        return in_window(self.epoch, self.modulation_start, end)

    def regularizing(self) -> bool:
        """The paper's PER epochs: the first E_r of the window (e < E_r from epoch 0).

        Returns:
            True during those epochs.
        """
        return self.active() and self.epoch < self.modulation_start + self.e_r

    @staticmethod
    def _check_task(model) -> None:
        if model.task != "single_label":
            raise ConfigError(
                f"pmr: task {model.task!r} is not supported; PMR's class prototypes "
                "assume one label per sample (a single-label task)"
            )

    # -- the epoch-start pass -----------------------------------------------------------
    def epoch_pass(self, model, batches) -> dict[str, torch.Tensor]:
        """The epoch-start pass: each modality's class prototypes from the first tenth of the
        batches (:func:`first_tenth`), merged into the old ones (:func:`update_prototypes`).

        Args:
            model: The model.
            batches: Training batches.

        Returns:
            The pass's diagnostics.
        """
        self._check_task(model)
        modalities = self.modalities(model)
        sums: dict[str, torch.Tensor] = {}
        counts = None
        for inputs, target in first_tenth(batches):
            out = model(inputs)
            y = target.long()
            num_classes = out.logits.shape[-1]
            if y.dim() != 1 or (y.numel() and not bool(((y >= 0) & (y < num_classes)).all())):
                raise DataError(
                    f"pmr: the prototype pass needs class indices in [0, {num_classes}) of "
                    f"shape [B]; got a target of shape {list(y.shape)} with values outside"
                    if y.dim() == 1
                    else f"pmr: the prototype pass needs class indices of shape [B], got "
                    f"{list(y.shape)}"
                )
            for m in modalities:
                h = widen(out.embeddings[m].detach())
                s, n = class_sums(h, y, num_classes)
                sums[m] = s if m not in sums else sums[m] + s.to(sums[m].dtype)
            counts = n if counts is None else counts + n.to(counts.dtype)  # once per batch
        if counts is None:
            raise ConfigError("pmr: prepare_epoch got no batches to compute prototypes from")
        # one all-reduce for every modality's sums and the counts
        flat = self.sync.sum(torch.cat([*(sums[m].flatten() for m in modalities), counts]))
        counts = flat[-counts.numel() :]
        smooth = self.computations >= 2  # the official epoch argument is > 0 from the third
        known = None
        for i, m in enumerate(modalities):
            size = sums[m].numel()
            new = means(flat[i * size : (i + 1) * size].view_as(sums[m]), counts)
            old = self.prototypes.get(m)
            if old is not None and old.shape != new.shape:
                raise ConfigError(
                    f"pmr: the prototypes of {m!r} were {list(old.shape)} and are now "
                    f"{list(new.shape)}: the model's classes or embedding size changed"
                )
            P, known = update_prototypes(new, counts, old, self.known, self.momentum_coef, smooth)
            self.prototypes[m] = P
        self.known = known
        self.computations += 1
        return {"classes_seen": counts.gt(0).sum().to(torch.float64)}

    # -- the step -----------------------------------------------------------------------
    def compute(self, model, output, target, ctx):
        """One step: L_T plus the prototype terms (PCE on slow modalities; the paper's entropy
        term on dominant ones), one backward pass.
        """
        self._check_task(model)
        modalities = self.modalities(model)
        loss_task = checked_loss("task loss L_T", task_loss(output.logits, target, model.task))
        s = {}
        for m in modalities:
            h = widen(output.embeddings[m])
            P = self.prototypes[m].to(device=h.device, dtype=h.dtype)
            s[m] = prototype_logits(h, P, self.known.to(h.device))
        with torch.no_grad():
            scores = ctx.sync.sum(torch.stack([prototype_score(s[m], target) for m in modalities]))
        proto_losses = {m: prototype_loss(s[m], target) for m in modalities}
        active = self.active()
        extra: dict[str, torch.Tensor] = {}
        if self.semantics == "paper":
            loss, rho, beta, extra = self._paper_loss(loss_task, proto_losses, s, scores, active)
        else:
            rho, beta = pmr_coefficients(scores, self.alpha)
            loss = loss_task
            if active:
                for i, m in enumerate(modalities):
                    loss = loss + beta[i].to(loss.dtype) * proto_losses[m]
        params = ctx.layout.params
        grads = ctx.loss_grads(loss, params)
        add_to_grads_(params, grads)
        ctx.check_finite(("the PMR loss",), loss.detach().reshape(1))
        shown = rho[:1] if len(modalities) == 2 else rho
        return {
            "loss_task": loss_task.detach(),
            **self.unimodal_monitor(model, output, target),
            **{stat_name("loss_proto", m): proto_losses[m].detach() for m in modalities},
            **{
                stat_name("ratio", m): shown[i].clamp_max(1e6)
                for i, m in enumerate(modalities[: shown.numel()])
            },
            **{stat_name("coef", m): beta[i] for i, m in enumerate(modalities)},
            "modulated": torch.full((), float(active), device=beta.device),
            **extra,
        }

    def _paper_loss(self, loss_task, proto_losses, s, scores, active: bool):
        """(loss, ρ, β, the entropy and regularisation statistics) of the paper's
        objective (:func:`pmr_paper_loss`): the prototype losses with the acceleration
        coefficients β when ``active``, and the entropy regulariser in its epochs."""
        modalities = list(proto_losses)
        regularized = self.regularizing()
        entropy = {m: prototype_entropy(s[m]) for m in modalities}
        loss, rho, beta, gamma = pmr_paper_loss(
            loss_task,
            torch.stack([proto_losses[m] for m in modalities]),
            torch.stack([entropy[m] for m in modalities]),
            scores,
            self.alpha,
            self.mu,
            accelerate=active,
            regularize=regularized,
        )
        extra = {
            **{stat_name("entropy", m): entropy[m].detach() for m in modalities},
            **{stat_name("reg_coef", m): gamma[i] for i, m in enumerate(modalities)},
            "regularized": torch.full((), float(regularized), device=gamma.device),
        }
        return loss, rho, beta, extra

    # -- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The base state plus the prototypes and which classes have one.

        Returns:
            A dict of plain values and tensors.
        """
        state = {**super().state_dict(), "computations": self.computations}
        if self.known is not None:
            state["prototypes"] = {m: P.detach().cpu() for m, P in self.prototypes.items()}
            state["known"] = self.known.detach().cpu()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the prototypes.

        Args:
            state: What :meth:`state_dict` returned.
        """
        super().load_state_dict(state)
        self.computations = int(state.get("computations", 0))
        self.prototypes = {m: P.clone() for m, P in dict(state.get("prototypes", {})).items()}
        known = state.get("known")
        self.known = None if known is None else known.clone().bool()
