"""The items of a dataset under one evaluation condition (SPEC sections 4 and 6).

A hit sample of ``missing_<m>`` (or of ``only_<k>``, for every m other than k) gets m's
blank input (with ``missing="input"``: a blank image, an empty string, silence, zeros),
or a drop flag that zeroes its embedding later (with ``missing="embedding"``).
``noisy_<m>`` adds m's noise to the raw input before the backbone's ``preprocess``; a text
modality's token noise is applied when the batch is collated. A modality whose features
are precomputed (a frozen tower) reads them instead of the raw input.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Mapping
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from balgrad.data._base import MultimodalDataset, known_texts
from balgrad.data._batch import Batch, label_tensor
from balgrad.data._contract import ShapeCheck, check_example, where_item
from balgrad.data._impairments import Condition
from balgrad.data._kinds import KINDS, feature_std, noise_salt
from balgrad.errors import ConfigError, DataError

#: per dataset object, the per-feature std of each ``features`` modality (noise scale)
_FEATURE_STD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def modalities_of(dataset: MultimodalDataset) -> dict[str, str]:
    """``name -> kind`` that a dataset declares in ``info.modalities`` (there is no
    default set).

    Args:
        dataset: A dataset.

    Returns:
        ``{name: kind}``.

    Raises:
        DataError: The dataset declares no modalities.
    """
    modalities = getattr(getattr(dataset, "info", None), "modalities", None)
    if not modalities:
        name = getattr(getattr(dataset, "info", None), "name", None) or type(dataset).__name__
        raise DataError(
            f"dataset {name!r} declares no modalities: its info needs "
            "DatasetInfo(..., modalities={name: kind, ...})"
        )
    return dict(modalities)


def split_feature_std(dataset: MultimodalDataset, modality: str) -> torch.Tensor:
    """Each feature's std over ``dataset`` (computed once per dataset object).

    Args:
        dataset: A split.
        modality: A ``features`` modality.

    Returns:
        ``[F]``, float32.
    """
    per = _FEATURE_STD.setdefault(dataset, {})
    if modality not in per:
        per[modality] = feature_std(dataset, modality).float()
    return per[modality]


def nan_if_not_finite(x: Any) -> Any:
    """A noisy input (a tensor, or a mapping's ``features``) with an infinity or a NaN
    anywhere, as NaN throughout: no tower can then turn it back into numbers (a clamp
    maps inf to its bound), so the evaluation sees it and scores the condition as
    undefined. A finite input is returned as it is.

    Args:
        x: A noisy input.

    Returns:
        The input, or its NaN copy.
    """
    f = x.get("features") if isinstance(x, Mapping) else x
    if not torch.is_tensor(f) or not f.is_floating_point() or bool(torch.isfinite(f).all()):
        return x
    nan = torch.full_like(f, float("nan"))
    return {**x, "features": nan} if isinstance(x, Mapping) else nan


class ConditionedView(Dataset):
    """Items (dicts, see :func:`~balgrad.data._batch.collate`) of ``dataset`` under ``condition``.

    Args:
        dataset: the split.
        condition: the :class:`~balgrad.data._impairments.Condition` (impairment) applied.
        encoders: the backbone of each modality; a non-text one's ``preprocess`` (when it
            has one) maps the raw input to the model input.
        embedding_mode: missing modalities are zeroed embeddings, not blank inputs.
        features: ``[N, D]`` precomputed features of the frozen towers, by modality, read
            instead of the raw input.
        load: the modalities whose raw input the items carry (default: every modality
            without features); e.g. only the one a frozen tower is encoding.
    """

    def __init__(
        self,
        dataset: MultimodalDataset,
        condition: Condition,
        *,
        encoders: Mapping[str, Any],
        embedding_mode: bool,
        features: Mapping[str, torch.Tensor] | None = None,
        load: Collection[str] | None = None,
    ):
        self.dataset, self.condition = dataset, condition
        self.modalities = modalities_of(dataset)
        features = dict(features or {})
        if unknown := [m for m in [*features, *(load or ())] if m not in self.modalities]:
            raise ConfigError(
                f"dataset {dataset.info.name!r} has no modality {unknown[0]!r}; its "
                f"modalities are {list(self.modalities)}"
            )
        if load is None:
            load = [m for m in self.modalities if m not in features]
        self.features = features
        self.load = [m for m in self.modalities if m in load and m not in features]
        if missing := [m for m in self.load if m not in encoders]:
            raise ConfigError(
                f"no encoder for modality {missing[0]!r} of dataset {dataset.info.name!r} "
                f"(encoders: {list(encoders)})"
            )
        self.encoders = encoders
        self.hit = condition.mask(len(dataset))  # which samples the condition impairs
        self.embedding_mode = embedding_mode
        self._one_shape = ShapeCheck()  # a ragged modality: a named error, not torch.stack's
        m = condition.modality
        self.noise_std = None
        if condition.action == "noisy" and m in self.load:
            kind = KINDS[self.modalities[m]]
            if kind.needs_feature_std:
                self.noise_std = split_feature_std(dataset, m)

    def __len__(self):
        return len(self.dataset)

    def _raw(self, i: int) -> tuple[dict[str, Any], torch.Tensor]:
        """The raw inputs of the loaded modalities and the label: from the dataset's
        ``texts``/``labels`` arrays when only its text modality (whatever its name), or
        none, is needed, without decoding the rest of the example."""
        labels = getattr(self.dataset, "labels", None)
        texts = known_texts(self.dataset, self.load[0]) if len(self.load) == 1 else None
        if labels is not None and (not self.load or texts is not None):
            return ({self.load[0]: texts[i]} if self.load else {}), label_tensor(labels[i])
        ex = self.dataset[i]
        check_example(ex, self.modalities, where_item(self.dataset, i))  # a plug-in's too
        return {m: ex.inputs[m] for m in self.load}, label_tensor(ex.label)

    def _impaired(self, m: str, x: Any, hit: bool, i: int) -> tuple[Any, float]:
        """(m's input after the condition and ``preprocess``, its token-noise level)."""
        c, kind = self.condition, KINDS[self.modalities[m]]
        token_noise = 0.0
        if hit and c.missing_for(m) and not self.embedding_mode:
            x = kind.blank(x)
        elif hit and c.noisy_for(m):
            if kind.token_noise:  # text: the token ids get it when collated
                token_noise = c.level
            elif kind.noise is None:
                raise ConfigError(f"modality {m!r}: kind {kind.name!r} has no noise")
            elif self.noise_std is not None:
                x = nan_if_not_finite(
                    kind.noise(x, c.level, c.seed, i, noise_salt(m), std=self.noise_std)
                )
            else:
                x = nan_if_not_finite(kind.noise(x, c.level, c.seed, i, noise_salt(m)))
        preprocess = getattr(self.encoders[m], "preprocess", None)
        if not kind.tokenized and callable(preprocess):  # text: tokenized at collation
            x = preprocess(x)
        return x, token_noise

    @cached_property
    def _class_labels(self) -> np.ndarray | None:
        """The dataset's single-label classes as one integer array (what label_tensor makes
        an int64 scalar of, item by item); None for any other kind of label."""
        arr = np.asarray(self.dataset.labels)
        return arr if arr.ndim == 1 and arr.dtype.kind in "iu" else None

    def __getitems__(self, indices: list[int]) -> list[dict] | Batch:
        """A batch of ``indices`` for the loader. When every input is a precomputed feature
        (frozen towers, features cached) and the dataset holds its labels, the batch
        itself, gathered at once: the values :func:`~balgrad.data._batch.collate` stacks
        from the items, without building an item per sample (which cost more than the
        training step on cached features). Otherwise the items, one by one."""
        labels = getattr(self.dataset, "labels", None)
        if self.load or labels is None:
            return [self[i] for i in indices]
        index = torch.as_tensor(indices, dtype=torch.long)
        inputs = {m: self.features[m][index] for m in self.modalities if m in self.features}
        if self._class_labels is None:
            target = torch.stack([label_tensor(labels[i]) for i in indices])
        else:
            target = torch.from_numpy(self._class_labels[indices].astype(np.int64))
        drop = {}
        if self.embedding_mode:
            hit = torch.from_numpy(self.hit)[index]
            if hit.any():
                drop = {m: hit.clone() for m in inputs if self.condition.missing_for(m)}
        return Batch(inputs, target, index, drop)

    def __getitem__(self, i):
        c, hit = self.condition, bool(self.hit[i])
        raw, label = self._raw(i)
        inputs, token_noise = {}, {}
        for m in self.modalities:
            if m in self.features:
                inputs[m] = self.features[m][i]
            elif m in raw:
                inputs[m], level = self._impaired(m, raw[m], hit, i)
                self._one_shape(self.dataset, i, m, inputs[m])
                if level:
                    token_noise[m] = level
        drop = {m: hit and c.missing_for(m) and self.embedding_mode for m in inputs}
        return {
            "inputs": inputs,
            "label": label,
            "index": i,
            "drop": drop,
            "token_noise": token_noise,
            "seed": c.seed,
        }
