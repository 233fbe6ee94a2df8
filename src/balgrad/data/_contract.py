"""The dataset contract of :mod:`balgrad.data._base`, checked where a dataset's objects
enter balgrad, so that a plug-in that breaks it gets a :class:`DataError` naming the
dataset, the item and the field, not a traceback from deep inside a model.

- :func:`check_dataset`: what a loader returns (after ``DATASETS.build``): ``info`` with
  the modalities it was registered with, and a length.
- :func:`check_example`: each item as it is read (:class:`ConditionedView`): an
  ``Example`` with an input for every declared modality, of the kind's type, dtype and
  number of dimensions (float32 tensors; text a ``str``).
- :class:`ShapeCheck`: the model inputs of a modality have one shape across a batch
  (``torch.stack`` would fail with a message naming neither dataset nor modality).

Every check looks at types and shapes only, never at values, so no valid run changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from balgrad.data._kinds import KINDS
from balgrad.errors import DataError


def dataset_name(dataset: Any) -> str:
    """A dataset's name, for messages.

    Args:
        dataset: A dataset.

    Returns:
        ``info.name``, or the class name.
    """
    info = getattr(dataset, "info", None)
    return str(getattr(info, "name", None) or type(dataset).__name__)


def where_item(dataset: Any, index: int) -> str:
    """An item's place, for messages: ``dataset 'x' (train split), item 3``.

    Args:
        dataset: A dataset.
        index: The item's index.

    Returns:
        The text.
    """
    split = getattr(dataset, "split", None)
    split = f" ({split} split)" if isinstance(split, str) else ""
    return f"dataset {dataset_name(dataset)!r}{split}, item {index}"


def check_dataset(name: str, dataset: Any, modalities: Mapping[str, str]) -> None:
    """What the loader of dataset ``name`` returned: ``info`` declaring the registered
    ``modalities``, ``classes`` and ``task``, ``len()`` and items by index.

    Args:
        name: The dataset's registered name.
        dataset: What its loader returned.
        modalities: The registered ``{modality: kind}``.

    Raises:
        DataError: Something is missing or does not match.
    """
    where = f"dataset {name!r}"
    info = getattr(dataset, "info", None)
    if info is None:
        raise DataError(
            f"{where}: its loader returned a {type(dataset).__name__} without an 'info' "
            "(a DatasetInfo naming its task, classes and modalities)"
        )
    for field in ("task", "classes", "modalities"):
        if getattr(info, field, None) is None:
            raise DataError(f"{where}: its info has no {field!r}")
    declared = dict(info.modalities)
    if declared != dict(modalities):
        raise DataError(
            f"{where}: its info.modalities {declared} differ from the modalities it was "
            f"registered with {dict(modalities)}"
        )
    for method in ("__len__", "__getitem__"):
        if not callable(getattr(dataset, method, None)):
            raise DataError(f"{where}: a {type(dataset).__name__} has no {method}()")


def check_example(example: Any, modalities: Mapping[str, str], where: str) -> None:
    """One item: an ``Example`` whose ``inputs`` hold every declared modality in its
    kind's form (:mod:`balgrad.data._base`) and whose ``label`` is set.

    Args:
        example: The item.
        modalities: ``{modality: kind}``.
        where: The item, for the message (:func:`where_item`).

    Raises:
        DataError: It is not an ``Example``, lacks a modality or label, or an input is
            of the wrong form.
    """
    inputs = getattr(example, "inputs", None)
    if not isinstance(inputs, Mapping):
        raise DataError(
            f"{where}: get() returned a {type(example).__name__}, not an Example with "
            "an 'inputs' mapping"
        )
    if missing := [m for m in modalities if m not in inputs]:
        raise DataError(
            f"{where}: no input for the modality {missing[0]!r}, which info.modalities "
            f"declares (the item's inputs: {sorted(map(str, inputs))})"
        )
    if getattr(example, "label", None) is None:
        raise DataError(f"{where}: the item has no label")
    for m, kind in modalities.items():
        check_input(inputs[m], kind, f"{where}, modality {m!r}")


def check_input(x: Any, kind: str, where: str) -> None:
    """One raw input, in its kind's form (:meth:`ModalityKind.check_input
    <balgrad.data._kinds.ModalityKind.check_input>`; a kind without a form check, or
    an unregistered one, is not checked).

    Args:
        x: The input.
        kind: Its modality's kind.
        where: The item, for the message.

    Raises:
        DataError: It is not in the kind's form.
    """
    found = KINDS.get(kind)
    if found is not None:
        found.check_input(x, where)


class ShapeCheck:
    """The model inputs of each modality (after ``preprocess``) have one shape, so that a
    batch of them can be stacked: the first item's shape is the reference."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[int, tuple]] = {}

    def __call__(self, dataset: Any, index: int, modality: str, x: Any) -> None:
        shape = _shape(x)
        if shape is None:
            return
        seen = self.first.setdefault(modality, (index, shape))
        if seen[1] != shape:
            raise DataError(
                f"{where_item(dataset, index)}, modality {modality!r}: shape "
                f"{_show(shape)}, but item {seen[0]} has {_show(seen[1])}; the inputs of a "
                "modality must have one shape to be batched (pad or crop them in get())"
            )


def _shape(x: Any) -> tuple | None:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, Mapping):
        return tuple((k, tuple(v.shape)) for k, v in x.items() if isinstance(v, torch.Tensor))
    return None


def _show(shape: tuple) -> str:
    if shape and isinstance(shape[0], tuple):
        return "{" + ", ".join(f"{k!r}: {list(s)}" for k, s in shape) + "}"
    return str(list(shape))
