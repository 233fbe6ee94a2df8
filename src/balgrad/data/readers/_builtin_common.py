"""Pieces shared by the built-in datasets: option checks, digests, array storage."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.errors import ConfigError

# bump whenever the generator's output for a given config and seed changes
_DIGITS_VERSION = 1
_FASHION_VERSION = 1

SPLITS = ("train", "test")

#: the ranges of the built-ins' options, part of their signatures (checked by name and on
#: every direct call, ``registry.validated``): a sample count, a fraction, a square image's side
Count = Annotated[int, Field(ge=1, le=1_000_000)]
Fraction = Annotated[float, Field(ge=0, le=1)]
ImageSide = Annotated[int, Field(ge=8, le=256)]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    return split


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    return int(seed)


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stratified_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, as balanced as possible (remainder classes drawn at random), shuffled."""
    labels = np.repeat(np.arange(num_classes), n // num_classes)
    extra = rng.choice(num_classes, size=n % num_classes, replace=False)
    labels = np.concatenate([labels, extra])
    return rng.permutation(labels).astype(np.int64)


# ---------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------


class _ArrayDataset(MultimodalDataset):
    """Shared storage: ``images`` uint8 [N, H, W], ``texts`` list[str], ``labels`` int64 [N]."""

    images: np.ndarray
    texts: list[str]
    labels: np.ndarray
    _fingerprint: str

    def _start(
        self,
        name: str,
        split: str,
        seed: int,
        config: Any,
        classes: list[str],
        modalities: dict[str, str],
    ) -> None:
        """Check and keep ``split`` and ``seed``, keep ``config``, and describe the
        dataset as ``info``: single-label, scored by accuracy."""
        self.split = _check_split(split)
        self.seed = _check_seed(seed)
        self.config = config
        self.info = DatasetInfo(
            name,
            "single_label",
            list(classes),
            "accuracy",
            ["accuracy"],
            modalities=dict(modalities),
        )

    def _keyed_fingerprint(self) -> str:
        """``name:split:N:key``, the key the digest of what ``config`` generates for ``seed``."""
        return (
            f"{self.info.name}:{self.split}:{len(self.labels)}:{self.config.content_key(self.seed)}"
        )

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int) -> Example:
        i = int(index)
        if not 0 <= i < len(self.labels):
            raise IndexError(f"{self.info.name}/{self.split}: index {index} out of range")
        image = torch.from_numpy(self.images[i].astype(np.float32) / 255.0).unsqueeze(0)
        return Example(
            inputs={"image": image, "text": self.texts[i]},
            label=torch.tensor(int(self.labels[i]), dtype=torch.int64),
            index=i,
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint
