"""Shared helpers of the on-disk dataset loaders.

Every loader parses its index file(s) into :class:`Record` objects (image path, text,
label, and ``source``: the index file and line the record came from), collecting bad
records through a :class:`Problems` object, then hands them to :class:`DiskDataset`,
which checks the image files, loads images lazily in :meth:`DiskDataset.get` and
computes the fingerprint.

Error policy (see ``docs/datasets.md``): a bad record raises :class:`DataError` naming
the file and line; with ``skip_bad=True`` bad records are dropped and reported in ONE
:class:`DataWarning` per dataset (count plus the first few ``file line N: reason``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from balgrad.data.base import DatasetInfo, Example, MultimodalDataset
from balgrad.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# how many reasons the single skip_bad warning lists
MAX_REASONS_SHOWN = 5

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


class DataWarning(UserWarning):
    """Emitted once per dataset when ``skip_bad=True`` dropped records."""


class MissingSplitError(DataError):
    """The dataset has no such split (e.g. Food-101 has no official validation split).

    A trainer can catch this to carve a validation split out of ``train`` instead.
    """


def canonical_split(split: str) -> str:
    """Map ``dev``/``validation``/... to ``val``; other names pass through lower-cased."""
    s = str(split).strip().lower()
    return SPLIT_ALIASES.get(s, s)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    image: Path  # absolute image path
    text: str
    label: int | tuple[int, ...]  # class index, or sorted tuple of positive class indices
    source: str  # "<index file> line N" (or another locator); used in every error message


class Problems:
    """Collects bad records: raises at once unless ``skip_bad``, else remembers reasons."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = bool(skip_bad)
        self.reasons: list[str] = []

    def bad(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message)
        self.reasons.append(message)

    def __len__(self) -> int:
        return len(self.reasons)

    def warn(self, what: str) -> None:
        if not self.reasons:
            return
        n = len(self.reasons)
        shown = "; ".join(self.reasons[:MAX_REASONS_SHOWN])
        more = f" (and {n - MAX_REASONS_SHOWN} more)" if n > MAX_REASONS_SHOWN else ""
        warnings.warn(
            f"{what}: skip_bad=True skipped {n} bad record(s): {shown}{more}",
            DataWarning,
            stacklevel=5,  # the caller of load_dataset_from_disk
        )


# --------------------------------------------------------------------------- layout


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
    """The error for a folder that lacks ``missing`` (relative paths) of ``layout``."""
    what = ", ".join(f"'{m}'" for m in missing)
    return DataError(
        f"{dataset}: {root} is not in the expected layout: missing {what}. Expected layout:\n{layout}"
    )


def hash_bytes(*chunks: bytes | str) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c.encode("utf-8") if isinstance(c, str) else c)
        h.update(b"\0")
    return h.hexdigest()


def read_bytes(path: Path, dataset: str, what: str = "index file") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{dataset}: {what} {path} is missing") from None
    except OSError as e:
        raise DataError(f"{dataset}: cannot read {what} {path}: {e}") from None


def decode_text(data: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), falling back to latin-1 for legacy files."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def iter_csv_rows(text: str, where: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line number, row)`` for each CSV record, skipping blank lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    prev = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"{where} line {prev + 1}: malformed CSV ({e})") from None
        line = prev + 1
        prev = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        yield line, row


def iter_jsonl(text: str, where: str, problems: Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` per non-blank JSONL line; bad lines go to ``problems``."""
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.bad(f"{where} line {i}: malformed JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.bad(f"{where} line {i}: expected a JSON object, got {type(obj).__name__}")
            continue
        yield i, obj


def clean_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from a spreadsheet export
        return ""
    return str(value).strip()


def check_text(text: str, where: str, allow_empty_text: bool) -> str:
    if not text and not allow_empty_text:
        raise DataError(f"{where}: empty text (pass allow_empty_text=True to keep such records)")
    return text


# --------------------------------------------------------------------------- images


def load_image(path: Path) -> torch.Tensor:
    """Open ``path`` with PIL, convert to RGB, return float32 ``[3, H, W]`` in ``[0, 1]``.

    Raises ``OSError``/``ValueError``-like exceptions from PIL unchanged; callers wrap
    them in :class:`DataError` with the file and line.
    """
    with Image.open(path) as im:
        im.load()
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # avoids PIL's palette-transparency warning
        rgb = im.convert("RGB")
    arr = np.array(rgb, dtype=np.uint8)  # [H, W, 3], writable copy
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def image_error(path: Path, source: str, err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return f"{source}: image file {path} is missing"
    return f"{source}: image file {path} cannot be read ({type(err).__name__}: {err})"


def probe_image(path: Path) -> BaseException | None:
    """Open and fully decode ``path``; return the exception, or None if it is fine."""
    try:
        with Image.open(path) as im:
            im.load()
    except _IMAGE_ERRORS as e:
        return e
    return None


# --------------------------------------------------------------------------- dataset


class DiskDataset(MultimodalDataset):
    """A split of an on-disk dataset: records parsed up front, images loaded lazily.

    Attributes:
        info, split: as in :class:`MultimodalDataset` (``split`` is canonical).
        root: the dataset root folder.
        records: the kept :class:`Record` objects.
        texts: the text of each record (no image loading).
        labels: class index per record (single-label) or a 0/1 list of length
            ``num_classes`` per record (multi-label).
        skipped: the reasons records were dropped (``skip_bad=True`` only).
    """

    def __init__(
        self,
        *,
        info: DatasetInfo,
        split: str,
        root: Path,
        records: Sequence[Record],
        problems: Problems,
        content_hash: str,
        check_files: bool = True,
        workers: int | None = None,
    ) -> None:
        self.info = info
        self.split = split
        self.root = Path(root)
        self.skip_bad = problems.skip_bad
        kept = list(records)
        sizes: list[int] = []
        if check_files or problems.skip_bad:
            kept, sizes = self._check_images(kept, problems, workers)
        self.records: list[Record] = kept
        self.skipped: list[str] = list(problems.reasons)
        self.texts: list[str] = [r.text for r in kept]
        if info.task == "multi_label":
            n = info.num_classes
            self.labels: list = [_multi_hot(r.label, n) for r in kept]
        else:
            self.labels = [int(r.label) for r in kept]  # type: ignore[arg-type]
        if not kept:
            raise DataError(
                f"{info.name} split '{split}' under {self.root} has no usable records"
                + (f" ({len(problems)} skipped as bad)" if len(problems) else "")
            )
        h = hashlib.sha256()
        h.update(content_hash.encode())
        for r, size in zip(kept, sizes or [0] * len(kept)):
            h.update(
                f"{_rel(r.image, self.root)}\0{r.text}\0{r.label}\0{size}\n".encode(
                    "utf-8", "surrogatepass"
                )
            )
        self._fingerprint = f"{info.name}:{split}:{len(kept)}:{h.hexdigest()[:16]}"
        problems.warn(f"{info.name} split '{split}' ({self.root})")

    # -- checks ------------------------------------------------------------------
    def _check_images(
        self, records: list[Record], problems: Problems, workers: int | None
    ) -> tuple[list[Record], list[int]]:
        kept: list[Record] = []
        sizes: list[int] = []
        status: list[BaseException | int]
        if problems.skip_bad:
            # decode every image once so bad ones are known up front
            n = workers or min(8, (os.cpu_count() or 1) * 2)

            def probe(r: Record) -> BaseException | int:
                try:
                    size = r.image.stat().st_size
                except OSError as e:
                    return e
                err = probe_image(r.image)
                return err if err is not None else size

            if n > 1 and len(records) > 16:
                with ThreadPoolExecutor(max_workers=n) as pool:
                    status = list(pool.map(probe, records))
            else:
                status = [probe(r) for r in records]
        else:
            status = []
            for r in records:
                try:
                    status.append(r.image.stat().st_size)
                except OSError as e:
                    status.append(e)
        for r, st in zip(records, status):
            if isinstance(st, BaseException):
                problems.bad(image_error(r.image, r.source, st))
                continue
            kept.append(r)
            sizes.append(st)
        return kept, sizes

    # -- Dataset API -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> Example:
        if index < 0:
            index += len(self.records)
        if not 0 <= index < len(self.records):
            raise IndexError(f"{self.info.name} {self.split}: index {index} out of range")
        r = self.records[index]
        try:
            image = load_image(r.image)
        except _IMAGE_ERRORS as e:
            raise DataError(image_error(r.image, r.source, e)) from e
        if self.info.task == "multi_label":
            label = torch.tensor(self.labels[index], dtype=torch.float32)
        else:
            label = torch.tensor(self.labels[index], dtype=torch.int64)
        return Example(image=image, text=r.text, label=label, index=index)

    @property
    def image_paths(self) -> list[Path]:
        return [r.image for r in self.records]

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.info.name!r}, split={self.split!r}, "
            f"n={len(self)}, classes={self.info.num_classes}, root={str(self.root)!r})"
        )


def _multi_hot(label: int | tuple[int, ...], n: int) -> list[int]:
    vec = [0] * n
    for i in (label,) if isinstance(label, int) else label:
        vec[i] = 1
    return vec


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def options_hash(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def case_insensitive_index(folder: Path) -> dict[str, str]:
    """``lower-case name -> actual name`` for the files of ``folder`` (empty if absent)."""
    try:
        return {n.lower(): n for n in os.listdir(folder)}
    except OSError:
        return {}


def class_index(names: Iterable[str]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}
