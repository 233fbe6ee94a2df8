"""The two-tower vision-language classifier of SPEC section 1: the (image, text) case of
:class:`~balgrad.models.multimodal.MultimodalModel`.

    u_v = B_v(x_v), u_l = B_l(x_l)     backbones (frozen or trainable)
    h_v = E_v(u_v), h_l = E_l(u_l)     embedding layers, R^d each
    z   = f_T(F(h_v, h_l))             fusion F, classifier f_T

Besides the named form every model takes (``model({"image": x_v, "text": x_l})``), it
keeps the positional one, ``model(image, text, drop_image, drop_text)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from balgrad.models.multimodal import (
    UNIMODAL_HEADS,
    ClassifierHead,
    ModelOutput,
    MultimodalModel,
    Readout,
)

MODALITIES = ("image", "text")

__all__ = [
    "MODALITIES",
    "UNIMODAL_HEADS",
    "ClassifierHead",
    "ModelOutput",
    "Readout",
    "TwoTowerModel",
]


class TwoTowerModel(MultimodalModel):
    """Image and text towers, fusion and a classifier head: the ``("image", "text")``
    case of :class:`~balgrad.models.multimodal.MultimodalModel`, whose other arguments
    it takes.

    Args:
        image_encoder, text_encoder: modules mapping a batch of inputs to
            ``[B, out_dim]`` (``out_dim`` attribute). Their parameters join θ_v /
            θ_l when they require grad (fine-tuning) and are left out when frozen.
        num_classes, task, embed_dim, fusion, unimodal_head, head_hidden, dropout: as
            :class:`~balgrad.models.multimodal.MultimodalModel` takes them.
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
        super().__init__(
            {"image": image_encoder, "text": text_encoder},
            num_classes,
            task=task,
            embed_dim=embed_dim,
            fusion=fusion,
            unimodal_head=unimodal_head,
            head_hidden=head_hidden,
            dropout=dropout,
        )

    def forward(
        self,
        image: Any,
        text: Any = None,
        drop_image: torch.Tensor | None = None,
        drop_text: torch.Tensor | None = None,
        *,
        drop: Mapping[str, torch.Tensor | None] | None = None,
    ) -> ModelOutput:
        """``model({"image": x_v, "text": x_l}, drop={...})`` or, as before modalities
        were named, ``model(x_v, x_l, drop_image, drop_text)``."""
        if isinstance(image, Mapping) and text is None and "image" in image:
            return super().forward(image, drop)
        drops = {"image": drop_image, "text": drop_text, **(drop or {})}
        return super().forward({"image": image, "text": text}, drops)
