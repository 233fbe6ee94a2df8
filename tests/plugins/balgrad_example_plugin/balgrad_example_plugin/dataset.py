"""``stripes``: generated images of horizontal or vertical stripes with short captions
that name the direction only some of the time."""

from __future__ import annotations

import numpy as np
import torch

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._catalog import register_dataset

CLASSES = ["horizontal", "vertical"]


class StripesDataset(MultimodalDataset):
    def __init__(self, split: str, seed: int, n: int, noise: float, text_signal: float):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        self.split, self.key = split, f"stripes:{split}:{seed}:{n}:{noise}:{text_signal}"
        self.info = DatasetInfo(
            "stripes", "single_label", CLASSES, modalities={"image": "image", "text": "text"}
        )
        self.labels = rng.integers(0, 2, size=n)
        stripes = (np.arange(16) // 2 % 2).astype(np.float32)
        self.images = []
        for label in self.labels:
            img = np.tile(stripes[:, None], (1, 16)) if label == 0 else np.tile(stripes, (16, 1))
            self.images.append(np.clip(img + rng.normal(0, noise, img.shape), 0, 1))
        self.texts = [
            f"a picture of {CLASSES[y]} lines"
            if rng.random() < text_signal
            else "a picture of lines"
            for y in self.labels
        ]

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int) -> Example:
        image = torch.tensor(self.images[index], dtype=torch.float32)[None]
        label = torch.tensor(int(self.labels[index]))
        return Example({"image": image, "text": self.texts[index]}, label, index)

    @property
    def fingerprint(self) -> str:
        return self.key


@register_dataset(
    "stripes",
    kind="builtin",
    description="generated horizontal/vertical stripes (example plug-in)",
    backbone_defaults={"small": {"max_length": 8}},
    modalities={"image": "image", "text": "text"},
    kind_backbones={"image": "efficientnet-lite0", "text": "minilm"},
)
def load_stripes(
    split: str,
    *,
    seed: int = 0,
    data_dir: str | None = None,
    n: int = 64,
    noise: float = 0.3,
    text_signal: float = 0.5,
) -> StripesDataset:
    return StripesDataset(split, seed, n, noise, text_signal)
