"""What every dataset passes through: the dataset contract (:class:`Example`,
:class:`MultimodalDataset`), the catalog of datasets by name, modality kinds, impairments,
conditioned views, the input pipeline and feature store, batches and splits.

The datasets themselves are in :mod:`balgrad.data.readers`; the checked file decoders in
:mod:`balgrad.data.decoders`; the on-disk loaders' skeleton in :mod:`balgrad.data.disk`.
"""

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset, TaskKind
from balgrad.data._batch import Batch, collate
from balgrad.data._cache_files import CacheWarning
from balgrad.data._catalog import DATASETS, dataset_names, register_dataset
from balgrad.data._conditioned_view import ConditionedView
from balgrad.data._contract import check_dataset
from balgrad.data._feature_store import FrozenFeatures
from balgrad.data._impairments import Condition
from balgrad.data._kind_io import CellContext, CellReader, tensor_form
from balgrad.data._kinds import ModalityKind, modality_kind, register_kind
from balgrad.data._pipeline import InputPipeline
from balgrad.data._splits import train_val_split
from balgrad.data.disk._records import DataWarning

__all__ = [
    "Batch",
    "CacheWarning",
    "CellContext",
    "CellReader",
    "Condition",
    "ConditionedView",
    "DATASETS",
    "DataWarning",
    "DatasetInfo",
    "Example",
    "FrozenFeatures",
    "InputPipeline",
    "ModalityKind",
    "MultimodalDataset",
    "TaskKind",
    "check_dataset",
    "collate",
    "dataset_names",
    "modality_kind",
    "register_dataset",
    "register_kind",
    "tensor_form",
    "train_val_split",
]
