"""A classifier over any number of named modalities (SPEC sections 1 and 6).

    h_m = E_m(B_m(x_m))              one tower per modality m (backbone B_m, embedding E_m)
    z   = f_T(F(h_1, .., h_M))        fusion F, classifier f_T
    z_m = f_T(F(0, .., h_m, .., 0))   unimodal logits, θ_T detached

Modalities are named (``audio``, ``visual``, ``image``, ``text``, ...) and keep the order
they are given in: that order fixes the layout of concat fusion, the attention tokens and
the parameter groups. Inputs, embeddings, unimodal logits and parameter groups are all
keyed by name. With ``unimodal_head="separate"`` each modality has its own linear head,
trained by the unimodal losses, instead of the detached shared one.

The modules of modality ``m`` are the attributes ``m_encoder``, ``m_embedding`` and (with
separate heads) ``m_head``, so that a state dict names its tensors by modality
(``audio_encoder.conv1.weight``); an (image, text) model's state dicts keep the keys they
had before modalities were named.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from balgrad.errors import ConfigError
from balgrad.models._fusion import create_fusion
from balgrad.names import PARAMETER_GROUPS, check_modality_names
from balgrad.tasks import check_task

UNIMODAL_HEADS = ("shared", "separate")
#: parameter-group names that no modality may take
RESERVED = PARAMETER_GROUPS.global_


def check_modalities(names: Iterable[str]) -> tuple[str, ...]:
    """The modality names as a tuple, or a ConfigError naming the bad one: at least two,
    distinct, ASCII identifiers (they name attributes and statistics), none clashing with
    a name balgrad builds (:data:`RESERVED` parameter groups, ``task`` for the task
    loss, ...): :func:`balgrad.names.check_modality_names`.

    Args:
        names: The modality names.

    Returns:
        The names, as a tuple.

    Raises:
        ConfigError: Fewer than two, a duplicate, a bad or reserved name.
    """
    return check_modality_names(names, "modalities")


@dataclass
class ModelOutput:
    """What a forward pass gives a strategy: fused logits z, and per modality (keyed by
    name, in the model's order) the unimodal logits z_m, the embedding h_m and the raw
    input x_m (for strategies that re-run a tower on a blank input: AGM ``zero="input"``)."""

    logits: torch.Tensor
    unimodal: dict[str, torch.Tensor]
    embeddings: dict[str, torch.Tensor]
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names, in the model's order."""
        return tuple(self.unimodal)


@dataclass(frozen=True)
class Readout:
    """The output layer of a head whose logits are additive over modalities:
    z = Σ_m W[:, cols_m] h_m + b. What OGM-GE's official half-bias unimodal logits and
    AGM's clip trigger need from a head, declared instead of guessed from its modules.
    ``columns[m]`` is the slice of ``weight``'s columns that multiplies h_m (with sum
    fusion every modality has all of them)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    columns: Mapping[str, slice]


class ClassifierHead(nn.Module):
    """F followed by f_T: θ_T. Called with the embeddings in the model's modality order.

    Args:
        fusion: The fusion F (its ``out_dim`` is the classifier's input size).
        num_classes: The number of classes (labels, for multi-label).
        hidden: 0 for a linear f_T, else the width of one hidden layer.
        dropout: The dropout rate before the output layer.
    """

    def __init__(self, fusion: nn.Module, num_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.fusion = fusion
        if hidden > 0:
            self.classifier = nn.Sequential(
                nn.Linear(fusion.out_dim, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(fusion.out_dim, num_classes)
            )

    def forward(self, *hs: torch.Tensor) -> torch.Tensor:
        """f_T(F(h_1, .., h_M)): the fused logits ``[B, classes]`` of the embeddings, each
        ``[B, d]``, in the model's modality order.
        """
        return self.classifier(self.fusion(*hs))


class MultimodalModel(nn.Module):
    """One tower per named modality, fusion and a classifier head; see the module docstring.

    Args:
        encoders: modality name → module mapping a batch of that modality's inputs to
            ``[B, out_dim]`` (``out_dim`` attribute). Its parameters join θ_m when they
            require grad (fine-tuning) and are left out when frozen. The mapping's order
            is the modalities' order.
        num_classes: number of classes (labels, for multi-label).
        task: ``"single_label"`` or ``"multi_label"``.
        embed_dim: d, the size of every h_m.
        fusion: ``"concat"``, ``"sum"`` or ``"attention"`` (or a registered fusion).
        unimodal_head: ``"shared"`` (detached f_T) or ``"separate"``.
        head_hidden: 0 for a linear f_T, else the width of one hidden layer.
        dropout: the dropout rate of each modality's embedding layer and of the head.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        num_classes: int,
        task: str = "single_label",
        embed_dim: int = 128,
        fusion: str = "concat",
        unimodal_head: str = "shared",
        head_hidden: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not isinstance(encoders, Mapping):
            raise ConfigError(
                "encoders: expected a mapping of modality name to encoder module, e.g. "
                "{'audio': audio_net, 'visual': visual_net}"
            )
        self.modalities = check_modalities(encoders)
        if unimodal_head not in UNIMODAL_HEADS:
            raise ConfigError(
                f"unimodal_head: unknown value {unimodal_head!r}; expected one of {UNIMODAL_HEADS}"
            )
        self.task = check_task(task)
        if num_classes < 2 and task == "single_label":
            raise ConfigError(f"num_classes: need at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.unimodal_head = unimodal_head
        self.fusion_name = fusion
        # construction order (encoders, embeddings, head, separate heads) fixes the
        # parameters' initial values under a seed: keep it
        for m, encoder in encoders.items():
            if not isinstance(getattr(encoder, "out_dim", None), int):
                raise ConfigError(
                    f"encoders[{m!r}]: {type(encoder).__name__} needs an integer out_dim "
                    "attribute (the size of its output features)"
                )
            setattr(self, f"{m}_encoder", encoder)
        for m in self.modalities:
            setattr(
                self,
                f"{m}_embedding",
                nn.Sequential(
                    nn.Linear(encoders[m].out_dim, embed_dim), nn.GELU(), nn.Dropout(dropout)
                ),
            )
        self.head = ClassifierHead(
            create_fusion(fusion, embed_dim, num_modalities=len(self.modalities)),
            num_classes,
            head_hidden,
            dropout,
        )
        if unimodal_head == "separate":
            for m in self.modalities:
                setattr(self, f"{m}_head", nn.Linear(embed_dim, num_classes))

    # -- per-modality modules -----------------------------------------------------------
    @property
    def encoders(self) -> dict[str, nn.Module]:
        """Each modality's encoder, by name."""
        return {m: getattr(self, f"{m}_encoder") for m in self.modalities}

    @property
    def embeddings(self) -> dict[str, nn.Module]:
        """Each modality's embedding layer (encoder output -> h_m), by name."""
        return {m: getattr(self, f"{m}_embedding") for m in self.modalities}

    def _inputs(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        if not isinstance(inputs, Mapping):
            raise ConfigError(
                f"inputs: expected a mapping of modality name to input, got "
                f"{type(inputs).__name__} (modalities: {list(self.modalities)})"
            )
        missing = [m for m in self.modalities if m not in inputs]
        extra = [k for k in inputs if k not in self.modalities]
        if missing or extra:
            raise ConfigError(
                f"inputs: the model's modalities are {list(self.modalities)}; "
                + (f"missing {missing}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unknown {extra}" if extra else "")
            )
        return inputs

    # -- the pieces strategies call -------------------------------------------------------
    def embed(
        self, inputs: Mapping[str, Any], drop: Mapping[str, torch.Tensor | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """h_m for every modality. ``drop[m]`` (bool [B]) zeroes that sample's h_m
        ("missing = embedding").

        Args:
            inputs: ``{modality: x_m}``.
            drop: ``{modality: bool [B]}`` of the samples whose modality is missing.

        Returns:
            ``{modality: h_m}``, each ``[B, d]``.

        Raises:
            ConfigError: ``inputs`` misses a modality, or ``drop`` names an unknown one.
        """
        inputs = self._inputs(inputs)
        drop = drop or {}
        unknown = [k for k in drop if k not in self.modalities]
        if unknown:
            raise ConfigError(
                f"drop: unknown modalities {unknown}; the model has {list(self.modalities)}"
            )
        hs = {}
        for m in self.modalities:
            h = getattr(self, f"{m}_embedding")(getattr(self, f"{m}_encoder")(inputs[m]))
            mask = drop.get(m)
            if mask is not None:
                h = h * (~mask).to(h.dtype).unsqueeze(-1)
            hs[m] = h
        return hs

    def _ordered(self, h: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        if set(h) != set(self.modalities):
            raise ConfigError(
                f"embeddings: expected one per modality {list(self.modalities)}, got {list(h)}"
            )
        return [h[m] for m in self.modalities]

    def classify(self, h: Mapping[str, torch.Tensor], detach_head: bool = False) -> torch.Tensor:
        """f_T(F(h_1, .., h_M)); with ``detach_head`` no gradient reaches θ_T.

        Args:
            h: ``{modality: h_m}``, each ``[B, d]``.
            detach_head: Run f_T without gradient to its parameters.

        Returns:
            The fused logits ``[B, classes]``.
        """
        hs = self._ordered(h)
        if not detach_head:
            return self.head(*hs)
        frozen = {n: p.detach() for n, p in self.head.named_parameters()}
        frozen.update(dict(self.head.named_buffers()))
        return functional_call(self.head, frozen, tuple(hs))

    def unimodal_logits(self, h: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """z_m for every modality: the detached head with every other embedding zeroed,
        or modality m's own head.

        Args:
            h: ``{modality: h_m}``.

        Returns:
            ``{modality: z_m}``.
        """
        if self.unimodal_head == "separate":
            return {m: getattr(self, f"{m}_head")(h[m]) for m in self.modalities}
        return {
            m: self.classify(
                {k: h[k] if k == m else torch.zeros_like(h[k]) for k in self.modalities},
                detach_head=True,
            )
            for m in self.modalities
        }

    def blank_embeddings(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """h_m of one blank input per modality, each [1, d] (AGM's official input zeroing).

        The blank input is the encoder's ``blank_input(like)`` where it has one; else, for a
        tensor input, zeros shaped like one sample (normalised pixels, a spectrogram or
        cached features: what the official code zeroes); for a tokenised text (a mapping of
        tensors), the encoder's ``tokenize([""])`` (a token id of 0 is an arbitrary
        vocabulary entry, and an all-zero attention mask attends to nothing). The towers run
        in eval mode, as the official code runs these passes; gradients flow.

        Args:
            inputs: A batch of the model's inputs (one sample's shape is taken from it).

        Returns:
            ``{modality: h_m}``, each ``[1, d]``.
        """
        inputs = self._inputs(inputs)
        modules = [mod for m in self.modalities for mod in (self.encoders[m], self.embeddings[m])]
        with _eval_mode(*modules):
            return self.embed({m: self._blank_input(m, inputs[m]) for m in self.modalities})

    def _blank_input(self, modality: str, like: Any) -> Any:
        encoder = self.encoders[modality]
        blank = getattr(encoder, "blank_input", None)
        if blank is not None:
            return blank(like)
        if isinstance(like, torch.Tensor):
            return torch.zeros_like(like[:1])
        if isinstance(like, Mapping):
            tokenize = getattr(encoder, "tokenize", None)
            if tokenize is None:
                raise ConfigError(
                    f"blank {modality} input: the {modality} encoder has no tokenize() or "
                    "blank_input(), so a blank input cannot be made; use AGM's zero='embedding'"
                )
            device = next(iter(like.values())).device
            return {k: v.to(device) for k, v in tokenize([""]).items()}
        raise ConfigError(
            f"blank {modality} input: cannot blank a {type(like).__name__}; give the encoder a "
            "blank_input(like) method, or use AGM's zero='embedding'"
        )

    def readout(self) -> Readout | None:
        """The head's output layer and each modality's columns of it, where the logits are
        additive over modalities (concat or sum fusion with a linear classifier); None
        otherwise.

        Returns:
            The :class:`~balgrad.models._multimodal.Readout`, or None.
        """
        fusion = self.head.fusion
        linears = [m for m in self.head.classifier if isinstance(m, nn.Linear)]
        columns = getattr(fusion, "columns", None)
        if columns is None or len(linears) != 1:
            return None
        return Readout(linears[0].weight, linears[0].bias, dict(zip(self.modalities, columns())))

    def forward(
        self, inputs: Mapping[str, Any], drop: Mapping[str, torch.Tensor | None] | None = None
    ) -> ModelOutput:
        """Run the model: the embeddings (:meth:`embed`), the fused logits (:meth:`classify`)
        and the unimodal logits (:meth:`unimodal_logits`).

        Args:
            inputs: ``{modality: x_m}``.
            drop: ``{modality: bool [B]}`` of the samples whose modality is missing (its h_m
                is zeroed).

        Returns:
            The :class:`ModelOutput`.
        """
        h = self.embed(inputs, drop)
        z = self.classify(h)
        return ModelOutput(z, self.unimodal_logits(h), h, dict(inputs))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One group per modality (θ_m: its embedding and trainable encoder), ``"head"``
        (θ_T) and, with separate unimodal heads, ``"unimodal_heads"``. Frozen parameters
        are left out.

        Returns:
            ``{modality: θ_m, ..., "head": θ_T}`` (and ``"unimodal_heads"``).
        """
        groups = {
            m: _trainable(getattr(self, f"{m}_embedding"), getattr(self, f"{m}_encoder"))
            for m in self.modalities
        }
        groups["head"] = _trainable(self.head)
        if self.unimodal_head == "separate":
            groups["unimodal_heads"] = _trainable(
                *(getattr(self, f"{m}_head") for m in self.modalities)
            )
        return groups


def _trainable(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module):
    """Every submodule in eval mode for the block, each training flag restored after."""
    flags = [(m, m.training) for top in modules for m in top.modules()]
    for m, _ in flags:
        m.training = False
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag
