"""An existing multimodal model declared to the strategy contract, unmodified.

A model from another codebase (the official OGM-GE ``AVClassifier``, say) already has
its towers and its fusion head; what a strategy needs is to know which is which. Three
declarations do it, with no subclass and no change to the model::

    model = DeclaredModel(
        av,                                                   # the model, as it is
        encoders={"audio": encode_audio, "visual": encode_visual},  # (av, x_m) -> h_m [B, d]
        head=lambda av, h: av.fusion_module(h["audio"], h["visual"])[2],  # (av, {m: h_m}) -> z
        groups={"audio": av.audio_net, "visual": av.visual_net, "head": av.fusion_module},
    )
    output = model({"audio": spec, "visual": frames})       # a ModelOutput

The unimodal logits z_m are the head with every other embedding zeroed and the head's
parameters detached (SPEC section 6), as :class:`MultimodalModel` computes them. The
encoders and the head are given the model as their first argument rather than closing
over it, so a copy of the declared model (``copy.deepcopy``) runs its own modules. Every
trainable parameter of the model must be in exactly one group: a parameter left out
would be trained by no strategy, so it is refused here, naming it. The model stays a
submodule (``declared.model``), so its own state dict and checkpoints load as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from balgrad.errors import ConfigError
from balgrad.models._multimodal import ModelOutput, Readout, check_modalities

GroupSpec = nn.Module | nn.Parameter | Sequence[nn.Module | nn.Parameter]
EXTRA_GROUPS = ("head", "unimodal_heads")
EncoderFn = Callable[[nn.Module, Any], torch.Tensor]
HeadFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


class _HeadCall(nn.Module):
    """Runs ``head(h)`` as a module whose parameters are the declared model's, so that
    :func:`torch.func.functional_call` can swap the head's for detached copies."""

    def __init__(self, model: nn.Module, head: HeadFn):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, h: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.model, h)


class DeclaredModel(nn.Module):
    """See the module docstring.

    Args:
        model: the existing model; its trainable parameters are grouped by ``groups``.
        encoders: per modality, in order, ``fn(model, x_m) -> h_m`` ``[B, d_m]``: the
            model's tower with whatever pooling and reshaping its forward does.
        head: ``fn(model, {m: h_m}) -> z``, the fused logits.
        groups: per modality and ``"head"`` (optionally ``"unimodal_heads"``), the
            submodules or parameters of ``model`` that form θ_m and θ_T.
        task: ``"single_label"`` or ``"multi_label"``.
        readout: ``fn(model) -> Readout``: the head's output layer and each modality's
            columns of it, for OGM-GE's ``fusion_bias="half"``.

    Raises:
        ConfigError: a group key that is no modality, a modality without a group, a
            parameter in two groups or in none, or a group outside ``model``.
    """

    def __init__(
        self,
        model: nn.Module,
        encoders: Mapping[str, EncoderFn],
        head: HeadFn,
        groups: Mapping[str, GroupSpec],
        *,
        task: str = "single_label",
        readout: Callable[[nn.Module], Readout] | None = None,
    ):
        super().__init__()
        self.model = model
        self.modalities = check_modalities(encoders)
        self.task = task
        self._encoders = dict(encoders)
        self._head = head
        self._readout = readout
        self._groups = _resolve_groups(model, self.modalities, groups)
        names = {id(p): n for n, p in model.named_parameters()}
        self._head_names = ["model." + names[id(p)] for p in self._groups["head"]]
        # not a registered submodule: its parameters are the model's, listed once
        object.__setattr__(self, "_head_call", _HeadCall(model, head))

    def embed(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """h_m for every modality, through the declared encoders.

        Args:
            inputs: ``{modality: x_m}``.

        Returns:
            ``{modality: h_m}``.

        Raises:
            ConfigError: ``inputs`` misses a modality.
        """
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise ConfigError(f"inputs: no {missing} (the model's modalities: {self.modalities})")
        return {m: self._encoders[m](self.model, inputs[m]) for m in self.modalities}

    def classify(self, h: Mapping[str, torch.Tensor], detach_head: bool = False) -> torch.Tensor:
        """The declared head on ``{m: h_m}``; with ``detach_head`` no gradient reaches θ_T.

        Args:
            h: ``{modality: h_m}``.
            detach_head: Run the head without gradient to θ_T.

        Returns:
            The fused logits.
        """
        h = {m: h[m] for m in self.modalities}
        if not detach_head:
            return self._head(self.model, h)
        params = dict(self._head_call.named_parameters())
        frozen = {n: params[n].detach() for n in self._head_names}
        return functional_call(self._head_call, frozen, (h,), strict=False)

    def unimodal_logits(self, h: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """z_m: the detached head with every other embedding zeroed.

        Args:
            h: ``{modality: h_m}``.

        Returns:
            ``{modality: z_m}``.
        """
        return {
            m: self.classify(
                {k: h[k] if k == m else torch.zeros_like(h[k]) for k in self.modalities},
                detach_head=True,
            )
            for m in self.modalities
        }

    def forward(self, inputs: Mapping[str, Any]) -> ModelOutput:
        """Run the declared encoders and head.

        Args:
            inputs: ``{modality: x_m}``.

        Returns:
            The :class:`~balgrad.models._multimodal.ModelOutput`.
        """
        h = self.embed(inputs)
        return ModelOutput(self.classify(h), self.unimodal_logits(h), h, dict(inputs))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The declared groups (trainable parameters only).

        Returns:
            ``{modality: θ_m, ..., "head": θ_T}``.
        """
        return {k: list(v) for k, v in self._groups.items()}

    def readout(self) -> Readout | None:
        """The declared readout, where one was given.

        Returns:
            The :class:`~balgrad.models._multimodal.Readout`, or None.
        """
        return None if self._readout is None else self._readout(self.model)


def _resolve_groups(
    model: nn.Module, modalities: tuple[str, ...], groups: Mapping[str, GroupSpec]
) -> dict[str, list[nn.Parameter]]:
    """The groups' trainable parameters, checked to cover the model's exactly once."""
    allowed = (*modalities, *EXTRA_GROUPS)
    unknown = [k for k in groups if k not in allowed]
    lacking = [k for k in (*modalities, "head") if k not in groups]
    if unknown or lacking:
        raise ConfigError(
            f"groups: expected one per modality {list(modalities)} and 'head' (optionally "
            f"'unimodal_heads'); unknown {unknown}, missing {lacking}"
        )
    names = {id(p): n for n, p in model.named_parameters()}
    owner: dict[int, str] = {}
    resolved: dict[str, list[nn.Parameter]] = {}
    for key, spec in groups.items():
        params = []
        for p in _parameters(key, spec):
            if id(p) not in names:
                raise ConfigError(f"groups[{key!r}]: a parameter {tuple(p.shape)} not in the model")
            if not p.requires_grad or id(p) in {id(q) for q in params}:
                continue
            if id(p) in owner:
                raise ConfigError(
                    f"groups: {names[id(p)]!r} is in both {owner[id(p)]!r} and {key!r}"
                )
            owner[id(p)] = key
            params.append(p)
        resolved[key] = params
    left = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
    if left:
        raise ConfigError(
            f"groups: the trainable parameters {left[:5]}{' ...' if len(left) > 5 else ''} "
            "are in no group, so no strategy would train them; add their module to a "
            "modality's group or 'head', or freeze them (requires_grad=False)"
        )
    return resolved


def _parameters(key: str, spec: GroupSpec) -> list[nn.Parameter]:
    items = [spec] if isinstance(spec, nn.Module | nn.Parameter) else list(spec)
    out: list[nn.Parameter] = []
    for item in items:
        if isinstance(item, nn.Parameter):
            out.append(item)
        elif isinstance(item, nn.Module):
            out.extend(item.parameters())
        else:
            raise ConfigError(
                f"groups[{key!r}]: expected modules or parameters, got {type(item).__name__}"
            )
    return out
