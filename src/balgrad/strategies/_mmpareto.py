"""MMPareto (Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal
Assistance", ICML 2024, arXiv 2405.17730).

Official code: github.com/GeWu-Lab/MMPareto_ICML2024 @ a339db3:
``code/MMPareto.py::train_epoch`` (lines 57-213) and
``code/min_norm_solvers.py::MinNormSolver``.

With the multimodal loss L_T = ℓ(z, y) and the unimodal losses L_m = ℓ(z_m, y), encoder
m receives two gradients, g_T^m = ∇_{θ_m} L_T and g_u^m = ∇_{θ_m} L_m (no other loss
reaches θ_m). Per encoder::

    cos β_m = <g_T^m, g_u^m> / (‖g_T^m‖ ‖g_u^m‖)
    (k_1, k_2) = (1/2, 1/2)                                 if cos β_m > 0
               = argmin_{c ∈ [0,1]} ‖c g_T^m + (1 − c) g_u^m‖²   otherwise (MinNorm)
    h^m = 2 (k_1 g_T^m + k_2 g_u^m)

MinNorm for two vectors has the closed form c = (v22 − v12) / (v11 + v22 − 2 v12) with
v11 = ‖g_T‖², v12 = <g_T, g_u>, v22 = ‖g_u‖², at the end points when <g_T, g_u> ≥ ‖g_T‖²
(c = 1) or ≥ ‖g_u‖² (c = 0). The magnitude is then restored to that of the plain sum
s^m = g_T^m + g_u^m and enlarged by γ::

    g^m = γ · max(1, ‖s^m‖ / ‖h^m‖) · h^m

The fusion head and any separate unimodal heads keep the summed gradient (∇L_T on θ_T,
∇L_m on modality m's head).

``semantics`` (each difference a switch; the default is ``"official"``, so that a table
row labelled MMPareto is the released method):

- ``"official"``: the magnitude rule is applied to every parameter TENSOR of the encoder
  separately (``MMPareto.py:175-195``), with ‖s‖ and ‖h‖ that tensor's norms; MinNorm's
  end points are ``_min_norm_element_from2``'s 0.999 / 0.001, not 1 / 0.
- ``"paper"``: the magnitude rule on the whole encoder gradient, the same vector whose
  cosine and MinNorm weights are computed, so h^m keeps the MinNorm direction the paper
  argues for (a per-tensor factor changes it); exact end points. At encoder scope
  ‖2 u‖ ≤ ‖s‖ for the min-norm point u of the segment, so the max(1, ·) never binds.
  The paper's Algorithm 1 could not be read here (only its abstract): this is our
  reading of "a direction common to all objectives and enhanced magnitude", not a
  verified transcription.

γ = 1.5 is hard-coded in the official code (``gamma=1.5``, line 178); it is an option
under both semantics. The official ``"concat"`` entry of each gradient dict makes every
inner product in MinNorm count twice; the weights for two vectors are scale-invariant, so
this changes nothing and is not reproduced. Where ‖h‖ = 0 on a tensor with ‖s‖ > 0 the
official code would write NaN (0 · inf); here the factor is 1 (the tensor gets 0). The
official loop builds a StepLR(30, 0.1) and never steps it (constant learning rate): a
training-loop setting, not the strategy's.

M > 2: M + 1 losses (L_T and one L_m per modality); the rule above per encoder, each
over its own two vectors (L_j, j ≠ m, does not reach θ_m). Backward passes: two for any
M (L_T; Σ_m L_m, since each L_m reaches only its own tower), where the official code
takes M + 2 (one per loss, then their sum, which is g_T + g_u on each encoder and is
formed here by addition).
"""

from __future__ import annotations

from typing import Literal

import torch

from balgrad._grad import add_to_grads_, cosine, dots, grads_of, group_sums, sq_norms
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import Positive, Strategy
from balgrad.tasks import task_loss, true_class_prob

#: ``gamma=1.5`` in the official ``MMPareto.py``
OFFICIAL_GAMMA = 1.5
#: ``MinNormSolver._min_norm_element_from2``'s end points instead of 1 and 0
OFFICIAL_END_POINTS = (0.999, 0.001)


# -- the method's arithmetic (elementwise over the M encoders) ---------------------------
def min_norm_weights(
    v11: torch.Tensor, v12: torch.Tensor, v22: torch.Tensor, *, official: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, 1 − c) minimising ‖c g_1 + (1 − c) g_2‖² over c ∈ [0, 1], from the Gram entries
    v11 = ‖g_1‖², v12 = <g_1, g_2>, v22 = ‖g_2‖² (tensors of any shape, elementwise).
    ``official``: the end points are 0.999 / 0.001, as ``_min_norm_element_from2``.

    Args:
        v11: ‖g_1‖².
        v12: <g_1, g_2>.
        v22: ‖g_2‖².
        official: Use the official end points.

    Returns:
        (c, 1 − c), shaped as the inputs.
    """
    one, zero = OFFICIAL_END_POINTS if official else (1.0, 0.0)
    den = v11 + v22 - 2 * v12
    interior = (v22 - v12) / torch.where(den > 0, den, torch.ones_like(den))
    c = torch.where(v12 >= v11, one, torch.where(v12 >= v22, zero, interior))
    return c, 1 - c


def mmpareto_weights(
    dot: torch.Tensor, sq_task: torch.Tensor, sq_uni: torch.Tensor, *, official: bool = True
) -> torch.Tensor:
    """[M, 2] weights (k_1 of g_T, k_2 of g_u) per encoder: 1/2 each where the two
    gradients agree (cos > 0, i.e. <g_T, g_u> > 0), MinNorm's otherwise.

    Args:
        dot: <g_T, g_u> per encoder.
        sq_task: ‖g_T‖² per encoder.
        sq_uni: ‖g_u‖² per encoder.
        official: Use the official MinNorm end points.

    Returns:
        ``[M, 2]``.
    """
    c, rest = min_norm_weights(sq_task, dot, sq_uni, official=official)
    agree = dot > 0
    half = torch.full_like(c, 0.5)
    return torch.stack([torch.where(agree, half, c), torch.where(agree, half, rest)], dim=-1)


def magnitude_factors(
    sq_sum: torch.Tensor, sq_new: torch.Tensor, gamma: float, *, only_up: bool = True
) -> torch.Tensor:
    """γ · ‖s‖ / ‖h‖ (γ · max(1, ‖s‖ / ‖h‖) with ``only_up``), elementwise over the units
    rescaled (tensors or encoders); γ where ‖h‖ = 0.

    Args:
        sq_sum: ‖s‖² of the plain sum g_T + g_u, per unit.
        sq_new: ‖h‖² of the merged gradient, per unit.
        gamma: γ.
        only_up: Never shrink (the official rule).

    Returns:
        The factors, shaped as ``sq_sum``.
    """
    ok = sq_new > 0
    ratio = torch.where(ok, (sq_sum / torch.where(ok, sq_new, 1.0)).sqrt(), 1.0)
    return gamma * (ratio.clamp(min=1.0) if only_up else ratio)


def mmpareto_merge_(
    g_task: list[torch.Tensor],
    g_uni: list[torch.Tensor],
    k: torch.Tensor,
    sizes: list[int],
    gamma: float,
    *,
    per_tensor: bool = True,
) -> None:
    """g_T ← γ · max(1, ‖g_T + g_u‖ / ‖h‖) · h with h = 2 (k_1 g_T + k_2 g_u), in place on
    ``g_task``. The lists hold the towers' tensors, encoder after encoder (``sizes[i]``
    tensors for encoder i, whose weights are ``k[i]``); ``per_tensor`` takes the norms
    of every tensor apart (the official rule), else of each encoder's whole gradient.

    Args:
        g_task: g_T per tensor (merged into in place).
        g_uni: g_u per tensor.
        k: The weights ``[encoders, 2]`` of :func:`mmpareto_weights`.
        sizes: The number of tensors of each encoder.
        gamma: γ.
        per_tensor: Rescale each tensor apart (the official rule).
    """
    like = k
    summed = torch._foreach_add(g_task, g_uni)  # the official 4th backward's gradient
    weights = [k[i] for i, n in enumerate(sizes) for _ in range(n)]
    for g_t, g_u, w in zip(g_task, g_uni, weights):
        g_t.mul_(2 * w[0]).add_(g_u * (2 * w[1]))
    sq_s, sq_h = sq_norms(summed, like), sq_norms(g_task, like)
    if per_tensor:
        factors = magnitude_factors(sq_s, sq_h, gamma, only_up=True)
    else:
        s_m = torch.stack(group_sums(sq_s, sizes, like))
        h_m = torch.stack(group_sums(sq_h, sizes, like))
        scale_m = magnitude_factors(s_m, h_m, gamma, only_up=False)
        factors = torch.cat([scale_m[i].expand(n) for i, n in enumerate(sizes)])
    for g_t, f in zip(g_task, factors.unbind()):
        g_t.mul_(f)


class MMPareto(Strategy):
    """See the module docstring.

    Args:
        gamma: γ, the magnitude enlargement (1.5, hard-coded in the official code).
        semantics: ``"official"`` (per-tensor magnitude rule, MinNorm end points
            0.999/0.001) or ``"paper"`` (per-encoder magnitude rule, exact end points).
    """

    name = "mmpareto"
    statistics = statistics(
        "MMPareto", ["loss_task"], ["loss", "score", "cos", "weight_task", "weight_uni", "pareto"]
    )
    full_precision_compute = True
    #: separate gradients of L_T and Σ L_m: the strategy averages over ranks itself
    supports_ddp = False

    @validated
    def __init__(
        self,
        *,
        gamma: Positive = OFFICIAL_GAMMA,
        semantics: Literal["official", "paper"] = "official",
    ):
        super().__init__()
        self.gamma = float(gamma)
        self.semantics = semantics

    def compute(self, model, output, target, ctx):
        """One step: g_T and g_u = ∇ Σ_m L_m per encoder, their MinNorm (or equal) weights,
        the merged and rescaled encoder gradients (:func:`mmpareto_merge_`); the head takes
        g_T.
        """
        task, layout = model.task, ctx.layout
        modalities = self.modalities(model)
        loss_t = task_loss(output.logits, target, task)
        uni = [task_loss(output.unimodal[m], target, task) for m in modalities]
        names = ("task loss L_T", *(f"{m} loss L_{m}" for m in modalities))
        ctx.check_finite(names, torch.stack([loss_t.detach(), *(u.detach() for u in uni)]))

        sizes = [len(layout.groups[m]) for m in modalities]
        towers = [p for m in modalities for p in layout.groups[m]]
        heads_u = layout.groups.get("unimodal_heads", [])
        params = layout.params
        g_t = grads_of(ctx.scaled(loss_t), params, retain_graph=True)
        g_u = grads_of(ctx.scaled(sum(uni[1:], uni[0])), towers + heads_u, retain_graph=False)
        if ctx.sync.world_size > 1:  # before any cosine, weight or norm
            ctx.sync.mean_(g_t + g_u)
        ctx.check_gradients_finite("gradient", g_t + g_u)

        at = {id(p): i for i, p in enumerate(params)}
        a = [g_t[at[id(p)]] for p in towers]  # g_T on the towers (updated in place)
        b = g_u[: len(towers)]
        like = loss_t.detach()
        dot = torch.stack(group_sums(dots(a, b, like), sizes, like))
        sq_a = torch.stack(group_sums(sq_norms(a, like), sizes, like))
        sq_b = torch.stack(group_sums(sq_norms(b, like), sizes, like))
        official = self.semantics == "official"
        k = mmpareto_weights(dot, sq_a, sq_b, official=official)

        mmpareto_merge_(a, b, k, sizes, self.gamma, per_tensor=official)

        for p, g in zip(heads_u, g_u[len(towers) :]):  # unimodal heads: ∇L_m
            g_t[at[id(p)]].add_(g)
        add_to_grads_(params, g_t)

        stats = {"loss_task": like}
        with torch.no_grad():
            for i, m in enumerate(modalities):
                stats[stat_name("loss", m)] = uni[i].detach()
                prob = true_class_prob(output.unimodal[m], target, task)
                stats[stat_name("score", m)] = prob.mean()
                stats[stat_name("cos", m)] = cosine(dot[i], sq_a[i].sqrt(), sq_b[i].sqrt())
                stats[stat_name("weight_task", m)] = k[i, 0]
                stats[stat_name("weight_uni", m)] = k[i, 1]
                stats[stat_name("pareto", m)] = (dot[i] <= 0).to(like.dtype)
        return stats
