"""AGM (Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient
Modulation", ICCV 2023), as in its official code (SPEC section 3; ``CREMAD_main.py``).

Mono-modal responses from passes with one modality blanked:
    o_v = ½[f(v,l) − f(0,l) + f(v,0)],   o_l = ½[f(v,l) − f(v,0) + f(0,l)],
so o_v + o_l = f(v,l) is the fused output. Scores s_m = batch mean of
−log softmax(o_m)[y] (probabilities clamped at 1e-8); r_v = exp(s_l − s_v),
r_l = exp(s_v − s_l); running means S_m of the scores over all iterations, starting at
0 before the first step, give r̄_v = exp(S_l − S_v), r̄_l = exp(S_v − S_l);
κ_m = exp(α · min(r̄_m − r_m, 10)) scales the gradient that flows through o_m. The
running means update after κ is computed, on every step. So the first step's κ is
exp(α · min(1 − r_m, 10)), not 1.

Modulation applies for epochs ``modulation_start`` ≤ epoch ≤ ``modulation_end``
(0..20 by default, the official defaults); outside it the step is plain joint
training: κ = 1, the gradient of L_T = ℓ(f(v,l), y), while the scores and running means
are still computed, updated and logged. (The official code counts epochs from 1, so its
default window covers 20 epochs and ours, from 0, 21; and after its window its hooks
keep the last κ rather than 1.)

Clipping (``clip="model"``, the official code): whenever an entry of the gradient of
the classifier's output-layer weight (the last parameter with ≥ 2 dims of the "head"
group) is outside [−1, 1], the gradient of the whole model (every trainable parameter)
is clipped to norm 1 as ``clip_grad_norm_(model.parameters(), 1.0)``; on every step,
inside the modulation window or not. ``clip="none"`` turns it off.

Blank modality (``zero``): ``"embedding"`` (default, our cheaper reading) zeroes h_m and
re-runs only the head; ``"input"`` (the official code) re-runs the tower on a blank
input (``TwoTowerModel.blank_embeddings``: zeros of the model's image input, the empty
text), in eval mode, with gradients flowing through it as in the official code. The
other modality's embedding is reused from the training forward (the official code
re-runs it in eval mode: identical for towers without dropout or batch norm).

No host sync in the step: κ, the running means and the clip decision are device
tensors. Under a GradScaler the clip threshold and max norm are applied to the unscaled
gradient (1.0 · scale on the scaled one), so the update is exactly scale-equivariant.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn.functional as F

from balgrad._grad import add_to_grads_, forward_autocast, widen
from balgrad.errors import ConfigError
from balgrad.strategies.base import (
    Strategy,
    check_choice,
    check_modulation,
    checked_loss,
    in_window,
)
from balgrad.tasks import task_loss

CLIP = ("model", "none")
ZERO = ("embedding", "input")
CLIP_NORM = 1.0  # the official threshold and max norm
CLIP_EPS = 1e-6  # clip_grad_norm_'s epsilon


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Identity forward; multiplies the incoming gradient by ``scale`` (the official
    backward hook on the response module)."""
    return _ScaleGrad.apply(x, scale)


def agm_responses(fused, f_0l, f_v0):
    """(o_v, o_l): the AGM decomposition of the fused logits ``fused`` = f(v, l)."""
    o_v = 0.5 * (fused - f_0l + f_v0)
    o_l = 0.5 * (fused - f_v0 + f_0l)
    return o_v, o_l


def response_score(o: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Per-sample −log p(true label | o), probabilities clamped at 1e-8."""
    o = widen(o)
    if task == "single_label":
        p = F.softmax(o, dim=-1).gather(-1, target.view(-1, 1)).squeeze(-1)
        return -torch.log(p.clamp_min(1e-8))
    p = torch.sigmoid(o)
    t = target.to(p.dtype)
    return -torch.log((t * p + (1 - t) * (1 - p)).clamp_min(1e-8)).mean(-1)


def output_layer_weight_index(model, params) -> int:
    """Index in ``params`` of the classifier's output-layer weight: the last parameter
    with ≥ 2 dims of the "head" group (``head.classifier[-1].weight`` in TwoTowerModel)."""
    index = {id(p): i for i, p in enumerate(params)}
    matrices = [p for p in model.parameter_groups().get("head", []) if p.dim() >= 2]
    if not matrices or id(matrices[-1]) not in index:
        raise ConfigError(
            "agm clip='model': the model's 'head' parameter group has no trainable weight "
            "matrix to trigger the clip on; use clip='none'"
        )
    return index[id(matrices[-1])]


class AGM(Strategy):
    """See the module docstring. Options:

    Args:
        alpha: α (1.0, the official default).
        max_gap: the cap on r̄_m − r_m (10, the official code).
        modulation_start, modulation_end: the epochs (inclusive) with κ applied;
            ``modulation_end=None`` modulates every epoch from the start on.
        clip: ``"model"`` (the official whole-model clip) or ``"none"``.
        zero: ``"embedding"`` (zero h_m) or ``"input"`` (re-run the tower on a blank input).
    """

    name = "agm"

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        max_gap: float = 10.0,
        modulation_start: int = 0,
        modulation_end: int | None = 20,
        clip: Literal["model", "none"] = "model",
        zero: Literal["embedding", "input"] = "embedding",
    ):
        super().__init__()
        check_modulation(alpha, modulation_start, modulation_end)
        check_choice("clip", clip, CLIP)
        check_choice("zero", zero, ZERO)
        self.alpha = float(alpha)
        self.max_gap = float(max_gap)
        self.modulation_start = int(modulation_start)
        self.modulation_end = modulation_end
        self.clip = clip
        self.zero = zero
        # S_v, S_l and the number of steps they average, as tensors (moved to the
        # scores' device at the first step); float64 as the official Python floats
        self._running = torch.zeros(2, dtype=torch.float64)
        self._count = torch.zeros((), dtype=torch.int64)

    # -- state --------------------------------------------------------------------------
    @property
    def running(self) -> list[float]:
        """[S_v, S_l] (a host sync: for inspection, not for the step)."""
        return self._running.tolist()

    @property
    def count(self) -> int:
        return int(self._count)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "running": self.running, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._running = torch.tensor(
            [float(x) for x in state.get("running", [0.0, 0.0])], dtype=torch.float64
        )
        self._count = torch.tensor(int(state.get("count", 0)), dtype=torch.int64)

    def active(self) -> bool:
        end = float("inf") if self.modulation_end is None else self.modulation_end
        return in_window(self.epoch, self.modulation_start, end)

    # -- coefficients -------------------------------------------------------------------
    def coefficients(self, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """κ_v, κ_l, r_v, r̄_v from this step's scores [s_v, s_l]; then updates the
        running means (skipped when a score is not finite, so a bad batch cannot poison
        later steps), as the official code, in its order of operations."""
        dtype = torch.float32 if scores.device.type == "mps" else torch.float64
        running = self._running.to(scores.device, dtype)
        count = self._count.to(scores.device)
        s = scores.to(dtype)
        s_v, s_l = s.unbind()
        S_v, S_l = running.unbind()
        r_v, r_l = torch.exp(s_l - s_v), torch.exp(s_v - s_l)
        rbar_v, rbar_l = torch.exp(S_l - S_v), torch.exp(S_v - S_l)
        k_v = torch.exp(self.alpha * (rbar_v - r_v).clamp_max(self.max_gap))
        k_l = torch.exp(self.alpha * (rbar_l - r_l).clamp_max(self.max_gap))
        it = (count + 1).to(dtype)
        updated = running * (it - 1) / it + s / it
        finite = torch.isfinite(s).all()
        self._running = torch.where(finite, updated, running)
        self._count = count + finite.to(count.dtype)
        return {"kappa_image": k_v, "kappa_text": k_l, "ratio_image": r_v, "rbar_image": rbar_v}

    # -- the step -----------------------------------------------------------------------
    def blanked_outputs(self, model, output) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(0, l), f(v, 0)) with the blank modality chosen by ``zero``."""
        h_v, h_l = output.h_image, output.h_text
        if self.zero == "embedding":
            b_v, b_l = torch.zeros_like(h_v), torch.zeros_like(h_l)
        else:
            blank = getattr(model, "blank_embeddings", None)
            if blank is None or output.image_input is None or output.text_input is None:
                raise ConfigError(
                    "agm zero='input': the model needs blank_embeddings() and outputs that "
                    "carry image_input/text_input (balgrad's TwoTowerModel has both); "
                    "use zero='embedding'"
                )
            b_v, b_l = blank(output.image_input, output.text_input)
            b_v, b_l = b_v.expand_as(h_v), b_l.expand_as(h_l)
        return model.classify(b_v, h_l), model.classify(h_v, b_l)

    def scores(self, o_v, o_l, target, task) -> torch.Tensor:
        """[s_v, s_l]: batch means of the response scores over the global batch (one
        all-reduce of the two sums and the sample count)."""
        per_sample = [response_score(o, target, task) for o in (o_v, o_l)]
        first = per_sample[0]
        count = torch.full((), first.numel(), dtype=first.dtype, device=first.device)
        sums = self.sync.sum(torch.stack([*(v.sum() for v in per_sample), count]))
        return sums[:2] / sums[2].clamp_min(1)

    def compute(self, model, output, target):
        task = model.task
        active = self.active()
        # outside the window the responses only feed the scores: no graph for them
        with contextlib.nullcontext() if active else torch.no_grad():
            with forward_autocast(output.logits):
                f_0l, f_v0 = self.blanked_outputs(model, output)
            o_v, o_l = agm_responses(output.logits, f_0l, f_v0)
        with torch.no_grad():
            scores = self.scores(o_v, o_l, target, task)
        checked_loss("task loss L_T (AGM response scores)", scores)
        coef = self.coefficients(scores)
        if active:
            fused = scale_grad(o_v, coef["kappa_image"]) + scale_grad(o_l, coef["kappa_text"])
        else:
            fused = output.logits
            coef["kappa_image"] = coef["kappa_text"] = torch.ones_like(scores[0])
        loss = checked_loss("task loss L_T", task_loss(fused, target, task))

        params = self.layout(model).params
        grads = self.loss_grads(loss, params)
        scale = self.loss_scale(loss)
        clipped = self.clip_(model, params, grads, scale) if self.clip == "model" else None
        add_to_grads_(params, grads)
        flag = torch.zeros((), device=scores.device)
        return {
            "loss_task": loss.detach(),
            **self.unimodal_monitor(model, output, target),
            "agm_score_image": scores[0],
            "agm_score_text": scores[1],
            "ratio_image": coef["ratio_image"],
            "running_ratio_image": coef["rbar_image"],
            "kappa_image": coef["kappa_image"],
            "kappa_text": coef["kappa_text"],
            "grad_clipped": flag if clipped is None else clipped.to(flag.dtype),
            "modulated": flag + float(active),
        }

    def clip_(self, model, params, grads, scale) -> torch.Tensor:
        """The official clip, in place on ``grads``, without a host sync: returns the
        0-d bool "clipped" flag."""
        trigger_grad = grads[output_layer_weight_index(model, params)]
        if trigger_grad is None:  # the loss never reached the output layer: nothing to do
            return torch.zeros((), dtype=torch.bool, device=params[0].device)
        present = [g for g in grads if g is not None]
        limit = CLIP_NORM if scale is None else CLIP_NORM * scale
        trigger = trigger_grad.abs().amax() > limit
        norms = [widen(n) for n in torch._foreach_norm(present)]
        total = torch.linalg.vector_norm(torch.stack(norms))
        eps = CLIP_EPS if scale is None else CLIP_EPS * scale
        coef = (limit / (total + eps)).clamp_max(1.0)
        torch._foreach_mul_(present, torch.where(trigger, coef, torch.ones_like(coef)))
        return trigger
