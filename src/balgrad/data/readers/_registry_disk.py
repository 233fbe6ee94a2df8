"""Load the paper's datasets (and a generic format) from their released on-disk layouts.

>>> ds = load_dataset_from_disk("hateful_memes", "/data/hateful_memes", "train")  # doctest: +SKIP

Layouts, options and error behaviour: ``docs/datasets.md``.
"""

from __future__ import annotations

import os
from typing import Any

from balgrad.data._base import MultimodalDataset
from balgrad.data._catalog import (
    DATASETS,
    IMAGE_TEXT_BACKBONES,
    IMAGE_TEXT_DATASET,
    dataset_names,
    lookup,
    register_dataset,
)
from balgrad.data.disk import DataWarning, DiskDataset, MissingSplitError
from balgrad.data.readers._cub import CUBDataset
from balgrad.data.readers._food101 import Food101Dataset
from balgrad.data.readers._generic import GenericDataset
from balgrad.data.readers._generic_modal import declared_modalities
from balgrad.data.readers._hateful_memes import HatefulMemesDataset
from balgrad.data.readers._memotion import MemotionDataset
from balgrad.data.readers._mmimdb import MMIMDbDataset

__all__ = [
    "DataWarning",
    "DiskDataset",
    "MissingSplitError",
    "disk_dataset_names",
    "disk_dataset_options",
    "load_dataset_from_disk",
]

register_dataset(
    "food101",
    Food101Dataset,
    aliases=("upmc_food101", "upmc_food_101", "food_101"),
    description="UPMC Food-101: recipe pages and photos, 101 classes",
    **IMAGE_TEXT_DATASET,
)
register_dataset(
    "hateful_memes",
    HatefulMemesDataset,
    aliases=("hatefulmemes", "hateful_meme"),
    description="Facebook's Hateful Memes (binary, AUROC)",
    **IMAGE_TEXT_DATASET,
)
register_dataset(
    "mmimdb",
    MMIMDbDataset,
    aliases=("mm_imdb",),
    description="MM-IMDb: posters and plots, multi-label genres",
    **IMAGE_TEXT_DATASET,
)
register_dataset(
    "memotion",
    MemotionDataset,
    aliases=("memotion7k", "memotion_7k"),
    description="Memotion 7k: memes with humour/sarcasm/offence labels",
    **IMAGE_TEXT_DATASET,
)
register_dataset(
    "cub",
    CUBDataset,
    aliases=("cub200", "cub_200", "cub_200_2011"),
    description="CUB-200-2011 birds with Reed et al.'s captions",
    **IMAGE_TEXT_DATASET,
)
register_dataset(
    "generic",
    GenericDataset,
    description="your own classification set as CSV/JSONL: image and text, or the "
    "modalities its header declares (name:kind: image, text, audio, features; docs/datasets.md)",
    modalities_from=declared_modalities,
    modalities=IMAGE_TEXT_DATASET["modalities"],  # without a header that declares others
    kind_backbones={
        **IMAGE_TEXT_BACKBONES,
        "audio": "resnet18",
        "features": "gru",
    },
)


def disk_dataset_names(image_text_only: bool = False) -> list[str]:
    """The on-disk datasets; ``image_text_only``: only the image-text ones (the
    :class:`DiskDataset` readers of SPEC section 5, not CREMA-D or CMU-MOSEI).

    Args:
        image_text_only: List the image-text readers only.

    Returns:
        The names.
    """
    from balgrad.data._base import IMAGE_TEXT

    names = dataset_names("disk")
    if image_text_only:
        names = [n for n in names if DATASETS.metadata(n)["modalities"] == IMAGE_TEXT]
    return names


def disk_dataset_options(name: str) -> dict[str, Any]:
    """The loader options of ``name`` (besides ``skip_bad``) with their defaults.

    Args:
        name: An on-disk dataset.

    Returns:
        ``{option: default}``.
    """
    return DATASETS.defaults(lookup(name, "disk"))


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
    accepted), or an installed plug-in's. ``split``: ``train``, ``val``
    (``dev``/``validation`` accepted) or ``test``; a dataset without that split raises
    :class:`MissingSplitError` (a :class:`~balgrad.errors.DataError`). ``skip_bad=True``
    drops bad records with one :class:`DataWarning` instead of raising. ``options`` are
    the loader's keyword options (see :func:`disk_dataset_options`); an unknown option or
    a value of the wrong type raises ConfigError.

    Args:
        name: The dataset.
        data_dir: Its folder.
        split: The split.
        skip_bad: Drop bad records with a warning.
        **options: The loader's options.

    Returns:
        The split.
    """
    key = lookup(name, "disk")
    return DATASETS.build(key, (data_dir, split), {"skip_bad": skip_bad}, options)
