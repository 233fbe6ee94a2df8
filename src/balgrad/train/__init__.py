"""The training loop (:class:`Trainer`), checkpoints, distributed set-up, step
loggers, mixed precision and the run-folder lock.
"""

from balgrad.train._checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from balgrad.train._distributed import DistInfo, end_distributed, init_distributed, resolve_device
from balgrad.train._lock import RunFolderLocked, RunLock
from balgrad.train._metrics_log import JsonlLogger, TensorBoardLogger
from balgrad.train._precision import resolve_precision
from balgrad.train._trainer import Trainer, TrainResult, TrainSettings

__all__ = [
    "DistInfo",
    "JsonlLogger",
    "RunFolderLocked",
    "RunLock",
    "TensorBoardLogger",
    "TrainResult",
    "TrainSettings",
    "Trainer",
    "end_distributed",
    "init_distributed",
    "load_checkpoint",
    "load_latest_checkpoint",
    "resolve_device",
    "resolve_precision",
    "save_checkpoint",
]
