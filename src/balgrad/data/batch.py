"""Model-ready batches: :class:`Batch`, and collating conditioned items into one (the text
tower's tokenisation and per-sample token noise happen here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from balgrad.data.impairments import noisy_tokens


@dataclass
class Batch:
    image: torch.Tensor  # pixels [B, ...] or cached features [B, D]
    text: dict[str, torch.Tensor] | torch.Tensor  # token ids or cached features [B, D]
    target: torch.Tensor
    index: torch.Tensor
    drop_image: torch.Tensor | None = None  # bool [B]: zero h_v ("missing = embedding")
    drop_text: torch.Tensor | None = None

    def to(self, device) -> Batch:
        def mv(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v.to(device, non_blocking=True) for k, v in x.items()}
            return x.to(device, non_blocking=True)

        return Batch(
            mv(self.image),
            mv(self.text),
            mv(self.target),
            mv(self.index),
            mv(self.drop_image),
            mv(self.drop_text),
        )

    def __len__(self) -> int:
        return int(self.target.shape[0])


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
    drop_i = torch.tensor([it["drop_image"] for it in items])
    drop_t = torch.tensor([it["drop_text"] for it in items])
    return Batch(
        image,
        text,
        target,
        torch.tensor([it["index"] for it in items]),
        drop_i if drop_i.any() else None,
        drop_t if drop_t.any() else None,
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
