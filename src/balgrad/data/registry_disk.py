"""Load the paper's datasets (and a generic format) from their released on-disk layouts.

>>> ds = load_dataset_from_disk("hateful_memes", "/data/hateful_memes", "train")  # doctest: +SKIP

Layouts, options and error behaviour: ``docs/datasets.md``.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from balgrad.data._io import DataWarning, DiskDataset, MissingSplitError
from balgrad.data.base import MultimodalDataset
from balgrad.data.cub import CUBDataset
from balgrad.data.food101 import Food101Dataset
from balgrad.data.generic import GenericDataset
from balgrad.data.hateful_memes import HatefulMemesDataset
from balgrad.data.memotion import MemotionDataset
from balgrad.data.mmimdb import MMIMDbDataset
from balgrad.errors import ConfigError

__all__ = [
    "DISK_DATASETS",
    "DataWarning",
    "DiskDataset",
    "MissingSplitError",
    "disk_dataset_names",
    "disk_dataset_options",
    "load_dataset_from_disk",
]

DISK_DATASETS: dict[str, type[DiskDataset]] = {
    "food101": Food101Dataset,
    "hateful_memes": HatefulMemesDataset,
    "mmimdb": MMIMDbDataset,
    "memotion": MemotionDataset,
    "cub": CUBDataset,
    "generic": GenericDataset,
}

_ALIASES = {
    "upmc_food101": "food101",
    "upmc_food_101": "food101",
    "food_101": "food101",
    "hatefulmemes": "hateful_memes",
    "hateful_meme": "hateful_memes",
    "mm_imdb": "mmimdb",
    "memotion7k": "memotion",
    "memotion_7k": "memotion",
    "cub200": "cub",
    "cub_200": "cub",
    "cub_200_2011": "cub",
}


def disk_dataset_names() -> list[str]:
    return list(DISK_DATASETS)


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DISK_DATASETS:
        raise ConfigError(f"unknown on-disk dataset {name!r}; known: {', '.join(DISK_DATASETS)}")
    return key


def disk_dataset_options(name: str) -> dict[str, Any]:
    """The loader options of ``name`` (besides ``skip_bad``) with their defaults."""
    cls = DISK_DATASETS[_canonical_name(name)]
    sig = inspect.signature(cls.__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "skip_bad"
    }


def load_dataset_from_disk(
    name: str,
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    skip_bad: bool = False,
    **options: Any,
) -> MultimodalDataset:
    """Load split ``split`` of dataset ``name`` from ``data_dir``.

    ``name``: one of ``food101``, ``hateful_memes``, ``mmimdb``, ``memotion``, ``cub``,
    ``generic`` (a few spellings such as ``upmc_food101`` or ``cub_200_2011`` are
    accepted). ``split``: ``train``, ``val`` (``dev``/``validation`` accepted) or
    ``test``; a dataset without that split raises :class:`MissingSplitError` (a
    :class:`~balgrad.errors.DataError`). ``skip_bad=True`` drops bad records with one
    :class:`DataWarning` instead of raising. ``options`` are the loader's keyword
    options (see :func:`disk_dataset_options`); an unknown option raises ConfigError.
    """
    key = _canonical_name(name)
    allowed = disk_dataset_options(key)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"dataset {key!r}: unknown option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(allowed)}"
        )
    return DISK_DATASETS[key](data_dir, split, skip_bad=skip_bad, **options)
