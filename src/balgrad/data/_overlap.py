"""Examples listed twice in a split, and examples both in the training and the test split:
warned (:class:`DataWarning`), never dropped, so a run scores the data as given and says so.

A dataset names its examples with ``example_keys()``: one key per example, in order (a
clip's name, a MOSEI segment id), the same key for the same example in every split; a
dataset without the method is not checked. The readers warn of duplicates as they build a
split (:func:`warn_duplicates`); :func:`warn_split_overlap` compares two splits, which
only their caller holds (``experiment.load_data``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from balgrad.data.disk._records import DataWarning

#: how many examples a warning names
MAX_SHOWN = 5


def example_keys(dataset: Any) -> list[str] | None:
    """``dataset.example_keys()``, or None when it names no keys.

    Args:
        dataset: A split.

    Returns:
        The keys, or None.
    """
    keys = getattr(dataset, "example_keys", None)
    return None if not callable(keys) or (found := keys()) is None else list(found)


def warn_duplicates(
    what: str, keys: Sequence[str], sources: Sequence[str] | None = None, stacklevel: int = 2
) -> None:
    """One :class:`DataWarning` when a key repeats in ``keys`` (one split): each repeat is
    trained on, or scored, once more than the others. ``sources`` (one per key, e.g. the
    list file and line) locate the repeats; ``what`` names the dataset and split.

    Args:
        what: The dataset and split, for the message.
        keys: One key per example.
        sources: Where each comes from, or None.
        stacklevel: As ``warnings.warn``'s, counted from the caller.
    """
    first: dict[str, int] = {}
    repeats: list[str] = []
    for i, key in enumerate(keys):
        if key == "":  # an id that could not be read: nothing to compare
            continue
        if key in first:
            at = f"{sources[i]} repeats" if sources else "repeated:"
            was = f"first at {sources[first[key]]}" if sources else f"examples {first[key]}, {i}"
            repeats.append(f"{at} {key!r} ({was})")
        else:
            first[key] = i
    if repeats:
        warnings.warn(
            f"{what}: {len(repeats)} duplicate example(s), kept, so each counts more than "
            f"once: {_shown(repeats)}",
            DataWarning,
            stacklevel=stacklevel + 1,
        )


def warn_split_overlap(name: str, train: Any, test: Any, stacklevel: int = 2) -> None:
    """One :class:`DataWarning` when examples of ``test`` are also in ``train`` (by
    :func:`example_keys`): their test scores do not measure generalisation.

    Args:
        name: The dataset.
        train: The training split.
        test: The test split.
        stacklevel: As ``warnings.warn``'s, counted from the caller.
    """
    train_keys, test_keys = example_keys(train), example_keys(test)
    if train_keys is None or test_keys is None:
        return
    seen = set(train_keys) - {""}
    shared = sorted({k for k in test_keys if k in seen})
    if shared:
        train_split = getattr(train, "split", "train")
        test_split = getattr(test, "split", "test")
        warnings.warn(
            f"dataset {name!r}: {len(shared)} example(s) of the {test_split!r} split "
            f"({len(test_keys)} in all) are also in the {train_split!r} split, so their scores "
            f"are not held out: {_shown([repr(k) for k in shared])}",
            DataWarning,
            stacklevel=stacklevel + 1,
        )


def _shown(items: list[str]) -> str:
    more = f" (and {len(items) - MAX_SHOWN} more)" if len(items) > MAX_SHOWN else ""
    return "; ".join(items[:MAX_SHOWN]) + more
