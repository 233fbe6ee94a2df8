"""Subsets that keep the dataset contract: the validation split carved from training
data (model selection never looks at the test split)."""

from __future__ import annotations

import hashlib

import numpy as np

from balgrad.data._base import MultimodalDataset
from balgrad.errors import ConfigError


class SubsetDataset(MultimodalDataset):
    """The items ``indices`` of ``base``, as a dataset of the split named ``split``
    (the validation split carved from training data, for example).

    Args:
        base: The dataset carved from.
        indices: The base's indices, in order.
        split: The subset's split name.
    """

    def __init__(self, base: MultimodalDataset, indices, split: str):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.info = base.info
        self.split = split
        base_texts, base_labels = getattr(base, "texts", None), getattr(base, "labels", None)
        self.texts = None if base_texts is None else [base_texts[i] for i in self.indices]
        self.labels = None if base_labels is None else [base_labels[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def get(self, index: int):
        """The base's example, re-indexed in the subset.

        Args:
            index: Its position in the subset.

        Returns:
            The example.
        """
        ex = self.base[int(self.indices[index])]  # indexing: the contract's, not only get()
        ex.index = index
        return ex

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.indices.tobytes()).hexdigest()[:16]
        return f"{self.base.fingerprint}|{self.split}:{digest}"

    def content_files(self):
        """The files the subset decodes from: the base's (only its own examples' where
        the base lists them per example).

        Returns:
            The files, or None.
        """
        own = getattr(self.base, "content_files", None)  # optional for a plug-in
        files = own() if callable(own) else None
        if files is None or not getattr(self.base, "content_files_per_example", False):
            return files  # None, or the files the whole base is decoded from
        return [files[i] for i in self.indices]


def _stratum(label) -> object:
    arr = np.asarray(label)
    return int(arr) if arr.ndim == 0 else int(arr.argmax())


def train_val_split(
    dataset: MultimodalDataset, fraction: float, seed: int
) -> tuple[SubsetDataset, SubsetDataset]:
    """Stratified by label (multi-label: by first positive label), deterministic by seed.

    Args:
        dataset: The training split.
        fraction: The share held out for validation.
        seed: The split's seed.

    Returns:
        (train part, validation part).

    Raises:
        ConfigError: ``fraction`` is not in (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"val_fraction: must be in (0, 1), got {fraction}")
    n = len(dataset)
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset.get(i).label for i in range(n)]
    strata: dict[object, list[int]] = {}
    for i, lab in enumerate(labels):
        strata.setdefault(_stratum(lab), []).append(i)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for key in sorted(strata, key=str):
        idx = np.array(strata[key])
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        val.extend(idx[:k].tolist())
    val_set = set(val)
    train = [i for i in range(n) if i not in val_set]
    if not train or not val:
        raise ConfigError(
            f"val_fraction: {fraction} leaves an empty train or validation split of {n} samples"
        )
    return SubsetDataset(dataset, train, "train"), SubsetDataset(dataset, sorted(val), "val")
