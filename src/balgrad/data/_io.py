"""Where the on-disk dataset machinery used to live; it is now in :mod:`balgrad.data.disk`.

These names stay importable from here for code written against earlier versions.
"""

from balgrad.data.disk._dataset import DiskDataset
from balgrad.data.disk._records import DataWarning, MissingSplitError

__all__ = ["DataWarning", "DiskDataset", "MissingSplitError"]
