"""Model-ready batches: :class:`Batch`, and collating conditioned items into one (the text
tower's tokenisation and per-sample token noise happen here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from balgrad.data.impairments import noisy_tokens


@dataclass
class Batch:
    """One batch: the inputs keyed by modality name (pixels, token ids or cached
    features, each [B, ...]), the targets, each sample's index in its split, and
    ``drop[m]`` (bool [B]) where modality m's embedding is zeroed ("missing =
    embedding")."""

    inputs: dict[str, Any]
    target: torch.Tensor
    index: torch.Tensor
    drop: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device) -> Batch:
        return Batch(
            {m: _move(x, device) for m, x in self.inputs.items()},
            _move(self.target, device),
            _move(self.index, device),
            {m: _move(x, device) for m, x in self.drop.items()},
        )

    def __len__(self) -> int:
        return int(self.target.shape[0])

    # the (image, text) case, as the fields were named before modalities were
    @property
    def image(self) -> Any:
        return self.inputs["image"]

    @property
    def text(self) -> Any:
        return self.inputs["text"]

    @property
    def drop_image(self) -> torch.Tensor | None:
        return self.drop.get("image")

    @property
    def drop_text(self) -> torch.Tensor | None:
        return self.drop.get("text")


def _move(x, device):
    if isinstance(x, Mapping):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def label_tensor(label) -> torch.Tensor:
    if isinstance(label, torch.Tensor):
        return label
    arr = np.asarray(label)
    if arr.ndim == 0:
        return torch.tensor(int(arr), dtype=torch.long)
    return torch.as_tensor(arr, dtype=torch.float32)


def collate(items: list[dict], text_encoder) -> Batch:
    """Stack the items of a :class:`~balgrad.data.conditioned_view.ConditionedView`.

    Texts (strings) are tokenised by ``text_encoder``; an item with ``text_noise`` > 0
    gets its real tokens replaced with that probability, seeded by (seed, index).
    Features (tensors) are stacked as they are.
    """
    first = items[0]
    image = torch.stack([it["image"] for it in items])
    if isinstance(first["text"], torch.Tensor):
        text = torch.stack([it["text"] for it in items])
    else:
        text = text_encoder.tokenize([it["text"] for it in items])
        if any(it["text_noise"] > 0 for it in items):
            text = {**text, "input_ids": _noisy_ids(text, items, text_encoder)}
    target = torch.stack([it["label"] for it in items])
    drops = {m: torch.tensor([it[f"drop_{m}"] for it in items]) for m in ("image", "text")}
    return Batch(
        {"image": image, "text": text},
        target,
        torch.tensor([it["index"] for it in items]),
        {m: d for m, d in drops.items() if d.any()},
    )


def _noisy_ids(tokens: dict[str, torch.Tensor], items: list[dict], text_encoder) -> torch.Tensor:
    ids = tokens["input_ids"].clone()
    for row, it in enumerate(items):
        if it["text_noise"] > 0:
            ids[row] = noisy_tokens(
                ids[row],
                tokens["attention_mask"][row],
                it["text_noise"],
                text_encoder.vocab_size,
                tuple(text_encoder.special_ids),
                it["seed"],
                it["index"],
            )
    return ids
