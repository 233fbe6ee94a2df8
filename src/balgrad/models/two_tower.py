"""The two-tower vision-language classifier of SPEC section 1.

    u_v = B_v(x_v), u_l = B_l(x_l)     backbones (frozen or trainable)
    h_v = E_v(u_v), h_l = E_l(u_l)     embedding layers, R^d each
    z   = f_T(F(h_v, h_l))             fusion F, classifier f_T

Unimodal logits use the same head with the other embedding zeroed, with the head's
parameters detached, so unimodal and KL losses never update theta_T
(``unimodal_head="shared"``); or two extra linear heads (``"separate"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from balgrad.errors import ConfigError
from balgrad.models.fusion import create_fusion
from balgrad.tasks import check_task

UNIMODAL_HEADS = ("shared", "separate")


@dataclass
class ModelOutput:
    logits: torch.Tensor  # z, fused
    logits_image: torch.Tensor  # z_v
    logits_text: torch.Tensor  # z_l
    h_image: torch.Tensor  # h_v
    h_text: torch.Tensor  # h_l
    # the raw inputs, for strategies that re-run a tower on a blank input (AGM zero="input")
    image_input: Any = None
    text_input: Any = None


class ClassifierHead(nn.Module):
    """F followed by f_T: theta_T."""

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

    def forward(self, h_v: torch.Tensor, h_l: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fusion(h_v, h_l))


class TwoTowerModel(nn.Module):
    """Image and text towers, fusion and a classifier head; see the module docstring.

    Args:
        image_encoder, text_encoder: modules mapping a batch of inputs to
            ``[B, out_dim]`` (``out_dim`` attribute). Their parameters join theta_v /
            theta_l when they require grad (fine-tuning) and are left out when frozen.
        num_classes: number of classes (labels, for multi-label).
        task: ``"single_label"`` or ``"multi_label"``.
        embed_dim: d, the size of h_v and h_l.
        fusion: ``"concat"``, ``"sum"`` or ``"attention"``.
        unimodal_head: ``"shared"`` (detached f_T) or ``"separate"``.
        head_hidden: 0 for a linear f_T, else the width of one hidden layer.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        num_classes: int,
        task: str = "single_label",
        embed_dim: int = 128,
        fusion: str = "concat",
        unimodal_head: str = "shared",
        head_hidden: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if unimodal_head not in UNIMODAL_HEADS:
            raise ConfigError(
                f"unimodal_head: unknown value {unimodal_head!r}; expected one of {UNIMODAL_HEADS}"
            )
        if num_classes < 2 and task == "single_label":
            raise ConfigError(f"num_classes: need at least 2 classes, got {num_classes}")
        self.task = check_task(task)
        self.num_classes = num_classes
        self.unimodal_head = unimodal_head
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_embedding = nn.Sequential(
            nn.Linear(image_encoder.out_dim, embed_dim), nn.GELU(), nn.Dropout(dropout)
        )
        self.text_embedding = nn.Sequential(
            nn.Linear(text_encoder.out_dim, embed_dim), nn.GELU(), nn.Dropout(dropout)
        )
        self.head = ClassifierHead(
            create_fusion(fusion, embed_dim), num_classes, head_hidden, dropout
        )
        if unimodal_head == "separate":
            self.image_head = nn.Linear(embed_dim, num_classes)
            self.text_head = nn.Linear(embed_dim, num_classes)

    # -- the pieces strategies call -------------------------------------------------
    def embed(
        self,
        image,
        text,
        drop_image: torch.Tensor | None = None,
        drop_text: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_v, h_l). ``drop_*`` (bool [B]) zero that sample's embedding ("missing = embedding")."""
        h_v = self.image_embedding(self.image_encoder(image))
        h_l = self.text_embedding(self.text_encoder(text))
        if drop_image is not None:
            h_v = h_v * (~drop_image).to(h_v.dtype).unsqueeze(-1)
        if drop_text is not None:
            h_l = h_l * (~drop_text).to(h_l.dtype).unsqueeze(-1)
        return h_v, h_l

    def classify(
        self, h_v: torch.Tensor, h_l: torch.Tensor, detach_head: bool = False
    ) -> torch.Tensor:
        """f_T(F(h_v, h_l)); with ``detach_head`` no gradient reaches theta_T."""
        if not detach_head:
            return self.head(h_v, h_l)
        frozen = {n: p.detach() for n, p in self.head.named_parameters()}
        frozen.update(dict(self.head.named_buffers()))
        return functional_call(self.head, frozen, (h_v, h_l))

    def unimodal_logits(
        self, h_v: torch.Tensor, h_l: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.unimodal_head == "separate":
            return self.image_head(h_v), self.text_head(h_l)
        z_v = self.classify(h_v, torch.zeros_like(h_l), detach_head=True)
        z_l = self.classify(torch.zeros_like(h_v), h_l, detach_head=True)
        return z_v, z_l

    def blank_embeddings(self, image, text) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_v, h_l) of one blank input per tower, each [1, d] (AGM's official input
        zeroing). Blank image: zeros shaped like one sample of ``image``, the tensor the
        model is fed (normalised pixels or cached features), which is what the official
        code zeroes. Blank text: the tokenizer's encoding of "" (a token id of 0 is an
        arbitrary vocabulary entry, and an all-zero attention mask attends to nothing);
        zeros when the text input is a tensor (cached features). The towers run in eval
        mode, as the official code runs these passes; gradients flow."""
        with _eval_mode(
            self.image_encoder, self.image_embedding, self.text_encoder, self.text_embedding
        ):
            return self.embed(torch.zeros_like(image[:1]), self._blank_text(text))

    def _blank_text(self, text):
        if not isinstance(text, Mapping):
            return torch.zeros_like(text[:1])
        tokenize = getattr(self.text_encoder, "tokenize", None)
        if tokenize is None:
            raise ConfigError(
                "blank text input: the text encoder has no tokenize(), so an empty text "
                "cannot be encoded; use AGM's zero='embedding'"
            )
        device = next(iter(text.values())).device
        return {k: v.to(device) for k, v in tokenize([""]).items()}

    def forward(self, image, text, drop_image=None, drop_text=None) -> ModelOutput:
        h_v, h_l = self.embed(image, text, drop_image, drop_text)
        z = self.classify(h_v, h_l)
        z_v, z_l = self.unimodal_logits(h_v, h_l)
        return ModelOutput(z, z_v, z_l, h_v, h_l, image_input=image, text_input=text)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """theta_v ("image"), theta_l ("text"), theta_T ("head") and, with separate
        unimodal heads, their parameters ("unimodal_heads"). Frozen parameters are left out."""

        def trainable(*modules: nn.Module) -> list[nn.Parameter]:
            return [p for m in modules for p in m.parameters() if p.requires_grad]

        groups = {
            "image": trainable(self.image_embedding, self.image_encoder),
            "text": trainable(self.text_embedding, self.text_encoder),
            "head": trainable(self.head),
        }
        if self.unimodal_head == "separate":
            groups["unimodal_heads"] = trainable(self.image_head, self.text_head)
        return groups


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
