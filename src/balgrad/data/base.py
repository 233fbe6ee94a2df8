"""The dataset contract every loader (built-in or on-disk) fulfils.

A dataset is a ``torch.utils.data.Dataset`` whose items are :class:`Example` objects.
Images are float tensors of shape ``[C, H, W]`` on the ``[0, 1]`` scale (C is 1 or 3,
sizes may differ between items); the image backbone's ``preprocess`` resizes and
normalises them. Texts are plain strings; the text backbone tokenises them. Keeping
raw pixels and strings here is what lets the evaluation protocol impair the *input*
(blank image, empty text, pixel noise, token noise) and pass it through the backbone,
as SPEC section 4 asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

TaskKind = Literal["single_label", "multi_label"]


@dataclass
class Example:
    image: torch.Tensor  # [C, H, W], float32 in [0, 1]
    text: str
    label: torch.Tensor  # int64 scalar (single-label) or float32 [num_classes] of 0/1 (multi-label)
    index: int  # position in its split; seeds per-sample impairments


@dataclass
class DatasetInfo:
    name: str
    task: TaskKind
    classes: list[str]
    # the metric used for model selection and the headline of a table
    primary_metric: str = "accuracy"
    # every metric the protocol reports for this dataset
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class MultimodalDataset(Dataset):
    """Base class: subclasses set ``info`` and implement ``__len__`` and ``get``.

    ``fingerprint`` identifies the content (used as part of feature-cache keys); a
    subclass should make it change whenever the data would change, or list the files it
    decodes in ``content_files()`` so that the cache also keys on their bytes.
    """

    info: DatasetInfo
    split: str

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def get(self, index: int) -> Example:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Example:
        return self.get(index)

    @property
    def fingerprint(self) -> str:
        return f"{self.info.name}:{self.split}:{len(self)}"

    #: ``content_files()`` lists one file per example, in order (a disk dataset's images),
    #: so a subset's share is the files of its examples; False: files the whole dataset
    #: is decoded from (Fashion-MNIST's two IDX files), which every subset shares
    content_files_per_example: bool = False

    def content_files(self) -> list[Path] | None:
        """The files whose bytes the examples are decoded from, when ``fingerprint`` does
        not cover their content (a disk dataset's images: it holds their sizes); the
        feature cache keys on a hash of their content. None: the fingerprint suffices."""
        return None


def check_label(label: int, num_classes: int, where: str) -> int:
    """Validate a single-label class index; ``where`` names the file/line for the error."""
    from balgrad.errors import DataError

    if not 0 <= int(label) < num_classes:
        raise DataError(f"{where}: label {label} is out of range [0, {num_classes})")
    return int(label)
