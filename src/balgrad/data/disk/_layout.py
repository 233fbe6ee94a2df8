"""Finding a dataset's root folder in ``data_dir``, and the canonical split names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from balgrad.errors import DataError

# canonical split names and the spellings accepted for them
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def canonical_split(split: str) -> str:
    """Map ``dev``/``validation``/... to ``val``; other names pass through lower-cased.

    Args:
        split: A split name.

    Returns:
        The canonical name.
    """
    s = str(split).strip().lower()
    return SPLIT_ALIASES.get(s, s)


def resolve_root(
    data_dir: str | os.PathLike[str],
    dataset: str,
    markers: Sequence[str],
    layout: str,
    nested: Sequence[str] = (),
) -> Path:
    """Find the dataset root: ``data_dir`` itself or one of its ``nested`` sub-folders.

    The root is the first candidate holding every path in ``markers``. Otherwise a
    :class:`DataError` names the first missing marker and shows the expected layout.

    Args:
        data_dir: The folder the user gave.
        dataset: The dataset, for the message.
        markers: Paths the root must hold.
        layout: The expected layout, for the message.
        nested: Sub-folders to try as the root.

    Returns:
        The root.

    Raises:
        DataError: ``data_dir`` is empty, missing or not in the layout.
    """
    if data_dir is None or str(data_dir) == "":
        raise DataError(f"{dataset}: data_dir is empty; expected layout:\n{layout}")
    base = Path(data_dir).expanduser()
    if not base.exists():
        raise DataError(f"{dataset}: data_dir {base} does not exist; expected layout:\n{layout}")
    if not base.is_dir():
        raise DataError(
            f"{dataset}: data_dir {base} is not a directory; expected layout:\n{layout}"
        )
    candidates = [base] + [base / n for n in nested if (base / n).is_dir()]
    for cand in candidates:
        if all((cand / m).exists() for m in markers):
            return cand
    # report against the most plausible candidate: the one holding the most markers
    best = max(candidates, key=lambda c: sum((c / m).exists() for m in markers))
    missing = [m for m in markers if not (best / m).exists()]
    raise layout_error(dataset, best, missing, layout)


def layout_error(dataset: str, root: Path, missing: list[str], layout: str) -> DataError:
    """The error for a folder that lacks ``missing`` (relative paths) of ``layout``.

    Args:
        dataset: The dataset, for the message.
        root: The folder.
        missing: The missing paths.
        layout: The expected layout, shown in the message.

    Returns:
        The error, to raise.
    """
    what = ", ".join(f"'{m}'" for m in missing)
    return DataError(
        f"{dataset}: {root} is not in the expected layout: missing {what}. Expected layout:\n{layout}"
    )
