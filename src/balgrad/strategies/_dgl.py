"""DGL: Disentangled Gradient Learning (Wei et al., "Boosting Multimodal Learning
via Disentangled Gradient Learning", ICCV 2025, arXiv 2507.10213).

Official code: github.com/shicaiwei123/ICCV2025-GDL @ b72a55f: ``main_dgl.py::train_epoch``
(lines 108-128) and ``models/fusion_modules.py::ConcatFusion_DGL``.

The encoders and the fusion module are trained by different losses. With h_m = φ_m(x_m),
the fused logits z = f_T(h_1, .., h_M) and the unimodal logits through the SAME head with
every other embedding zeroed, z_m = f_T(0, .., h_m, .., 0):

    L_T = ℓ(f_T(sg[h_1], .., sg[h_M]), y)          multimodal loss on detached features
    L_m = ℓ(f_T(0, .., h_m, .., 0), y)             unimodal loss of modality m

    ∇_{θ_m} ← α ∇_{θ_m} L_m      (unimodal gradient truncation: L_T never reaches φ_m)
    ∇_{θ_T} ← ∇_{θ_T} L_T        (multimodal gradient truncation: no L_m reaches f_T)

The official code gets this with ``cat(x, y).detach()`` inside the fusion module, one
backward of α(L_a + L_v) (``retain_graph``), the fusion module's gradients set to None,
then ``L_T.backward()``. balgrad's unimodal logits already run the head with its
parameters detached, and ∇_{θ_T} ℓ(f_T(h)) = ∇_{θ_T} ℓ(f_T(sg[h])) (the head's gradient
does not depend on whether its input is detached), so the step is:

- one backward of α Σ_m L_m into the towers (and separate unimodal heads, if the model
  has them: each trained by α ∇L_m, the only loss that reaches it);
- one backward of L_T into θ_T alone (autograd stops at the embeddings: a pass through
  the head only).

The towers are traversed once, for any M: 1F / 1B through the encoders, plus a backward
through the head. M > 2 is the same rule (the official code is two-modal).

``semantics``:

- ``"official"`` (default): as ``main_dgl.py``, which then calls
  ``nn.utils.clip_grad_norm_(model.parameters(), max_norm=40)``: the step's whole
  gradient is rescaled to norm at most ``max_grad_norm`` (40), with torch's rule
  c = min(1, max_norm / (‖g‖ + 1e-6)).
- ``"paper"``: the two truncations and the unimodal regularisation the paper and the
  repository's README name as DGL's key points, without the clipping.

α: ``--alpha`` (argparse default 4.0; ``cramed_dgl.sh`` runs 4 and 5, ``ks_dgl.sh`` 2
and 3). The official loop's MultiStepLR([70], 0.1) and SGD(momentum 0.9, wd 1e-4) are the
training loop's settings, not the strategy's.

Under data-parallel training the two gradients are averaged over ranks before the
clipping norm is taken, so every rank applies the same update; a model wrapped in
DistributedDataParallel is refused (two backward calls), as for BalGrad.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from balgrad._grad import add_to_grads_, grads_of, sq_norms
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import NonNegative, Positive, Strategy
from balgrad.tasks import task_loss, true_class_prob

#: ``nn.utils.clip_grad_norm_(..., max_norm=40)`` in the official ``main_dgl.py``
OFFICIAL_MAX_GRAD_NORM = 40.0
#: torch's ``clip_grad_norm_`` adds this to the total norm
CLIP_EPS = 1e-6


# -- the method's arithmetic ---------------------------------------------------------------
def dgl_encoder_loss(unimodal_losses: Sequence[torch.Tensor], alpha: float) -> torch.Tensor:
    """α Σ_m L_m: the only loss whose gradient reaches the encoders.

    Args:
        unimodal_losses: L_m per modality.
        alpha: α.

    Returns:
        The loss, 0-d.
    """
    first, *rest = unimodal_losses
    return alpha * sum(rest, first)


def clip_coefficient(
    total_norm: torch.Tensor, max_norm: float, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """min(1, max_norm / (‖g‖ + 1e-6)), torch's ``clip_grad_norm_`` rule. ``scale`` (a
    GradScaler's) multiplies the threshold and the 1e-6, so the clipped scaled gradient is
    exactly ``scale`` times the clipped unscaled one.

    Args:
        total_norm: ‖g‖, 0-d.
        max_norm: The clip's max norm.
        scale: The GradScaler's scale, if the gradient is scaled.

    Returns:
        The coefficient, 0-d.
    """
    limit = torch.as_tensor(max_norm, dtype=total_norm.dtype, device=total_norm.device)
    eps = torch.as_tensor(CLIP_EPS, dtype=total_norm.dtype, device=total_norm.device)
    if scale is not None:
        limit, eps = limit * scale.to(limit.dtype), eps * scale.to(limit.dtype)
    return (limit / (total_norm + eps)).clamp(max=1.0)


class DGL(Strategy):
    """See the module docstring.

    Args:
        alpha: α, the weight of the unimodal losses (official default 4.0).
        semantics: ``"official"`` (clip the step's gradient norm at ``max_grad_norm``,
            as ``main_dgl.py``) or ``"paper"`` (no clipping).
        max_grad_norm: the official clipping threshold (40); read under ``"official"``.
    """

    name = "dgl"
    statistics = statistics("DGL", ["loss_task", "grad_norm", "clip_coef"], ["loss", "score"])
    full_precision_compute = True
    #: two separate backward calls (L_T into the head, Σ L_m into the towers): the
    #: strategy averages over ranks itself, so the model must not be DDP-wrapped
    supports_ddp = False

    @validated
    def __init__(
        self,
        *,
        alpha: NonNegative = 4.0,
        semantics: Literal["official", "paper"] = "official",
        max_grad_norm: Positive = OFFICIAL_MAX_GRAD_NORM,
    ):
        super().__init__()
        self.alpha = float(alpha)
        self.semantics = semantics
        self.max_grad_norm = float(max_grad_norm)

    def compute(self, model, output, target, ctx):
        """One step: L_T's gradient to the head only, α Σ_m L_m's to the encoders (and
        unimodal heads), each clipped as the official code clips it.
        """
        task = model.task
        layout = ctx.layout
        modalities = self.modalities(model)
        loss_t = task_loss(output.logits, target, task)
        uni = [task_loss(output.unimodal[m], target, task) for m in modalities]
        names = ("task loss L_T", *(f"{m} loss L_{m}" for m in modalities))
        ctx.check_finite(names, torch.stack([loss_t.detach(), *(u.detach() for u in uni)]))

        towers = [p for m in modalities for p in layout.groups[m]]
        towers += layout.groups.get("unimodal_heads", [])
        head = layout.groups.get("head", [])
        g_towers = grads_of(
            ctx.scaled(dgl_encoder_loss(uni, self.alpha)), towers, retain_graph=False
        )
        g_head = grads_of(ctx.scaled(loss_t), head, retain_graph=False)
        grads = g_towers + g_head
        if ctx.sync.world_size > 1:
            ctx.sync.mean_(grads)
        ctx.check_gradients_finite("gradient", grads)
        norm = sq_norms(grads, loss_t).sum().sqrt()
        scale = ctx.loss_scale(loss_t)
        stats = {"grad_norm": norm if scale is None else norm / scale}  # of the unscaled step
        if self.semantics == "official":
            coef = clip_coefficient(norm, self.max_grad_norm, scale)
            torch._foreach_mul_(grads, coef.to(grads[0].dtype))
            stats["clip_coef"] = coef
        add_to_grads_(towers + head, grads)
        with torch.no_grad():
            for m, loss in zip(modalities, uni):
                stats[stat_name("loss", m)] = loss.detach()
                prob = true_class_prob(output.unimodal[m], target, task)
                stats[stat_name("score", m)] = prob.mean()
        return {"loss_task": loss_t.detach(), **stats}
