"""Model-ready batches: :class:`Batch`, and collating conditioned items into one (the text
tower's tokenisation and per-sample token noise happen here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from balgrad.data._impairments import noisy_tokens
from balgrad.data._kinds import noise_salt


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
        """The batch on ``device`` (tensors and mappings of tensors moved).

        Args:
            device: The device.

        Returns:
            A new :class:`Batch`.
        """
        return Batch(
            {m: _move(x, device) for m, x in self.inputs.items()},
            _move(self.target, device),
            _move(self.index, device),
            {m: _move(x, device) for m, x in self.drop.items()},
        )

    def __len__(self) -> int:
        return int(self.target.shape[0])


def _move(x, device):
    if isinstance(x, Mapping):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def label_tensor(label) -> torch.Tensor:
    """A label as a tensor: int64 for a class index, as given for a multi-hot array.

    Args:
        label: An int, array or tensor.

    Returns:
        The tensor.
    """
    if isinstance(label, torch.Tensor):
        return label
    arr = np.asarray(label)
    if arr.ndim == 0:
        return torch.tensor(int(arr), dtype=torch.long)
    return torch.as_tensor(arr, dtype=torch.float32)


def collate(items: list[dict], encoders: Mapping[str, Any]) -> Batch:
    """Stack the items of a :class:`~balgrad.data._conditioned_view.ConditionedView`.

    Strings are tokenised by their modality's encoder; an item with token noise for that
    modality gets its real tokens replaced with that probability, seeded by (seed, index).
    Tensors (pixels, waveforms, frames, features) are stacked as they are, and mapping
    inputs (``{"features", "lengths"}``) key by key.

    Args:
        items: The view's items.
        encoders: ``{modality: encoder}`` (text ones tokenise).

    Returns:
        The :class:`Batch`.
    """
    first = items[0]
    inputs = {}
    for m, x in first["inputs"].items():
        values = [it["inputs"][m] for it in items]
        if isinstance(x, str):
            tokens = encoders[m].tokenize(values)
            if any(it["token_noise"].get(m, 0) > 0 for it in items):
                tokens = {**tokens, "input_ids": _noisy_ids(tokens, items, m, encoders[m])}
            inputs[m] = tokens
        elif isinstance(x, Mapping):
            inputs[m] = {k: torch.stack([torch.as_tensor(v[k]) for v in values]) for k in x}
        else:
            inputs[m] = torch.stack(values)
    target = torch.stack([it["label"] for it in items])
    drops = {m: torch.tensor([it["drop"][m] for it in items]) for m in first["drop"]}
    return Batch(
        inputs,
        target,
        torch.tensor([it["index"] for it in items]),
        {m: d for m, d in drops.items() if d.any()},
    )


def _noisy_ids(
    tokens: dict[str, torch.Tensor], items: list[dict], modality: str, encoder
) -> torch.Tensor:
    ids = tokens["input_ids"].clone()
    for row, it in enumerate(items):
        level = it["token_noise"].get(modality, 0)
        if level > 0:
            ids[row] = noisy_tokens(
                ids[row],
                tokens["attention_mask"][row],
                level,
                encoder.vocab_size,
                tuple(encoder.special_ids),
                it["seed"],
                it["index"],
                noise_salt(modality),
            )
    return ids
