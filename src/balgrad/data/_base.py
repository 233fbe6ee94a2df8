"""The dataset contract every loader (built-in or on-disk) fulfils.

A dataset is a ``torch.utils.data.Dataset`` whose items are :class:`Example` objects,
holding one raw input per modality, keyed by the names ``info.modalities`` declares
(name -> kind, SPEC section 6). The raw form is the kind's (:mod:`balgrad.data._kinds`):

- ``image``: a float tensor ``[C, H, W]`` on the ``[0, 1]`` scale (C is 1 or 3, sizes may
  differ between items); the backbone's ``preprocess`` resizes and normalises it;
- ``text``: a plain string; the backbone tokenises it;
- ``audio``: a waveform ``[T]`` or ``[C, T]`` (float, the same T for every item), or a
  spectrogram ``[C, F, N]`` (Kinetics-Sounds' precomputed ones);
- ``video``: frames ``[C, T, H, W]``, normalised as the backbone expects;
- ``features``: a feature sequence ``[L, F]`` (float, no NaN or inf), or a mapping
  ``{"features": [L, F], "lengths": int}``.

Every item is checked against this form as it is read (:mod:`balgrad.data._contract`), so
a dataset that breaks it, a plug-in's included, gets an error naming the item and field.

Keeping raw inputs here is what lets the evaluation protocol impair the *input* (a blank
image, an empty text, silence, zeros; pixel, token, audio or feature noise) and pass it
through the backbone, as SPEC sections 4 and 6 ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from balgrad.data._kinds import KINDS

TaskKind = Literal["single_label", "multi_label"]


#: the modalities of the image-text datasets (SPEC sections 1-5), name -> kind: the
#: declaration that digits, fashion and the disk readers make (a dataset always declares
#: its modalities; there is no default set)
IMAGE_TEXT = {"image": "image", "text": "text"}


class Example:
    """One sample: ``inputs`` (raw input by modality name), ``label`` (int64 scalar for
    single-label, float32 ``[num_classes]`` of 0/1 for multi-label) and ``index`` (its
    position in its split; it seeds the per-sample impairments).

    ``Example(image, text, label, index)`` is the (image, text) case, as the fields were
    before modalities were named; ``Example(inputs={...}, label=..., index=...)`` any other.

    Args:
        image: The image-text case's image input.
        text: The image-text case's text input.
        label: The label.
        index: The position in its split.
        inputs: ``{modality: raw input}``, for any modalities (instead of image and text).
    """

    __slots__ = ("inputs", "label", "index")

    def __init__(self, inputs: Mapping[str, Any], label: Any = None, index: int = 0):
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"Example: inputs must map modality name to raw input, got "
                f"{type(inputs).__name__}, e.g. Example(inputs={{'image': x, 'text': s}}, ...)"
            )
        self.inputs = dict(inputs)
        self.label = label
        self.index = index

    def __repr__(self) -> str:
        return f"Example(modalities={list(self.inputs)}, label={self.label!r}, index={self.index})"


@dataclass
class DatasetInfo:
    """What a dataset declares about itself.

    Attributes:
        name: The dataset's name (tables, messages, cache keys).
        task: ``"single_label"``, ``"multi_label"`` or ``"regression"``.
        classes: The class (or label) names, in index order.
        primary_metric: The metric that selects the best epoch and heads a table.
        metrics: Every metric the protocol reports for it.
        modalities: ``{modality: kind}``, in the order the model and the tables list them
            (required: a dataset declares its modalities).
    """

    name: str
    task: TaskKind
    classes: list[str]
    # the metric used for model selection and the headline of a table
    primary_metric: str = "accuracy"
    # every metric the protocol reports for this dataset
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    # modality name -> kind, in the order the model and the tables list them (required:
    # a dataset declares its modalities)
    modalities: dict[str, str] = field(kw_only=True)

    @property
    def num_classes(self) -> int:
        """The number of classes (labels, for multi-label)."""
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
        """One example.

        Args:
            index: Its position in the split.

        Returns:
            The :class:`Example`.
        """
        raise NotImplementedError

    def __getitem__(self, index: int) -> Example:
        return self.get(index)

    @property
    def fingerprint(self) -> str:
        """What identifies the split's content for the feature cache (name, split, size; a
        dataset with options or files adds them).
        """
        return f"{self.info.name}:{self.split}:{len(self)}"

    #: ``content_files()`` lists one file per example, in order (a disk dataset's images),
    #: so a subset's share is the files of its examples; False: files the whole dataset
    #: is decoded from (Fashion-MNIST's two IDX files), which every subset shares
    content_files_per_example: bool = False

    def content_files(self) -> list[Path] | None:
        """The files whose bytes the examples are decoded from, when ``fingerprint`` does
        not cover their content (a disk dataset's images: it holds their sizes); the
        feature cache keys on a hash of their content. None: the fingerprint suffices.

        Returns:
            The files, or None.
        """
        return None

    def validate(self) -> list[str]:
        """Check the files behind every example before training, without decoding them
        all (a disk dataset: image headers, texts). Raises :class:`DataError` naming the
        file; returns the reasons of the examples it dropped (``skip_bad``). Optional: by
        default nothing beyond the items, which are checked as they are read
        (:mod:`balgrad.data._contract`).

        Returns:
            The reasons of the dropped examples.
        """
        return []

    def readout_scores(self, logits: torch.Tensor, index: torch.Tensor) -> dict[str, float]:
        """Scores beyond ``info.metrics`` that need more than the class targets (CMU-MOSEI's
        MAE against the real-valued sentiment): ``logits`` [N, C] of the samples at
        ``index`` [N] in this split. The protocol adds them to every condition's scores;
        none by default.

        Args:
            logits: ``[N, C]``.
            index: The samples' positions ``[N]``.

        Returns:
            ``{metric: score}``.
        """
        return {}


def text_modality(modalities: dict[str, str]) -> str | None:
    """The one modality of a tokenized kind (text: :attr:`ModalityKind.tokenized
    <balgrad.data._kinds.ModalityKind>`) among ``modalities`` (name -> kind), whatever
    its name; None when there is none or several. A dataset's ``texts`` attribute, where it
    has one, holds this modality's texts (read without decoding the other inputs).

    Args:
        modalities: ``{name: kind}``.

    Returns:
        The name, or None.
    """
    found = [m for m, kind in modalities.items() if kind in KINDS and KINDS[kind].tokenized]
    return found[0] if len(found) == 1 else None


def known_texts(dataset: Any, modality: str) -> list[str] | None:
    """``modality``'s texts from ``dataset.texts`` when it is the dataset's one text
    modality and the dataset lists them; else None (read them from the items).

    Args:
        dataset: A dataset.
        modality: A modality name.

    Returns:
        The texts, or None.
    """
    info = getattr(dataset, "info", None)
    modalities = dict(getattr(info, "modalities", None) or {})
    texts = getattr(dataset, "texts", None)
    return texts if texts is not None and text_modality(modalities) == modality else None


def check_label(label: int, num_classes: int, where: str) -> int:
    """Validate a single-label class index; ``where`` names the file/line for the error.

    Args:
        label: The class index.
        num_classes: The number of classes.
        where: The file and line, for the message.

    Returns:
        The label, as an int.

    Raises:
        DataError: Out of range.
    """
    from balgrad.errors import DataError

    if not 0 <= int(label) < num_classes:
        raise DataError(f"{where}: label {label} is out of range [0, {num_classes})")
    return int(label)
