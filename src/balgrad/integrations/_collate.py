"""A data collator for the framework integrations (no framework needed to import it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


class ExampleCollator:
    """Collates balgrad ``Example``s (the items of a ``MultimodalDataset``, e.g.
    ``load_builtin("digits", "train")``) into the batch dict both integrations take:
    ``{<modality>: model input [B, ...], "labels": [B] or [B, C]}`` (for digits
    ``{"image": pixels, "text": token ids (a dict), "labels": ...}``), through each encoder's
    own ``tokenize`` (a text modality's strings) or ``preprocess`` (any other raw input,
    when the encoder has one; otherwise the raw inputs are stacked).

    ``ExampleCollator(image_encoder, text_encoder)`` is the image-text case;
    ``ExampleCollator(encoders={"audio": a, "visual": v})`` any other. Use it as a
    ``DataLoader``'s ``collate_fn`` (Lightning) or a ``Trainer``'s ``data_collator``
    (Hugging Face).

    Args:
        image_encoder: The image encoder (the image-text case).
        text_encoder: The text encoder (the image-text case).
        encoders: ``{modality: encoder}``, for any modalities (instead of the two above).
    """

    def __init__(self, encoders: Mapping[str, Any]):
        if not isinstance(encoders, Mapping):
            raise TypeError(
                f"ExampleCollator: encoders must map modality name to encoder, got "
                f"{type(encoders).__name__}, e.g. ExampleCollator({{'image': v, 'text': t}})"
            )
        self.encoders = dict(encoders)

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m, encoder in self.encoders.items():
            values = [e.inputs[m] for e in examples]
            if isinstance(values[0], str):
                out[m] = encoder.tokenize(values)
                continue
            preprocess = getattr(encoder, "preprocess", None)
            if callable(preprocess):
                values = [preprocess(v) for v in values]
            if isinstance(values[0], Mapping):
                out[m] = {
                    k: torch.stack([torch.as_tensor(v[k]) for v in values]) for k in values[0]
                }
            else:
                out[m] = torch.stack(values)
        out["labels"] = torch.stack([torch.as_tensor(e.label) for e in examples])
        return out
