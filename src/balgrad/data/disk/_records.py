"""A parsed record, the bad-record policy, and the errors and warning of the loaders.

Error policy (see ``docs/datasets.md``): a bad record raises :class:`DataError` naming
the file and line; with ``skip_bad=True`` bad records are dropped and reported in ONE
:class:`DataWarning` per dataset split (count plus the first few ``file line N: reason``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from balgrad.errors import DataError

# how many reasons the single skip_bad warning lists
MAX_REASONS_SHOWN = 5


class DataWarning(UserWarning):
    """Emitted once per dataset when ``skip_bad=True`` dropped records."""


class MissingSplitError(DataError):
    """The dataset has no such split (e.g. Food-101 has no official validation split).

    A trainer can catch this to carve a validation split out of ``train`` instead.
    """


@dataclass(frozen=True)
class Record:
    """One record of an image-text index, as a loader's ``parse`` returns it.

    Attributes:
        image: The image's path, as the index names it, joined to its folder.
        text: The text.
        label: The class index, or the sorted tuple of positive class indices.
        source: Where the record is (``"<index file> line N"``), for every message.
    """

    image: Path  # image path as the index names it, joined to its folder
    text: str
    label: int | tuple[int, ...]  # class index, or sorted tuple of positive class indices
    source: str  # "<index file> line N" (or another locator); used in every error message


class Problems:
    """Collects bad records: raises at once unless ``skip_bad``, else remembers reasons.

    Args:
        skip_bad: Remember bad records' reasons instead of raising.
    """

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = bool(skip_bad)
        self.reasons: list[str] = []

    def bad(self, message: str) -> None:
        """A bad record: raise, or remember why under ``skip_bad``.

        Args:
            message: The reason, naming the record.

        Raises:
            DataError: Without ``skip_bad``.
        """
        if not self.skip_bad:
            raise DataError(message)
        self.reasons.append(message)

    def __len__(self) -> int:
        return len(self.reasons)

    def warn(self, what: str, stacklevel: int) -> None:
        """One :class:`DataWarning` counting the reasons; ``stacklevel`` as in ``warnings.warn``
        counted from the caller of this method.

        Args:
            what: What was read, for the message.
            stacklevel: As ``warnings.warn``'s.
        """
        if not self.reasons:
            return
        n = len(self.reasons)
        shown = "; ".join(self.reasons[:MAX_REASONS_SHOWN])
        more = f" (and {n - MAX_REASONS_SHOWN} more)" if n > MAX_REASONS_SHOWN else ""
        warnings.warn(
            f"{what}: skip_bad=True skipped {n} bad record(s): {shown}{more}",
            DataWarning,
            stacklevel=stacklevel + 1,
        )
