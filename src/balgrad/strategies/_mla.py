"""MLA: Multimodal Learning with Alternating unimodal adaptation (Zhang, Latham & Yao,
"Multimodal Representation Learning by Alternating Unimodal Adaptation", CVPR 2024).

Official code: github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation
@ ab6c184: ``main.py::train_epoch``, its ``elif gs_flag:`` branch (lines 419-470);
``utils/utils.py::GSPlugin.before_update`` (12-41); ``main.py::calculate_entropy`` and
``calculate_gating_weights(3)`` (65-106) with the ``valid`` gs branch (622-660).

**The step: M optimizer steps per batch.** One forward of every tower gives h_1..h_M. The
head f_T is shared: modality m's logits are z_m = f_T(F(0, .., h_m, .., 0)), which with
``fusion="sum"`` and a linear classifier is exactly the official ``fc_out(h_m)`` (one
``Linear(d, C)`` for every modality). Then, for m = 1..M in the model's order,

    L_m = ℓ(z_m, y)  with z_m computed by the head AS UPDATED by steps 1..m−1,
    ∇_{θ_m, θ_T} ← ∇ L_m,   [gradient projection on the head, see below],
    optimizer.step()

so modality m's encoder is trained by its own loss only and the head by every modality in
turn. With another fusion the alternation is the same (concat: each modality trains its
own columns of the head and the shared bias). M > 2: the official code runs a, v (and t
with ``--modal3``) in this order; any M alternates the same way, in the model's order.

**Gradient projection (``semantics``).** GSPlugin is meant to keep the head from
forgetting earlier modalities (orthogonal weight modification, OWM): with r the batch
mean of the head's input and a projector P (d × d, P₀ = I),

    P ← P − (P r)(P r)ᵀ / (α + rᵀ P r),        ∇_W ← ∇_W Pᵀ      (W: the head's weight)

- ``"official"`` (default): no projection. ``before_update`` iterates
  ``fc_out.named_parameters()`` and tests ``n == "module.weight"``; an ``nn.Linear``
  yields ``"weight"`` and ``"bias"``, so the released code never projects. (Had it fired,
  it would also have used the current modality's own r, divided P by its Frobenius norm,
  and divided by the matrix ``mm(k, r)`` rather than the scalar rᵀPr.)
- ``"paper"``: each modality's head-weight gradient is projected off the directions of
  the modalities before it: ∇_W ← ∇_W P with P accumulated from every earlier step's
  r (the previous modalities of this batch and all earlier batches; P is never reset, as
  the plugin lives for the whole run), then P is updated with this step's r. α is a
  constant (the official schedule 0.1^(1 + batch/len) lives only in the dead code).

**Zeroed gradients between the steps (``semantics``).** The official loop calls
``optimizer.zero_grad()`` after each step under torch 1.8.1 (its requirements.txt), which
sets gradients to zero, not None: at step m the encoders of modalities 1..m−1 hold zero
gradients and a momentum or weight-decay optimizer moves them again (the official SGD,
momentum 0.9, wd 1e-4). ``"official"`` reproduces that; ``"paper"`` sets them to None,
so step m moves only θ_m and θ_T, as the paper's alternation describes. The gradients
are None after the batch either way (the official loop deletes them).

**Test-time fusion.** The prediction is Σ_m w_m z_m (logits), the weights from the
unimodal logits' entropies, w = softmax(−H) (the official exp(max H − H_m) / Σ):

- ``"official"``: ``calculate_entropy`` takes ``softmax(dim=0)``, over the BATCH, and sums
  over the whole [B, C] array: one weight per modality per batch, H_m = −Σ_{i,c} q log q,
  q = softmax over i of z_m. The prediction of a sample depends on its batch.
- ``"paper"``: per sample, H_m(i) = −Σ_c p log p with p = softmax over classes (for a
  multi-label task the summed Bernoulli entropies of the sigmoids).

``fusion="fixed"`` uses ``fusion_weights`` instead (the official run without
``--dynamic``: 0.5/0.5 for two modalities, 0.35/0.25/0.40 for audio/visual/text).

Single process or data parallel without DDP wrapping (M backward passes): each
modality's gradients are averaged over ranks before its step, and so is r.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from balgrad._grad import add_to_grads_
from balgrad.errors import ConfigError
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import NonNegative, Positive, Strategy, unwrap
from balgrad.tasks import task_loss, true_class_prob

#: the OWM regulariser α: the official schedule 0.1^(1 + batch/len) at an epoch's start
OFFICIAL_ALPHA = 0.1


# -- the method's arithmetic: pure functions ---------------------------------------------
def sample_entropy(z: torch.Tensor, task: str = "single_label") -> torch.Tensor:
    """H(i) = −Σ_c p_ic log p_ic [B], p = softmax over classes (multi-label: Σ_c of the
    Bernoulli entropy of sigmoid(z_ic)).

    Args:
        z: Logits ``[B, C]``.
        task: ``"single_label"`` or ``"multi_label"``.

    Returns:
        H ``[B]``.
    """
    if task == "multi_label":
        p = torch.sigmoid(z)
        return -(p * F.logsigmoid(z) + (1 - p) * F.logsigmoid(-z)).sum(-1)
    return -(F.softmax(z, -1) * F.log_softmax(z, -1)).sum(-1)


def batch_entropy(z: torch.Tensor) -> torch.Tensor:
    """The official ``calculate_entropy``: q = softmax over the batch (dim 0), then
    −Σ_{i,c} q log q over the whole array: one number per batch. (log_softmax for the
    official log(softmax): equal, without log 0 = −inf.)

    Args:
        z: Logits ``[B, C]``.

    Returns:
        The entropy, 0-d.
    """
    return -(F.softmax(z, 0) * F.log_softmax(z, 0)).sum()


def entropy_weights(entropies: torch.Tensor) -> torch.Tensor:
    """w_m = exp(max_k H_k − H_m) / Σ_j exp(max_k H_k − H_j) = softmax(−H) over the last
    dimension (the modalities): the less uncertain a modality, the larger its weight.

    Args:
        entropies: H ``[M]`` or ``[B, M]``.

    Returns:
        w, shaped as ``entropies``.
    """
    return F.softmax(-entropies, dim=-1)


def fusion_weights(
    logits: Sequence[torch.Tensor], semantics: str, task: str = "single_label"
) -> torch.Tensor:
    """The weights of M unimodal logits [B, C]: [M] per batch (official) or [B, M] per
    sample (paper).

    Args:
        logits: z_m per modality.
        semantics: ``"official"`` or ``"paper"``.
        task: ``"single_label"`` or ``"multi_label"``.

    Returns:
        The weights.
    """
    if semantics == "official":
        return entropy_weights(torch.stack([batch_entropy(z) for z in logits]))
    return entropy_weights(torch.stack([sample_entropy(z, task) for z in logits], dim=-1))


def fuse_logits(logits: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Σ_m w_m z_m, with ``weights`` [M] (one per modality) or [B, M] (one per sample).

    Args:
        logits: z_m per modality, ``[B, C]`` each.
        weights: w ``[M]`` or ``[B, M]``.

    Returns:
        The fused logits ``[B, C]``.
    """
    out = None
    for m, z in enumerate(logits):
        w = weights[..., m]
        term = z * (w.unsqueeze(-1) if w.dim() == 1 else w)
        out = term if out is None else out + term
    return out


def owm_update(P: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """P − (P r)(P r)ᵀ / (α + rᵀ P r) (r: [d]): the recursive least-squares update of the
    projector onto the complement of the inputs seen so far (P symmetric).

    Args:
        P: The projector ``[d, d]``.
        r: The mean input ``[d]``.
        alpha: The regulariser α.

    Returns:
        The updated projector.
    """
    k = P @ r
    return P - torch.outer(k, k) / (alpha + r @ k)


def project_gradient(grad: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """∇_W Pᵀ: each row of a weight gradient [C, d] projected by P [d, d].

    Args:
        grad: A weight gradient ``[C, d]``.
        P: The projector ``[d, d]``.

    Returns:
        The projected gradient.
    """
    return grad @ P.T


# -- the strategy -------------------------------------------------------------------------
class MLA(Strategy):
    """See the module docstring.

    Args:
        semantics: ``"official"`` (default: the released code as it runs, the baseline
            tables that cite MLA are that code's numbers) or ``"paper"`` (the projection
            fires; per-sample fusion weights; steps move only θ_m and θ_T).
        fusion: ``"entropy"`` (the README's "MLA (dynamic fusion)" runs) or ``"fixed"``.
        fusion_weights: the fixed weights, one per modality in the model's order (None:
            1/M each; the official 0.5/0.5 and, for a/v/t, 0.35/0.25/0.40).
        alpha: α of the projector update (``"paper"``), default 0.1.
    """

    name = "mla"
    statistics = statistics(
        "MLA", ["loss_task", "loss_fused"], ["loss", "score", "weight", "grad_kept"]
    )
    owns_optimizer_step = True
    test_time_fusion = True
    #: M backward passes and M steps: the strategy averages over ranks itself
    supports_ddp = False

    @validated
    def __init__(
        self,
        *,
        semantics: Literal["official", "paper"] = "official",
        fusion: Literal["entropy", "fixed"] = "entropy",
        fusion_weights: Annotated[list[NonNegative], Field(min_length=1)] | None = None,
        alpha: Positive = OFFICIAL_ALPHA,
    ):
        super().__init__()
        if fusion_weights is not None:
            fusion_weights = [float(w) for w in fusion_weights]
        self.semantics = semantics
        self.fusion = fusion
        self.fusion_weights = fusion_weights
        self.alpha = float(alpha)
        self.projector: torch.Tensor | None = None  # P ("paper"), over the head's input

    def steps_per_batch(self, model) -> int:
        """One optimizer step per modality.

        Args:
            model: The model.

        Returns:
            M.
        """
        return len(self.modalities(model))

    # -- the prediction ---------------------------------------------------------------
    def weights(self, model, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The fusion weights of these unimodal logits: [M] or [B, M].

        Args:
            model: The model (for the message).
            logits: z_m per modality.

        Returns:
            The weights.

        Raises:
            ConfigError: ``fusion_weights`` has a weight count other than M.
        """
        if self.fusion == "fixed":
            m = len(logits)
            w = self.fusion_weights or [1.0 / m] * m
            if len(w) != m:
                raise ConfigError(
                    f"fusion_weights: {len(w)} weights for the model's {m} modalities "
                    f"{list(self.modalities(model))}"
                )
            return torch.tensor(w, dtype=logits[0].dtype, device=logits[0].device)
        return fusion_weights(logits, self.semantics, model.task)

    def fuse(self, model, output) -> torch.Tensor:
        """Σ_m w_m z_m of the model's unimodal logits (through the shared head)."""
        module = self._shared_head_model(model)
        logits = [output.unimodal[m].float() for m in self.modalities(module)]
        return fuse_logits(logits, self.weights(module, logits))

    def _shared_head_model(self, model):
        module = unwrap(model)[0]
        if getattr(module, "unimodal_head", "shared") == "separate":
            raise ConfigError(
                "mla: the model has separate unimodal heads (unimodal_head='separate'); MLA "
                "trains and predicts through the shared head: build it with "
                "unimodal_head='shared' (and fusion='sum' for the official fc_out)"
            )
        return module

    # -- the step: one optimizer step per modality --------------------------------------
    def compute(self, model, output, target, ctx):
        """One batch: one modality after another, its unimodal loss through the shared head,
        the head's gradient projected off the earlier modalities' inputs (OWM), an optimizer
        step each (see the module docstring).
        """
        self._shared_head_model(model)
        task = model.task
        modalities = self.modalities(model)
        layout = ctx.layout
        if layout.groups.get("unimodal_heads"):
            raise ConfigError("mla: separate unimodal heads are never trained by MLA")
        head = layout.groups["head"]
        h = output.embeddings
        stats: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            zs = [output.unimodal[m].float() for m in modalities]
            w = self.weights(model, zs)
            # the fused head's loss, as every strategy logs it (MLA predicts by the fusion)
            stats["loss_task"] = task_loss(output.logits, target, task)
            ctx.check_finite(("task loss L_T",), stats["loss_task"].reshape(1))
            stats["loss_fused"] = task_loss(fuse_logits(zs, w), target, task)
            w = w if w.dim() == 1 else w.mean(0)
            for i, m in enumerate(modalities):
                stats[stat_name("weight", m)] = w[i]
                stats[stat_name("score", m)] = true_class_prob(zs[i], target, task).mean()
        for m in modalities:
            # the head as the previous modalities' steps left it: z_m computed now
            z = model.classify({k: h[k] if k == m else torch.zeros_like(h[k]) for k in modalities})
            loss = task_loss(z, target, task)
            ctx.check_finite((f"{m} loss L_{m}",), loss.detach().reshape(1))
            params = layout.groups[m] + head
            grads = ctx.loss_grads(loss, params)
            if self.semantics == "paper":
                stats[stat_name("grad_kept", m)] = self._project(ctx, model, m, h[m], params, grads)
            ctx.check_gradients_finite(f"{m} gradient", [g for g in grads if g is not None])
            add_to_grads_(params, grads)
            self.optimizer_step(set_to_none=self.semantics == "paper")
            stats[stat_name("loss", m)] = loss.detach()
        return stats

    def _project(self, ctx, model, m, h_m, params, grads) -> torch.Tensor:
        """∇_W ← ∇_W P, then P ← owm_update(P, r_m); returns ‖∇_W P‖ / ‖∇_W‖."""
        readout = model.readout() if hasattr(model, "readout") else None
        if readout is None:
            raise ConfigError(
                "mla: semantics='paper' projects the gradient of the head's output layer, "
                "which needs a head linear in the fused features (model.readout(): concat "
                "or sum fusion and a linear classifier, hidden=0)"
            )
        W = readout.weight
        i = next(k for k, p in enumerate(params) if p is W)
        with torch.no_grad():
            d = W.shape[1]
            r = torch.zeros(d, dtype=torch.float64, device=W.device)
            r[readout.columns[m]] += h_m.detach().double().mean(0)
            r = ctx.sync.mean(r)
            if self.projector is None:
                self.projector = torch.eye(d, dtype=torch.float64, device=W.device)
            P = self.projector.to(W.device)
            g = grads[i]
            kept = torch.ones((), dtype=torch.float64, device=W.device)
            if g is not None:
                projected = project_gradient(g.double(), P)
                before = g.double().norm()
                kept = torch.where(before > 0, projected.norm() / before.clamp_min(1e-300), kept)
                grads[i] = projected.to(g.dtype)
            self.projector = owm_update(P, r, self.alpha)
        return kept

    # -- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The base state plus the OWM projector P.

        Returns:
            A dict of plain values and tensors.
        """
        state = super().state_dict()
        if self.projector is not None:
            state["projector"] = self.projector.detach().cpu()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the OWM projector.

        Args:
            state: What :meth:`state_dict` returned.
        """
        super().load_state_dict(state)
        P = state.get("projector")
        self.projector = None if P is None else P.clone()
