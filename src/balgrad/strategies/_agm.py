"""AGM (Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient
Modulation", ICCV 2023), as in its official code (SPEC section 3; ``CREMAD_main.py``).

Mono-modal responses from passes with one modality blanked::

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
input (:meth:`MultimodalModel.blank_embeddings
<balgrad.models._multimodal.MultimodalModel.blank_embeddings>`: each modality's blank
input of its kind, e.g. a zero image or the empty text), in eval mode, with gradients
flowing through it as in the official code. The other modalities' embeddings are reused
from the training forward (the official code re-runs them in eval mode: identical for
towers without dropout or batch norm).

M > 2 modalities (SPEC section 6, as the official three-modal code, ``URFunny_net.py``):
the responses are Shapley values over the 2^M subsets S of modalities, with f(S) the
head on the embeddings of S and every other modality blanked, and the empty set worth 0
(which gives the two-modal o_v, o_l above for M = 2):

    o_m = Σ_{S ∌ m} #S! (M − #S − 1)! / M! · [f(S ∪ {m}) − f(S)],   Σ_m o_m = f(all).

With s̄ the mean of the M scores, r_m = exp(M/(M−1) · (s̄ − s_m)), r̄_m the same on the
running scores, κ_m = exp(α · min(r̄_m − r_m, max_gap)). That is 2^M − 2 extra passes
through the head, so M > 6 is refused. The official three-modal run uses
``max_gap=7`` and ``clip_norm=5`` where the two-modal one uses 10 and 1: both are options.

No host sync in the step: κ, the running means and the clip decision are device
tensors. Under a GradScaler the clip threshold and max norm are applied to the unscaled
gradient (1.0 · scale on the scaled one), so the update is exactly scale-equivariant.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from balgrad._grad import add_to_grads_, forward_autocast, widen
from balgrad.errors import ConfigError
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import (
    Epoch,
    NonNegative,
    Positive,
    Strategy,
    check_window,
    checked_loss,
    in_window,
)
from balgrad.tasks import task_loss

CLIP_NORM = 1.0  # the official two-modal threshold and max norm
CLIP_EPS = 1e-6  # clip_grad_norm_'s epsilon
PROB_FLOOR = 1e-8  # the official two-modal clamp of p(true label); its three-modal code has none
MAX_MODALITIES = 6  # 2^6 − 2 = 62 extra head passes a step


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
    backward hook on the response module).

    Args:
        x: A tensor.
        scale: The gradient factor.

    Returns:
        ``x``, whose gradient is scaled.
    """
    return _ScaleGrad.apply(x, scale)


def agm_responses(fused, f_0l, f_v0):
    """(o_v, o_l): the AGM decomposition of the fused logits ``fused`` = f(v, l).

    Args:
        fused: f(v, l), the fused logits.
        f_0l: The head on a blank first modality and the second's embedding.
        f_v0: The head on the first modality's embedding and a blank second.

    Returns:
        (o_v, o_l), each shaped as ``fused``.
    """
    o_v = 0.5 * (fused - f_0l + f_v0)
    o_l = 0.5 * (fused - f_v0 + f_0l)
    return o_v, o_l


def shapley_weight(size: int, num_modalities: int) -> float:
    """#S! (M − #S − 1)! / M! (#S: the size of S): the weight of a coalition of ``size`` others.

    Args:
        size: #S.
        num_modalities: M.

    Returns:
        The weight.
    """
    m = num_modalities
    return math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)


def shapley_responses(value, num_modalities: int) -> list[torch.Tensor]:
    """o_m for every modality index m, from ``value(S)`` = f(S) for a frozenset S of
    modality indices (called once per non-empty subset; the empty set is worth 0).

    Args:
        value: f(S) for a non-empty coalition S (a frozenset of modality indices).
        num_modalities: M.

    Returns:
        o_m per modality index: the Shapley value of each modality in f.
    """
    m = num_modalities
    cache: dict[frozenset, torch.Tensor] = {}

    def v(subset: frozenset):
        if not subset:
            return None
        if subset not in cache:
            cache[subset] = value(subset)
        return cache[subset]

    responses = []
    for i in range(m):
        others = [j for j in range(m) if j != i]
        total = None
        for size in range(m):
            for combo in itertools.combinations(others, size):
                s = frozenset(combo)
                with_i, without = v(s | {i}), v(s)
                term = shapley_weight(size, m) * (with_i if without is None else with_i - without)
                total = term if total is None else total + term
        responses.append(total)
    return responses


def response_score(
    o: torch.Tensor, target: torch.Tensor, task: str, prob_floor: float = PROB_FLOOR
) -> torch.Tensor:
    """Per-sample −log p(true label | o), probabilities clamped at ``prob_floor``.

    ``prob_floor=0`` takes −log p unclamped, as the official three-modal code, computed
    from the log-probabilities (so a p below float's range is a large finite score,
    where the official ``-log(softmax(o)[y])`` in float32 becomes infinite).

    Args:
        o: A response, ``[batch, classes]``.
        target: The labels.
        task: ``"single_label"`` or ``"multi_label"`` (the mean over labels of each
            label's −log p).
        prob_floor: The clamp on p.

    Returns:
        The scores, ``[batch]``.
    """
    o = widen(o)
    if task == "single_label":
        if not prob_floor:
            return -F.log_softmax(o, dim=-1).gather(-1, target.view(-1, 1)).squeeze(-1)
        p = F.softmax(o, dim=-1).gather(-1, target.view(-1, 1)).squeeze(-1)
        return -torch.log(p.clamp_min(prob_floor))
    t = target.to(o.dtype)
    if not prob_floor:
        return F.binary_cross_entropy_with_logits(o, t, reduction="none").mean(-1)
    p = torch.sigmoid(o)
    return -torch.log((t * p + (1 - t) * (1 - p)).clamp_min(prob_floor)).mean(-1)


def agm_ratios(s: torch.Tensor) -> torch.Tensor:
    """r_m from scores s [M]: exp(s_l − s_v), exp(s_v − s_l) for two modalities (the
    official expressions), exp(M/(M−1) · (s̄ − s_m)) for M.

    Args:
        s: Scores ``[M]``.

    Returns:
        The ratios r_m ``[M]``.
    """
    if s.numel() == 2:
        s_v, s_l = s.unbind()
        return torch.stack([torch.exp(s_l - s_v), torch.exp(s_v - s_l)])
    m = s.numel()
    return torch.exp(m / (m - 1) * (s.mean() - s))


def agm_kappa(
    s: torch.Tensor, running: torch.Tensor, alpha: float, max_gap: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(κ, r, r̄) [M] from this step's scores ``s`` and the running means ``running``
    (S_m): κ_m = exp(α · min(r̄_m − r_m, max_gap)).

    Args:
        s: This step's scores ``[M]``.
        running: The running means S_m ``[M]``.
        alpha: α.
        max_gap: The cap on r̄_m − r_m.

    Returns:
        κ, r and r̄, each ``[M]``.
    """
    r, rbar = agm_ratios(s), agm_ratios(running)
    return torch.exp(alpha * (rbar - r).clamp_max(max_gap)), r, rbar


def running_scores(
    running: torch.Tensor, count: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, n) after one more step: the running means of the scores over n + 1 steps, as
    the official code's ``S (n − 1)/n + s/n`` with n the new count; unchanged when a score
    is not finite (a bad batch must not poison later steps).

    Args:
        running: S ``[M]``.
        count: n, a 0-d integer tensor.
        s: This step's scores ``[M]``.

    Returns:
        The updated (S, n).
    """
    it = (count + 1).to(s.dtype)
    updated = running * (it - 1) / it + s / it
    finite = torch.isfinite(s).all()
    return torch.where(finite, updated, running), count + finite.to(count.dtype)


def output_layer_weight_index(model, params) -> int:
    """Index in ``params`` of the classifier's output-layer weight: the last parameter
    with ≥ 2 dims of the "head" group (``head.classifier[-1].weight`` in TwoTowerModel).

    Args:
        model: The model.
        params: The parameters the clip runs over.

    Returns:
        The index.

    Raises:
        ConfigError: The head group has no trainable weight matrix in ``params``.
    """
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
        max_gap: the cap on r̄_m − r_m (10, the official two-modal code; 7 its
            three-modal one).
        modulation_start, modulation_end: the epochs (inclusive) with κ applied;
            ``modulation_end=None`` modulates every epoch from the start on.
        clip: ``"model"`` (the official whole-model clip) or ``"none"``.
        clip_norm: the clip's trigger threshold and max norm (1, the official two-modal
            code; 5 its three-modal one).
        zero: ``"embedding"`` (zero h_m) or ``"input"`` (re-run the tower on a blank input).
        prob_floor: the clamp on p(true label) in the scores (1e-8, the official
            two-modal ``CREMAD_main.py``); 0 takes −log p unclamped, as the official
            three-modal ``URFunny_main.py``.
    """

    name = "agm"
    statistics = statistics(
        "AGM",
        ["loss_task", "grad_clipped", "modulated"],
        ["loss", "score", "agm_score", "ratio", "running_ratio", "kappa"],
    )
    max_modalities = MAX_MODALITIES

    @validated
    def __init__(
        self,
        *,
        alpha: NonNegative = 1.0,
        max_gap: NonNegative = 10.0,
        modulation_start: Epoch = 0,
        modulation_end: Epoch | None = 20,
        clip: Literal["model", "none"] = "model",
        zero: Literal["embedding", "input"] = "embedding",
        clip_norm: Positive = CLIP_NORM,
        prob_floor: Annotated[float, Field(ge=0, lt=1)] = PROB_FLOOR,
    ):
        super().__init__()
        check_window(modulation_start, modulation_end)
        self.prob_floor = float(prob_floor)
        self.clip_norm = float(clip_norm)
        self.alpha = float(alpha)
        self.max_gap = float(max_gap)
        self.modulation_start = int(modulation_start)
        self.modulation_end = modulation_end
        self.clip = clip
        self.zero = zero
        # S_m per modality and the number of steps they average, as tensors (moved to
        # the scores' device at the first step, sized to the model's modalities);
        # float64 as the official Python floats
        self._running = torch.zeros(0, dtype=torch.float64)
        self._count = torch.zeros((), dtype=torch.int64)

    # -- state --------------------------------------------------------------------------
    @property
    def running(self) -> list[float]:
        """[S_1, .., S_M] (a host sync: for inspection, not for the step); all zero before
        the first step."""
        return self._running.tolist() or [0.0, 0.0]

    @property
    def count(self) -> int:
        """The number of steps the running scores average over."""
        return int(self._count)

    def state_dict(self) -> dict:
        """The base state plus the running scores S_m and their count.

        Returns:
            A dict of plain values.
        """
        return {**super().state_dict(), "running": self.running, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        """Restore the running scores and their count, with the base state.

        Args:
            state: What :meth:`state_dict` returned.
        """
        super().load_state_dict(state)
        self._running = torch.tensor(
            [float(x) for x in state.get("running", [])], dtype=torch.float64
        )
        self._count = torch.tensor(int(state.get("count", 0)), dtype=torch.int64)

    def active(self) -> bool:
        """Whether this epoch is in the modulation window.

        Returns:
            True between ``modulation_start`` and ``modulation_end``, inclusive.
        """
        end = float("inf") if self.modulation_end is None else self.modulation_end
        return in_window(self.epoch, self.modulation_start, end)

    # -- coefficients -------------------------------------------------------------------
    def coefficients(self, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """κ, r and r̄ (one entry per modality) from this step's scores [s_1, .., s_M];
        then updates the running means (skipped when a score is not finite, so a bad
        batch cannot poison later steps), as the official code, in its order of
        operations.

        Args:
            scores: This step's scores ``[M]``.

        Returns:
            ``{"kappa": κ, "ratio": r, "running_ratio": r̄}``, each ``[M]``.
        """
        dtype = torch.float32 if scores.device.type == "mps" else torch.float64
        running = self._running.to(scores.device, dtype)
        if running.numel() == 0:  # the first step: S_m = 0
            running = torch.zeros(scores.numel(), device=scores.device, dtype=dtype)
        elif running.numel() != scores.numel():
            raise ConfigError(
                f"agm: its running scores are for {running.numel()} modalities, the model "
                f"has {scores.numel()}; use a new strategy for a different model"
            )
        count = self._count.to(scores.device)
        s = scores.to(dtype)
        kappa, r, rbar = agm_kappa(s, running, self.alpha, self.max_gap)
        self._running, self._count = running_scores(running, count, s)
        return {"kappa": kappa, "ratio": r, "rbar": rbar}

    # -- the step -----------------------------------------------------------------------
    def blanks(self, model, output) -> dict[str, torch.Tensor]:
        """The blank embedding of each modality, chosen by ``zero``.

        Args:
            model: The model (``zero="input"`` calls its ``blank_embeddings``).
            output: The batch's :class:`~balgrad.models.ModelOutput`.

        Returns:
            ``{modality: blank h_m}``, shaped as the batch's embeddings.

        Raises:
            ConfigError: ``zero="input"`` and the model has no ``blank_embeddings`` or the
                output no inputs.
        """
        h = output.embeddings
        if self.zero == "embedding":
            return {m: torch.zeros_like(v) for m, v in h.items()}
        blank = getattr(model, "blank_embeddings", None)
        inputs = getattr(output, "inputs", None) or {}
        if blank is None or any(inputs.get(m) is None for m in h):
            raise ConfigError(
                "agm zero='input': the model needs blank_embeddings() and outputs that "
                "carry every modality's input (balgrad's models have both); use "
                "zero='embedding'"
            )
        return {m: b.expand_as(h[m]) for m, b in blank(inputs).items()}

    def responses(self, model, output) -> list[torch.Tensor]:
        """o_m for every modality, in the model's order (the head run on blanked
        embeddings: 2 passes for two modalities, 2^M − 2 for M).

        Args:
            model: The model (its ``classify`` runs on the blanked embeddings).
            output: The batch's :class:`~balgrad.models.ModelOutput`.

        Returns:
            o_m for each modality, ``[batch, classes]`` each.
        """
        h = output.embeddings
        names = list(h)
        blanks = self.blanks(model, output)
        if len(names) == 2:  # the official two-modal expressions, as they are
            first, second = names
            f_0l = model.classify({first: blanks[first], second: h[second]})
            f_v0 = model.classify({first: h[first], second: blanks[second]})
            return list(agm_responses(output.logits, f_0l, f_v0))
        if len(names) > MAX_MODALITIES:
            raise ConfigError(
                f"agm: {len(names)} modalities need 2^{len(names)} − 2 passes through the "
                f"head per step; AGM supports at most {MAX_MODALITIES}"
            )
        everyone = frozenset(range(len(names)))

        def value(subset: frozenset) -> torch.Tensor:
            if subset == everyone:
                return output.logits
            return model.classify(
                {m: h[m] if i in subset else blanks[m] for i, m in enumerate(names)}
            )

        return shapley_responses(value, len(names))

    def scores(self, responses, target, task, sync) -> torch.Tensor:
        """[s_1, .., s_M]: batch means of the response scores over the global batch (one
        all-reduce through ``sync`` of the M sums and the sample count).

        Args:
            responses: o_m per modality.
            target: The labels.
            task: ``"single_label"`` or ``"multi_label"``.
            sync: The gradient sync (sums over data-parallel ranks).

        Returns:
            The scores ``[M]``.
        """
        per_sample = [response_score(o, target, task, self.prob_floor) for o in responses]
        first = per_sample[0]
        count = torch.full((), first.numel(), dtype=first.dtype, device=first.device)
        sums = sync.sum(torch.stack([*(v.sum() for v in per_sample), count]))
        m = len(responses)
        return sums[:m] / sums[m].clamp_min(1)

    def compute(self, model, output, target, ctx):
        """One step: the responses o_m, the scores, κ_m inside the window, the scaled
        backward and the clip (see the module docstring).
        """
        task = model.task
        active = self.active()
        modalities = self.modalities(model)
        # outside the window the responses only feed the scores: no graph for them
        graph = contextlib.nullcontext() if active else torch.no_grad()
        with graph, forward_autocast(output.logits):
            responses = self.responses(model, output)
        with torch.no_grad():
            scores = self.scores(responses, target, task, ctx.sync)
        checked_loss("task loss L_T (AGM response scores)", scores)
        coef = self.coefficients(scores)
        kappa = coef["kappa"].unbind()
        if active:
            fused = scale_grad(responses[0], kappa[0])
            for o, k in zip(responses[1:], kappa[1:]):
                fused = fused + scale_grad(o, k)
        else:
            fused = output.logits
            kappa = [torch.ones_like(scores[0])] * len(modalities)
        loss = checked_loss("task loss L_T", task_loss(fused, target, task))

        params = ctx.layout.params
        grads = ctx.loss_grads(loss, params)
        scale = ctx.loss_scale(loss)
        clipped = self.clip_(model, params, grads, scale) if self.clip == "model" else None
        add_to_grads_(params, grads)
        flag = torch.zeros((), device=scores.device)
        # two modalities: r and r̄ of the first only (the second's are their inverses)
        shown = modalities[:1] if len(modalities) == 2 else modalities
        return {
            "loss_task": loss.detach(),
            **self.unimodal_monitor(model, output, target),
            **{stat_name("agm_score", m): scores[i] for i, m in enumerate(modalities)},
            **{stat_name("ratio", m): coef["ratio"][i] for i, m in enumerate(shown)},
            **{stat_name("running_ratio", m): coef["rbar"][i] for i, m in enumerate(shown)},
            **{stat_name("kappa", m): kappa[i] for i, m in enumerate(modalities)},
            "grad_clipped": flag if clipped is None else clipped.to(flag.dtype),
            "modulated": flag + float(active),
        }

    def clip_(self, model, params, grads, scale) -> torch.Tensor:
        """The official clip, in place on ``grads``, without a host sync: returns the
        0-d bool "clipped" flag.

        Args:
            model: The model (the trigger is its output layer's weight gradient).
            params: The parameters ``grads`` belong to.
            grads: Their gradients (None where a loss never reached one).
            scale: The GradScaler's scale where the gradients are scaled, else None.

        Returns:
            A 0-d bool tensor: whether the clip fired.
        """
        trigger_grad = grads[output_layer_weight_index(model, params)]
        if trigger_grad is None:  # the loss never reached the output layer: nothing to do
            return torch.zeros((), dtype=torch.bool, device=params[0].device)
        present = [g for g in grads if g is not None]
        limit = self.clip_norm if scale is None else self.clip_norm * scale
        trigger = trigger_grad.abs().amax() > limit
        norms = [widen(n) for n in torch._foreach_norm(present)]
        total = torch.linalg.vector_norm(torch.stack(norms))
        eps = CLIP_EPS if scale is None else CLIP_EPS * scale
        coef = (limit / (total + eps)).clamp_max(1.0)
        torch._foreach_mul_(present, torch.where(trigger, coef, torch.ones_like(coef)))
        return trigger
