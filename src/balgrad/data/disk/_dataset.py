"""A split of an on-disk dataset, made of parsed records; images are loaded lazily."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._positions import checked_index
from balgrad.data.decoders._image import (
    decode_error,
    decode_image,
    header_error,
    image_error,
)
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._records import Problems, Record
from balgrad.errors import DataError

# texts longer than this are taken for a damaged index (e.g. a record that swallowed a
# file); text backbones read a few hundred tokens at most
MAX_TEXT_CHARS = 100_000

# the skip_bad warning points at the caller of load_dataset_from_disk: DiskDataset.__init__
# (1) <- DiskLoader._load (2) <- the loader's __init__ (3) <- load_dataset_from_disk (4) <- (5)
_WARN_FROM_INIT = 5

T = TypeVar("T")


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

    At construction every text must be valid Unicode without a NUL (any split, so a text
    a tokenizer would reject never reaches training), and every image path must resolve
    (symlinks followed) inside ``root``; ``check_files`` also checks that each file
    exists, and ``skip_bad`` decodes each image once so bad ones are dropped up front.

    Args:
        info: The dataset's :class:`~balgrad.data._base.DatasetInfo`.
        split: The canonical split name.
        root: The dataset root folder.
        records: The parsed records.
        problems: Where bad records go (it says whether to skip them).
        content_hash: The digest of the index files, for the fingerprint.
        check_files: Check that each image exists.
        workers: Threads for the up-front checks (None: a default).

    Raises:
        DataError: A bad record without ``skip_bad``.
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
        self._workers = workers
        self._content_hash = content_hash
        # with skip_bad every image was decoded once here; validate() need not re-read them
        self._images_decoded = problems.skip_bad
        kept, sizes = self._check_files(list(records), problems, check_files)
        self.skipped: list[str] = list(problems.reasons)
        if not kept:
            raise DataError(
                f"{info.name} split '{split}' under {self.root} has no usable records"
                + (f" ({len(problems)} skipped as bad)" if len(problems) else "")
            )
        self._keep(kept, sizes)
        problems.warn(f"{info.name} split '{split}' ({self.root})", stacklevel=_WARN_FROM_INIT)

    def _keep(self, records: list[Record], sizes: list[int] | None) -> None:
        """Set the records and everything derived from them (texts, labels, fingerprint).

        The fingerprint covers the content hash (index files, options), each record and
        its image file size (0 for all when sizes were not read)."""
        self.records: list[Record] = records
        self._sizes = sizes
        self.texts: list[str] = [r.text for r in records]
        if self.info.task == "multi_label":
            n = self.info.num_classes
            self.labels: list = [_multi_hot(r.label, n) for r in records]
        else:
            self.labels = [int(r.label) for r in records]  # type: ignore[arg-type]
        h = hashlib.sha256()
        h.update(self._content_hash.encode())
        for r, size in zip(records, sizes or [0] * len(records)):
            h.update(
                f"{_rel(r.image, self.root)}\0{r.text}\0{r.label}\0{size}\n".encode(
                    "utf-8", "surrogatepass"
                )
            )
        self._fingerprint = f"{self.info.name}:{self.split}:{len(records)}:{h.hexdigest()[:16]}"

    # -- checks ------------------------------------------------------------------
    def _check_files(
        self, records: list[Record], problems: Problems, check_files: bool
    ) -> tuple[list[Record], list[int] | None]:
        """Drop (or raise for) records whose text is not valid Unicode or holds a NUL,
        whose image leaves the root (or is a symlink loop), is missing (``check_files``)
        or does not decode (``skip_bad``); the kept records' file sizes (None without
        ``check_files`` or ``skip_bad``)."""
        boundary = FolderBoundary(self.root)
        read_files = check_files or problems.skip_bad

        def check(r: Record) -> str | int:
            text_problem = _text_problem(r.text, None)
            if text_problem is not None:
                return f"{r.source}: {text_problem}"
            problem = boundary.problem(r.source, "image file", r.image)
            if problem is not None:
                return problem
            if not read_files:
                return 0
            try:
                size = r.image.stat().st_size
            except (OSError, ValueError) as e:
                return image_error(r.image, r.source, e)
            err = decode_error(r.image) if problems.skip_bad else None
            return image_error(r.image, r.source, err) if err is not None else size

        # decoding is slow: spread it over threads; the rest is one lstat/stat per file
        status = self._map(check, records, threaded=problems.skip_bad)
        kept: list[Record] = []
        sizes: list[int] = []
        for r, st in zip(records, status):
            if isinstance(st, str):
                problems.bad(st)
                continue
            kept.append(r)
            sizes.append(st)
        return kept, sizes if read_files else None

    def validate(self, *, max_text_chars: int = MAX_TEXT_CHARS) -> list[str]:
        """Check every record before it is needed: its image without decoding it (format,
        size, a complete file: see :func:`~balgrad.data.disk._images.header_error`) and its
        text (encodable as UTF-8, no NUL character, at most ``max_text_chars`` characters).

        A bad record raises :class:`DataError` naming the image or index file and the
        line. With ``skip_bad=True`` bad records are dropped instead, with one counted
        :class:`DataWarning`, and their reasons are returned (and added to ``skipped``).
        """
        skip_images = self._images_decoded

        def check(r: Record) -> str | None:
            problem = _text_problem(r.text, max_text_chars)
            if problem is not None:
                return f"{r.source}: {problem}"
            err = None if skip_images else header_error(r.image)
            return image_error(r.image, r.source, err) if err is not None else None

        problems = Problems(self.skip_bad)
        status = self._map(check, self.records, threaded=not skip_images)
        kept, sizes = [], []
        for i, (r, problem) in enumerate(zip(self.records, status)):
            if problem is not None:
                problems.bad(problem)
                continue
            kept.append(r)
            if self._sizes is not None:
                sizes.append(self._sizes[i])
        if problems.reasons:
            if not kept:
                raise DataError(
                    f"{self.info.name} split '{self.split}' under {self.root} has no usable "
                    f"records ({len(problems)} failed validation)"
                )
            self.skipped.extend(problems.reasons)
            self._keep(kept, sizes if self._sizes is not None else None)
            problems.warn(f"{self.info.name} split '{self.split}' ({self.root})", stacklevel=2)
        return list(problems.reasons)

    def _map(self, fn: Callable[[Record], T], records: list[Record], threaded: bool) -> list[T]:
        """``fn`` over ``records`` in order; on ``workers`` threads when ``threaded``."""
        n = self._workers or min(8, (os.cpu_count() or 1) * 2)
        if threaded and n > 1 and len(records) > 16:
            with ThreadPoolExecutor(max_workers=n) as pool:
                return list(pool.map(fn, records))
        return [fn(r) for r in records]

    # -- Dataset API -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> Example:
        """One example: its image decoded now, its text and label.

        Args:
            index: The record's index (negative counts from the end).

        Returns:
            The :class:`~balgrad.data._base.Example`.

        Raises:
            IndexError: Out of range.
            DataError: The image cannot be decoded.
        """
        index = checked_index(index, len(self.records), f"{self.info.name} {self.split}")
        r = self.records[index]
        image = decode_image(r.image, r.source)
        if self.info.task == "multi_label":
            label = torch.tensor(self.labels[index], dtype=torch.float32)
        else:
            label = torch.tensor(self.labels[index], dtype=torch.int64)
        return Example(inputs={"image": image, "text": r.text}, label=label, index=index)

    @property
    def image_paths(self) -> list[Path]:
        """Each record's image path, in order."""
        return [r.image for r in self.records]

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    content_files_per_example = True

    def content_files(self) -> list[Path]:
        """The image files, whose content the fingerprint does not cover (only sizes)."""
        return self.image_paths

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.info.name!r}, split={self.split!r}, "
            f"n={len(self)}, classes={self.info.num_classes}, root={str(self.root)!r})"
        )


def _text_problem(text: str, max_chars: int | None) -> str | None:
    """Why ``text`` cannot be a record's text (None: it can); ``max_chars`` None: any length."""
    if max_chars is not None and len(text) > max_chars:
        return (
            f"text of {len(text)} characters is longer than {max_chars} (a damaged index? "
            "pass max_text_chars to validate() for longer documents)"
        )
    if "\0" in text:
        return "text holds a NUL character (binary data in the index?)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"text is not valid Unicode ({e.reason} at character {e.start})"
    return None


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
