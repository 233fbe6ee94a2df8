"""The dataset readers: one module per dataset family, and the modules that register them.

Adding a dataset happens here, and only here: a module that reads the files of one
family into :class:`~balgrad.data._base.MultimodalDataset` splits of
:class:`~balgrad.data._base.Example` items (declaring its modalities, name -> kind), and
its registration (``register_dataset`` in ``builtin.py``, ``registry_disk.py`` or
``registry_av.py``; a third-party package registers through the ``balgrad.datasets``
entry-point group instead). An on-disk reader subclasses
:class:`~balgrad.data.disk._loader.DiskLoader` and decodes each file with the checked
decoders of :mod:`balgrad.data.decoders`.

A reader must not touch the machinery of :mod:`balgrad.data` that every dataset passes
through (the dataset contract and its checks, modality kinds, impairments, conditioned
views, the input pipeline, the feature store and caches, batches, splits, the decoders,
the disk loader and ``safe_pickle``): it uses them, and a change there is a change for
every dataset.
"""

from balgrad.data.readers._builtin import KEYPAD_BACKBONE_DEFAULTS, load_builtin
from balgrad.data.readers._cremad import CremaDDataset
from balgrad.data.readers._cub import CUBDataset
from balgrad.data.readers._digits import DigitsConfig, DigitsDataset
from balgrad.data.readers._fashion import FashionConfig, FashionDataset
from balgrad.data.readers._food101 import Food101Dataset
from balgrad.data.readers._generic import GenericDataset
from balgrad.data.readers._generic_modal import GenericModalDataset
from balgrad.data.readers._hateful_memes import HatefulMemesDataset
from balgrad.data.readers._keypad import KEYPAD_MODALITIES, KeypadConfig, KeypadDataset
from balgrad.data.readers._kinetics_sounds import KineticsSounds
from balgrad.data.readers._memotion import MemotionDataset
from balgrad.data.readers._mmimdb import MMIMDbDataset
from balgrad.data.readers._mosei import (
    MoseiSentiment,
    MosiSentiment,
    load_mmsa_pickle,
    load_mult_pickle,
)
from balgrad.data.readers._registry_disk import load_dataset_from_disk

__all__ = [
    "CUBDataset",
    "CremaDDataset",
    "DigitsConfig",
    "DigitsDataset",
    "FashionConfig",
    "FashionDataset",
    "Food101Dataset",
    "GenericDataset",
    "GenericModalDataset",
    "HatefulMemesDataset",
    "KEYPAD_BACKBONE_DEFAULTS",
    "KEYPAD_MODALITIES",
    "KeypadConfig",
    "KeypadDataset",
    "KineticsSounds",
    "MMIMDbDataset",
    "MemotionDataset",
    "MoseiSentiment",
    "MosiSentiment",
    "load_builtin",
    "load_dataset_from_disk",
    "load_mmsa_pickle",
    "load_mult_pickle",
]
