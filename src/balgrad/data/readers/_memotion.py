"""Memotion 7k (Sharma et al., SemEval-2020 Task 8) in its released layout.

::

    <data_dir>/                    (or its sub-folder memotion_dataset_7k/)
      images/<image_name>          image_1.jpg, image_2.png, ...
      labels.csv                   header: ,image_name,text_ocr,text_corrected,humour,
                                   sarcasm,offensive,motivational,overall_sentiment

The label is the humour level (``not_funny``, ``funny``, ``very_funny``, ``hilarious``:
4 ordered classes); option ``label_column`` picks another of the annotated columns.
The text is ``text_corrected``, falling back to ``text_ocr`` when that is empty.

Memotion 7k has no official split: the rows are split deterministically, stratified by
the label column, with ``test_fraction`` (default 0.2) of each class to ``test``, an
optional ``val_fraction`` (default 0: no ``val`` split) to ``val`` and the rest to
``train``. The split depends only on ``labels.csv``, ``label_column``, the fractions and
``seed`` (not on ``skip_bad``), so train and test never overlap.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions
from balgrad.data.disk._readers import (
    case_insensitive_index,
    check_text,
    check_utf8,
    class_index,
    clean_text,
    decode_text,
    iter_csv_rows,
    utf8_problem,
)
from balgrad.data.disk._records import Problems, Record
from balgrad.errors import ConfigError, DataError

# the ordered levels of each annotated column
LABEL_COLUMNS: dict[str, list[str]] = {
    "humour": ["not_funny", "funny", "very_funny", "hilarious"],
    "sarcasm": ["not_sarcastic", "general", "twisted_meaning", "very_twisted"],
    "offensive": ["not_offensive", "slight", "very_offensive", "hateful_offensive"],
    "motivational": ["not_motivational", "motivational"],
    "overall_sentiment": ["very_negative", "negative", "neutral", "positive", "very_positive"],
}
LabelColumn = Literal["humour", "sarcasm", "offensive", "motivational", "overall_sentiment"]


class MemotionDataset(DiskLoader):
    """The ``memotion`` on-disk dataset (the module docstring gives the layout): one
    annotated column as the label, splits drawn per class.

    The options are also ``--dataset-option KEY=VALUE`` flags; the arguments every disk
    dataset takes are :class:`~balgrad.data.disk.DiskLoader`'s.

    Args:
        label_column: The annotated column that is the label.
        test_fraction: The share of each class held out to test.
        val_fraction: The share of each class held out to val (0: no val split).
        seed: The split assignment's seed.
    """

    name = "memotion"
    layout = """  <data_dir>/
    images/<image_name>   (image_1.jpg, ...)
    labels.csv            (header: ,image_name,text_ocr,text_corrected,humour,sarcasm,
                           offensive,motivational,overall_sentiment)"""
    markers = ("labels.csv", "images")
    nested = ("memotion_dataset_7k",)
    splits = ("train", "val", "test")
    split_note = (
        "Memotion 7k has no official split, this loader makes 'train' and 'test' "
        "(and 'val' when val_fraction > 0)"
    )
    metrics = ("accuracy",)

    @dataclass(frozen=True)
    class Options(LoaderOptions):
        label_column: LabelColumn = "humour"
        test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2  # of each class, to test
        val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0  # to val (0: no val split)
        seed: int = 0  # of the split assignment

        def __post_init__(self) -> None:
            total = self.test_fraction + self.val_fraction
            if total >= 1.0:
                raise ConfigError(
                    f"memotion: test_fraction + val_fraction = {total} leaves nothing for train"
                )

    @classmethod
    def available_splits(cls, options: Options) -> Sequence[str]:
        """``train`` and ``test``, and ``val`` when ``val_fraction`` is positive.

        Args:
            options: The dataset's options.

        Returns:
            The split names.
        """
        return ("train", "val", "test") if options.val_fraction > 0 else ("train", "test")

    def parse(
        self, root: Path, split: str, problems: Problems, options: Options
    ) -> tuple[list[Record], IndexInfo]:
        """Read a split's index under ``root``: its records (bad ones to ``problems``) and what
        else was learned (classes, counts). See :meth:`balgrad.data.disk.DiskLoader.parse`."""
        label_column = options.label_column
        csv_path = root / "labels.csv"
        raw = self.boundary.read_bytes(csv_path, self.name, "labels file")
        rows = iter_csv_rows(decode_text(raw, csv_path), str(csv_path))
        header, cols = self._header(rows, csv_path, label_column)
        # 1) read every row, 2) assign splits over all rows, 3) parse this split's rows
        all_rows = [(line, row) for line, row in rows]
        strata: dict[str, list[int]] = defaultdict(list)
        for k, (_, row) in enumerate(all_rows):
            strata[_norm(_cell(row, cols, label_column))].append(k)
        assignment = _stratified_split(
            strata, options.test_fraction, options.val_fraction, options.seed
        )
        images_dir = self.boundary.check(self.name, "image folder", root / "images")
        listing = case_insensitive_index(images_dir)
        records: list[Record] = []
        for k, (line, row) in enumerate(all_rows):
            if assignment[k] != split:
                continue
            where = f"{csv_path} line {line}"
            try:
                image, text, label = _row(row, where, len(header), cols, options)
                # the released files mix extension case (.JPG/.jpg); match leniently
                if not (images_dir / image).exists() and image.lower() in listing:
                    image = listing[image.lower()]
                records.append(Record(images_dir / image, text, label, where))
            except DataError as e:
                problems.bad(str(e))
        settings = {
            "label_column": label_column,
            "test_fraction": options.test_fraction,
            "val_fraction": options.val_fraction,
            "seed": options.seed,
            "allow_empty_text": options.allow_empty_text,
        }
        return records, IndexInfo(
            list(LABEL_COLUMNS[label_column]), hash_bytes(raw, options_hash(settings))
        )

    def _header(self, rows, csv_path: Path, label_column: str) -> tuple[list[str], dict[str, int]]:
        """The header row, and the index of each (lower-cased) column; a missing column
        the reader needs is a :class:`DataError`."""
        try:
            _, header = next(rows)
        except StopIteration:
            raise DataError(f"{csv_path}: empty file (expected a header row)") from None
        cols = {
            check_utf8(h, f"{csv_path} line 1").strip().lower(): i for i, h in enumerate(header)
        }
        missing = [c for c in ("image_name", label_column) if c not in cols]
        if "text_corrected" not in cols and "text_ocr" not in cols:
            missing.append("text_corrected (or text_ocr)")
        if missing:
            raise DataError(
                f"{csv_path} line 1: missing column(s) {', '.join(missing)}; header is "
                f"{header!r}. Expected layout:\n{self.layout}"
            )
        return header, cols


def _cell(row: list[str], cols: dict[str, int], name: str) -> str:
    i = cols.get(name)
    return clean_text(row[i]) if i is not None and i < len(row) else ""


def _row(
    row: list[str], where: str, width: int, cols: dict[str, int], options: MemotionDataset.Options
) -> tuple[str, str, int]:
    """(image file name, text, label) of one row of ``labels.csv`` (``width``: the
    header's); a bad row is a :class:`DataError` naming ``where``."""
    problem = next(filter(None, map(utf8_problem, row)), None)
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    if len(row) < width - 1:  # tolerate a trailing empty cell
        raise DataError(f"{where}: expected {width} fields, got {len(row)}")
    name = _cell(row, cols, "image_name")
    if not name:
        raise DataError(f"{where}: empty image_name")
    label_column = options.label_column
    classes = LABEL_COLUMNS[label_column]
    raw_label = _cell(row, cols, label_column)
    label = class_index(classes).get(_norm(raw_label))
    if label is None:
        raise DataError(
            f"{where}: unknown {label_column} label {raw_label!r} (expected one of {classes})"
        )
    text = _cell(row, cols, "text_corrected") or _cell(row, cols, "text_ocr")
    check_text(text, where, options.allow_empty_text)
    return name, text, label


def _norm(label: str) -> str:
    return "_".join(label.strip().lower().replace("-", " ").split())


def _stratified_split(
    strata: dict[str, list[int]], test_fraction: float, val_fraction: float, seed: int
) -> dict[int, str]:
    """Per stratum: shuffle with a seed of its own, first ``round(n*test)`` to test, then val."""
    out: dict[int, str] = {}
    for key in sorted(strata):
        idx = list(strata[key])
        random.Random(f"memotion:{seed}:{key}").shuffle(idx)
        n = len(idx)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n_test + n_val >= n:  # keep at least one row of each class for training
            n_val = max(0, min(n_val, n - n_test - 1))
            n_test = max(0, min(n_test, n - 1))
        for j, k in enumerate(idx):
            out[k] = "test" if j < n_test else "val" if j < n_test + n_val else "train"
    return out
