"""UPMC Food-101 (Wang et al., 2015) in its released layout.

::

    <data_dir>/                      (or a sub-folder UPMC_Food101/ or food101/)
      images/train/<class_name>/<file>.jpg
      images/test/<class_name>/<file>.jpg
      texts/train_titles.csv         rows: <file>.jpg,<text>,<class_name>  (no header)
      texts/test_titles.csv

Classes are the sorted class folder names of ``images/train`` (101 in the real data).
There is no official validation split: asking for ``val`` raises
:class:`MissingSplitError` and the trainer carves one from ``train``.
"""

from __future__ import annotations

from pathlib import Path

from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions
from balgrad.data.disk._readers import (
    check_text,
    class_index,
    decode_text,
    iter_csv_rows,
    utf8_problem,
)
from balgrad.data.disk._records import MissingSplitError, Problems, Record
from balgrad.errors import DataError

_HEADER_FIRST = {"image", "img", "image_name", "image_path", "file", "filename", "path", "id"}
_HEADER_LAST = {"label", "labels", "class", "class_name", "category", "target"}


class Food101Dataset(DiskLoader):
    """The ``food101`` on-disk dataset (the module docstring gives the layout): 101 classes,
    a recipe page's image and title per record; no validation split.

    It takes the arguments every disk dataset takes (:class:`~balgrad.data.disk.DiskLoader`)
    and no options of its own.
    """

    name = "food101"
    layout = """  <data_dir>/
    images/train/<class_name>/<file>.jpg
    images/test/<class_name>/<file>.jpg
    texts/train_titles.csv   (rows: <file>.jpg,<text>,<class_name>; header optional)
    texts/test_titles.csv"""
    markers = ("images", "texts")
    nested = ("UPMC_Food101", "food101")
    splits = ("train", "test")
    split_note = (
        "UPMC Food-101 has only train, test (no official validation split: carve one from 'train')"
    )
    metrics = ("accuracy",)

    def parse(
        self, root: Path, split: str, problems: Problems, options: LoaderOptions
    ) -> tuple[list[Record], IndexInfo]:
        """Read a split's index under ``root``: its records (bad ones to ``problems``) and what
        else was learned (classes, counts). See :meth:`balgrad.data.disk.DiskLoader.parse`."""
        csv_path = root / "texts" / f"{split}_titles.csv"
        if not csv_path.is_file():
            raise MissingSplitError(
                f"{self.name}: split file {csv_path} is missing; expected layout:\n{self.layout}"
            )
        image_dir = root / "images" / split
        classes = self._classes(root, image_dir)
        to_idx = class_index(classes)
        raw = self.boundary.read_bytes(csv_path, self.name, "split file")
        records: list[Record] = []
        first = True
        for line, row in iter_csv_rows(decode_text(raw, csv_path), str(csv_path)):
            where = f"{csv_path} line {line}"
            problem = next(filter(None, map(utf8_problem, row)), None)
            if problem is not None:
                first = False
                problems.bad(f"{where}: {problem}")
                continue
            if first:
                first = False
                if (
                    row[0].strip().lower() in _HEADER_FIRST
                    or row[-1].strip().lower() in _HEADER_LAST
                ):
                    continue  # a header row; the original files have none
            try:
                records.append(self._record(row, where, root, image_dir, to_idx, options))
            except DataError as e:
                problems.bad(str(e))
        content_hash = hash_bytes(
            raw, "\n".join(classes), options_hash({"allow_empty_text": options.allow_empty_text})
        )
        return records, IndexInfo(classes, content_hash)

    def _classes(self, root: Path, image_dir: Path) -> list[str]:
        """The class folder names of ``images/train`` (else of the split's own folder)."""
        for folder in (image_dir, root / "images" / "train"):  # listed below
            self.boundary.check(self.name, "image folder", folder)
        if not image_dir.is_dir():
            raise DataError(
                f"{self.name}: image folder {image_dir} is missing; expected layout:\n{self.layout}"
            )
        classes = _class_folders(root / "images" / "train") or _class_folders(image_dir)
        if not classes:
            raise DataError(
                f"{self.name}: no class folders under {root / 'images' / 'train'}; "
                f"expected layout:\n{self.layout}"
            )
        return classes

    def _record(
        self,
        row: list[str],
        where: str,
        root: Path,
        image_dir: Path,
        to_idx: dict[str, int],
        options: LoaderOptions,
    ) -> Record:
        """The record of one row of a titles file; a bad row is a :class:`DataError`."""
        if len(row) < 3:
            raise DataError(f"{where}: expected 3 fields (image, text, label), got {len(row)}")
        # tolerate unquoted commas inside the text: first field is the image,
        # last is the label, everything between is the text
        image_name = Path(row[0].strip()).name
        label_name = row[-1].strip()
        text = ",".join(row[1:-1]).strip()
        if not image_name:
            raise DataError(f"{where}: empty image file name")
        if label_name not in to_idx:
            raise DataError(
                f"{where}: unknown class '{label_name}' (not a folder under "
                f"{root / 'images' / 'train'}; {len(to_idx)} classes known)"
            )
        check_text(text, where, options.allow_empty_text)
        return Record(image_dir / label_name / image_name, text, to_idx[label_name], where)


def _class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
