"""A data collator for the framework integrations (no framework needed to import it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class ExampleCollator:
    """Collates balgrad ``Example``s (the items of a ``MultimodalDataset``, e.g.
    ``load_builtin("digits", "train")``) into the batch dict both integrations take:
    ``{"image": pixels [B, C, H, W], "text": token ids (a dict), "labels": [B] or [B, C]}``,
    through the encoders' own ``preprocess`` (pixels) and ``tokenize`` (texts).

    Use it as a ``DataLoader``'s ``collate_fn`` (Lightning) or a ``Trainer``'s
    ``data_collator`` (Hugging Face).
    """

    def __init__(self, image_encoder: Any, text_encoder: Any):
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        return {
            "image": torch.stack([self.image_encoder.preprocess(e.image) for e in examples]),
            "text": self.text_encoder.tokenize([e.text for e in examples]),
            "labels": torch.stack([torch.as_tensor(e.label) for e in examples]),
        }
