"""OGM-GE (Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient
Modulation", CVPR 2022), as in its official code (SPEC section 3).

Scores s_m = batch sum of softmax(z_m)[y]; ρ_v = s_v / s_l. The dominant modality's
gradient is damped: if ρ_v > 1, k_v = 1 − tanh(α ρ_v), k_l = 1; else
k_l = 1 − tanh(α / ρ_v), k_v = 1. For M > 2 modalities (the official code is
two-modal) SPEC section 6 fixes the one-versus-rest reading: ρ_m = s_m / mean_{j≠m} s_j,
k_m = 1 − tanh(α ρ_m) where ρ_m > 1, else 1; M = 2 uses the official rule above as it
is, with the first modality in ρ's numerator (so an exact tie, ρ = 1, damps the second;
``semantics="official"`` damps the first, as below). After the backward pass of L_T, the modulated
parameters of θ_m get g ← g k_m + N(0, std(g) + 1e-8) (generalisation enhancement: the
std is taken before scaling, and noise is added even where k = 1), only for epochs with
``modulation_start`` ≤ epoch ≤ ``modulation_end`` (inclusive at both ends, as the
official ``main.py``). One backward pass per step.

Where this reading departs from the official code on purpose, the official behaviour is
an option, and ``semantics="official"`` selects all three at once (each can still be set
on its own):

- ``scale_params="matrices"`` (default) modulates every parameter with ≥ 2 dims;
  ``"conv4d"`` only 4-D (convolution) ones, as the official code, which scales nothing
  in a transformer tower.
- ``fusion_bias="full"`` (default) scores z_m = the model's unimodal logits (the head
  with the other embeddings zeroed: the full output bias); ``"half"`` computes them the
  official way, from the output layer split into each modality's columns plus an equal
  share of its bias: z_m = W_m h_m + b/M (M = 2: half each; with sum fusion every W_m
  is W). It needs a head that is additive over modalities and says so: the model's
  ``readout()`` (a :class:`~balgrad.models.Readout`; balgrad's models give one for
  concat or sum fusion with a linear classifier, and a user's own model can declare
  its own). Without one it is an error.
- ``semantics="official"`` breaks an exact two-modality tie as the official ``main.py``:
  its ρ is visual / audio with the model's streams in the order (audio, visual), and a
  tie (ρ = 1) falls to the ``else`` branch, damping audio: the first modality. (At
  M > 2 a tie damps nobody under either semantics.)

Noise: one ``torch.randn`` over all modulated parameters from a generator seeded by
(seed, step), so every data-parallel rank draws the same noise for the same all-reduced
gradient; it is drawn in the gradients' dtype on their device. Coefficients stay device
tensors (no host sync). Under a GradScaler the scaled gradient's std is ``scale`` times
the unscaled one and the 1e-8 is scaled too, so the update is exactly scale-equivariant.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from balgrad._grad import add_to_grads_, widen
from balgrad.errors import ConfigError
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
from balgrad.tasks import task_loss, true_class_prob

#: semantics -> (scale_params, fusion_bias) it implies unless they are given
SEMANTICS = {"balgrad": ("matrices", "full"), "official": ("conv4d", "half")}
NOISE_EPS = 1e-8  # added to the std, as the official code


def ogm_coefficients(
    s_v: torch.Tensor, s_l: torch.Tensor, alpha: float, tie_damps_first: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ρ_v, k_v, k_l) from the two modality scores, as 0-d tensors (no host sync).

    A zero score makes the other modality infinitely dominant (its k is 0); both zero
    count as balanced (ρ = 1). At ρ = 1 the second modality is damped, or the first with
    ``tie_damps_first`` (the official ``main.py``'s else branch).

    Args:
        s_v: The first modality's score.
        s_l: The second's.
        alpha: α.
        tie_damps_first: At ρ = 1 damp the first modality.

    Returns:
        (ρ_v, k_v, k_l).
    """
    s_v, s_l = torch.as_tensor(s_v), torch.as_tensor(s_l)
    inf = torch.full_like(s_v, float("inf"))
    rho = torch.where(s_l > 0, s_v / s_l, torch.where(s_v > 0, inf, torch.ones_like(s_v)))
    big = torch.finfo(rho.dtype).max  # α · ρ stays defined (0 · inf would be NaN)
    one = torch.ones_like(rho)
    damped_v = 1 - torch.tanh(alpha * rho.clamp_max(big))
    damped_l = 1 - torch.tanh(alpha * (1 / rho).clamp_max(big))
    image_dominant = rho >= 1 if tie_damps_first else rho > 1
    return (
        rho,
        torch.where(image_dominant, damped_v, one),
        torch.where(image_dominant, one, damped_l),
    )


def one_versus_rest_coefficients(
    s: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ρ, k) for M ≥ 2 scores ``s``: ρ_m = s_m / mean_{j≠m} s_j, k_m = 1 − tanh(α ρ_m)
    where ρ_m > 1, else 1 (SPEC section 6). A zero rest with a positive s_m is infinitely
    dominant (k = 0); all zero counts as balanced (ρ = 1).

    Args:
        s: The scores ``[M]``.
        alpha: α.

    Returns:
        (ρ ``[M]``, k ``[M]``).
    """
    rest = (s.sum() - s) / (s.numel() - 1)
    inf = torch.full_like(s, float("inf"))
    rho = torch.where(rest > 0, s / rest, torch.where(s > 0, inf, torch.ones_like(s)))
    big = torch.finfo(rho.dtype).max
    damped = 1 - torch.tanh(alpha * rho.clamp_max(big))
    return rho, torch.where(rho > 1, damped, torch.ones_like(rho))


def ogm_ge_coefficients(
    s: torch.Tensor, alpha: float, tie_damps_first: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ρ clamped at 1e6 for the log, k [M]) from the scores [s_1, .., s_M]: the official
    two-modality rule (ρ of the first only, :func:`ogm_coefficients`), one versus rest
    (:func:`one_versus_rest_coefficients`) for more.

    Args:
        s: The scores ``[M]``.
        alpha: α.
        tie_damps_first: At a two-modality tie damp the first.

    Returns:
        (ρ, k ``[M]``).
    """
    if s.numel() == 2:
        rho, k_v, k_l = ogm_coefficients(s[0], s[1], alpha, tie_damps_first)
        return rho.clamp_max(1e6).unsqueeze(0), torch.stack([k_v, k_l])
    rho, k = one_versus_rest_coefficients(s, alpha)
    return rho.clamp_max(1e6), k


def official_unimodal_logits(model, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """z_m as the official code computes them for its scores: the output layer's columns
    of modality m with an equal share of its bias, W_m h_m + b/M (``fusion_bias="half"``;
    M = 2: half the bias each).

    Args:
        model: The model (its ``readout()``).
        h: The embeddings ``{modality: h_m}``.

    Returns:
        ``{modality: z_m}``.

    Raises:
        ConfigError: The model has no readout.
    """
    readout = getattr(model, "readout", None)
    layer = readout() if callable(readout) else None
    if layer is None:
        raise ConfigError(
            "ogm_ge fusion_bias='half': the official half-bias unimodal logits need a head "
            "whose logits are additive over modalities, z = Σ_m W[:, cols_m] h_m + b: in "
            "balgrad's models, concat or sum fusion with a linear classifier (--fusion "
            f"concat|sum, --head-hidden 0); {type(model).__name__} declares none "
            "(readout() is missing or returns None; a model of your own can return a "
            "balgrad.models.Readout from readout()). Use fusion_bias='full'."
        )
    w = widen(layer.weight.detach())
    b = None if layer.bias is None else widen(layer.bias.detach()) / len(h)
    return {m: F.linear(widen(v).to(w.dtype), w[:, layer.columns[m]], b) for m, v in h.items()}


class OGMGE(Strategy):
    """See the module docstring. Options:

    Args:
        alpha: α of the coefficient (0.1, the original README).
        modulation_start, modulation_end: the epochs (inclusive) that are modulated;
            ``modulation_end=None`` is ``num_epochs // 2`` (the official 0..50 of 100
            epochs), or every epoch when the loop gives no epoch count.
        noise: add the GE noise (False: plain OGM).
        seed: seeds the noise generator together with the step.
        scale_params: ``"matrices"`` (every parameter with ≥ 2 dims) or ``"conv4d"``
            (only 4-D ones, the official code).
        fusion_bias: ``"full"`` (the model's unimodal logits) or ``"half"`` (the official
            half-bias logits; concat or sum fusion with a linear head only).
        semantics: ``"balgrad"`` (SPEC section 3's reading) or ``"official"`` (the official
            ``main.py``: ``scale_params="conv4d"``, ``fusion_bias="half"`` unless given,
            and its tie rule).
    """

    name = "ogm_ge"
    statistics = statistics(
        "OGM-GE", ["loss_task", "modulated"], ["loss", "score", "ratio", "coef"]
    )

    @validated
    def __init__(
        self,
        *,
        alpha: NonNegative = 0.1,
        modulation_start: Epoch = 0,
        modulation_end: Epoch | None = None,
        noise: bool = True,
        seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0,
        scale_params: Literal["matrices", "conv4d"] | None = None,
        fusion_bias: Literal["full", "half"] | None = None,
        semantics: Literal["balgrad", "official"] = "balgrad",
    ):
        super().__init__()
        check_window(modulation_start, modulation_end)
        implied_scale, implied_bias = SEMANTICS[semantics]
        scale_params = implied_scale if scale_params is None else scale_params
        fusion_bias = implied_bias if fusion_bias is None else fusion_bias
        self.alpha = float(alpha)
        self.modulation_start = int(modulation_start)
        self.modulation_end = modulation_end
        self.noise = bool(noise)
        self.seed = int(seed)
        self.scale_params = scale_params
        self.fusion_bias = fusion_bias
        self.semantics = semantics

    def active(self) -> bool:
        """Whether this epoch is in the modulation window (by default the first half of the
        run, as the official code).

        Returns:
            True inside the window.
        """
        end = self.modulation_end
        if end is None:
            end = float("inf") if self.num_epochs is None else self.num_epochs // 2
        return in_window(self.epoch, self.modulation_start, end)

    def modulates(self, p: torch.nn.Parameter) -> bool:
        """Whether ``scale_params`` covers this parameter.

        Args:
            p: A tower parameter.

        Returns:
            True for 4-d (``"conv4d"``) or ≥ 2-d tensors.
        """
        return p.dim() == 4 if self.scale_params == "conv4d" else p.dim() >= 2

    def scores(self, model, output, target, sync) -> torch.Tensor:
        """[s_1, .., s_M]: batch sums of the true-class probability, summed over ranks
        through ``sync``.

        Args:
            model: The model.
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels.
            sync: The gradient sync.

        Returns:
            The scores ``[M]``.
        """
        with torch.no_grad():
            if self.fusion_bias == "half":
                z = official_unimodal_logits(model, output.embeddings)
            else:
                z = output.unimodal
            probs = [true_class_prob(v, target, model.task) for v in z.values()]
            return sync.sum(torch.stack([p.sum() for p in probs]))

    def coefficients(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ρ clamped at 1e6 for the log, k) from the scores (:func:`ogm_ge_coefficients`
        with this strategy's α and tie rule).

        Args:
            s: The scores ``[M]``.

        Returns:
            (ρ, k ``[M]``).
        """
        return ogm_ge_coefficients(s, self.alpha, self.semantics == "official")

    def compute(self, model, output, target, ctx):
        """One step: L_T's gradient, the scores and coefficients k_m, and inside the window
        g ← g k_m (+ Gaussian noise under GE) on each modality's modulated parameters.
        """
        loss = checked_loss("task loss L_T", task_loss(output.logits, target, model.task))
        params = ctx.layout.params
        grads = ctx.loss_grads(loss, params)
        modalities = self.modalities(model)

        ratio, k = self.coefficients(self.scores(model, output, target, ctx.sync))
        active = self.active()
        if active:
            coefs = dict(zip(modalities, k.unbind()))
            self.modulate(ctx.layout.groups, params, grads, coefs, ctx.loss_scale(loss), ctx.step)
        add_to_grads_(params, grads)
        return {
            "loss_task": loss.detach(),
            **self.unimodal_monitor(model, output, target),
            **{stat_name("ratio", m): ratio[i] for i, m in enumerate(modalities[: ratio.numel()])},
            **{stat_name("coef", m): k[i] for i, m in enumerate(modalities)},
            "modulated": torch.full((), float(active), device=k.device),
        }

    def modulate(self, groups, params, grads, coefs, scale, step) -> None:
        """g ← g k_m (+ noise drawn for ``step``) in place on the modulated parameters'
        gradients; ``groups``: the model's parameter groups.

        Args:
            groups: The model's parameter groups.
            params: The parameters ``grads`` belong to.
            grads: Their gradients.
            coefs: ``{modality: k_m}``.
            scale: The GradScaler's scale, or None.
            step: The step (the noise's seed).
        """
        index = {id(p): i for i, p in enumerate(params)}
        by_group = []
        for group, k in coefs.items():
            chosen = [index.get(id(p)) for p in groups[group]]
            gs = [
                grads[i]
                for i in chosen
                if i is not None and grads[i] is not None and self.modulates(params[i])
            ]
            if gs:
                by_group.append((k, gs))
        every = [g for _, gs in by_group for g in gs]
        if not every:
            return
        noise = self.draw_noise(every, scale, step) if self.noise else None
        for k, gs in by_group:
            torch._foreach_mul_(gs, k)
        if noise is not None:
            torch._foreach_add_(every, noise)

    def draw_noise(self, gs: list[torch.Tensor], scale: torch.Tensor | None, step: int):
        """N(0, std(g) + 1e-8) per gradient, std taken before scaling: one draw for all.

        Args:
            gs: The gradients.
            scale: The GradScaler's scale where they are scaled, else None.
            step: The step (seeds the draw, so a resumed run draws the same).

        Returns:
            One noise tensor per gradient.
        """
        stds = torch.stack([_std(g) for g in gs])
        eps = NOISE_EPS if scale is None else NOISE_EPS * scale.to(stds.dtype)
        stds = stds + eps
        gen = torch.Generator(device=gs[0].device)
        gen.manual_seed(self.seed * 1_000_003 + step)
        dtype = gs[0].dtype if all(g.dtype == gs[0].dtype for g in gs) else torch.float32
        flat = torch.randn(
            sum(g.numel() for g in gs), generator=gen, device=gs[0].device, dtype=dtype
        )
        noise = [n.view_as(g) for n, g in zip(flat.split([g.numel() for g in gs]), gs)]
        torch._foreach_mul_(noise, list(stds.to(dtype).unbind()))
        return noise


def _std(g: torch.Tensor) -> torch.Tensor:
    """Unbiased std as ``Tensor.std()``; 0 for a single entry (where it is undefined)."""
    return g.std() if g.numel() > 1 else g.new_zeros(())
