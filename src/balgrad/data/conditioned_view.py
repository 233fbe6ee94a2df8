"""The items of a dataset under one evaluation condition (SPEC section 4).

A hit sample of ``missing_image`` gets a blank image and of ``missing_text`` an empty
string (with ``missing="input"``), or a drop flag that zeroes its embedding later (with
``missing="embedding"``); ``noisy_image`` adds pixel noise before preprocessing, and
``noisy_text`` is applied to the token ids when the batch is collated. A tower whose
features are precomputed reads them instead of the raw input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from balgrad.data.base import MultimodalDataset
from balgrad.data.batch import label_tensor
from balgrad.data.impairments import Condition, blank_image, noisy_image


class ConditionedView(Dataset):
    """Items (dicts, see :func:`~balgrad.data.batch.collate`) of ``dataset`` under ``condition``.

    Args:
        preprocess: the image encoder's ``preprocess`` (raw image -> model input).
        embedding_mode: missing modalities are zeroed embeddings, not blank inputs.
        image_features, text_features: ``[N, D]`` precomputed features of a frozen tower,
            read instead of the raw input; None for a live tower.
        load_images: False skips reading images altogether (encoding the text tower).
    """

    def __init__(
        self,
        dataset: MultimodalDataset,
        condition: Condition,
        *,
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        embedding_mode: bool,
        image_features: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
        load_images: bool = True,
    ):
        self.dataset, self.condition = dataset, condition
        self.hit = condition.mask(len(dataset))  # which samples the condition impairs
        self.preprocess = preprocess
        self.embedding_mode = embedding_mode
        self.image_features, self.text_features = image_features, text_features
        self.load_images = load_images

    def __len__(self):
        return len(self.dataset)

    def _text_and_label(self, i):
        texts = getattr(self.dataset, "texts", None)
        labels = getattr(self.dataset, "labels", None)
        if texts is not None and labels is not None:
            return texts[i], label_tensor(labels[i])
        ex = self.dataset[i]
        return ex.text, label_tensor(ex.label)

    def __getitem__(self, i):
        c, hit = self.condition, bool(self.hit[i])
        if not self.load_images:
            text, label = self._text_and_label(i)
            image = torch.zeros(0)
        elif self.image_features is None:
            ex = self.dataset[i]
            text, label = ex.text, label_tensor(ex.label)
            img = ex.image
            if hit and c.kind == "missing_image" and not self.embedding_mode:
                img = blank_image(img)
            elif hit and c.kind == "noisy_image":
                img = noisy_image(img, c.level, c.seed, i)
            image = self.preprocess(img)
        else:
            text, label = self._text_and_label(i)
            image = self.image_features[i]
        if self.text_features is None:
            if hit and c.kind == "missing_text" and not self.embedding_mode:
                text = ""
        else:
            text = self.text_features[i]
        return {
            "image": image,
            "text": text,
            "label": label,
            "index": i,
            "drop_image": hit and c.kind == "missing_image" and self.embedding_mode,
            "drop_text": hit and c.kind == "missing_text" and self.embedding_mode,
            "text_noise": c.level
            if (hit and c.kind == "noisy_text" and self.text_features is None)
            else 0.0,
            "seed": c.seed,
        }
