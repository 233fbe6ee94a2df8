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

import os
from pathlib import Path

from balgrad.data._io import (
    DiskDataset,
    MissingSplitError,
    Problems,
    Record,
    canonical_split,
    check_text,
    class_index,
    decode_text,
    hash_bytes,
    iter_csv_rows,
    options_hash,
    read_bytes,
    resolve_root,
)
from balgrad.data.base import DatasetInfo
from balgrad.errors import DataError

NAME = "food101"
SPLITS = ("train", "test")
LAYOUT = """  <data_dir>/
    images/train/<class_name>/<file>.jpg
    images/test/<class_name>/<file>.jpg
    texts/train_titles.csv   (rows: <file>.jpg,<text>,<class_name>; header optional)
    texts/test_titles.csv"""

_HEADER_FIRST = {"image", "img", "image_name", "image_path", "file", "filename", "path", "id"}
_HEADER_LAST = {"label", "labels", "class", "class_name", "category", "target"}


class Food101Dataset(DiskDataset):
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str = "train",
        *,
        skip_bad: bool = False,
        allow_empty_text: bool = False,
        check_files: bool = True,
        workers: int | None = None,
    ) -> None:
        root = resolve_root(
            data_dir, NAME, ["images", "texts"], LAYOUT, nested=("UPMC_Food101", "food101")
        )
        split = canonical_split(split)
        if split not in SPLITS:
            raise MissingSplitError(
                f"{NAME}: no split '{split}'; UPMC Food-101 has only {', '.join(SPLITS)} "
                "(no official validation split: carve one from 'train')"
            )
        csv_path = root / "texts" / f"{split}_titles.csv"
        if not csv_path.is_file():
            raise MissingSplitError(
                f"{NAME}: split file {csv_path} is missing; expected layout:\n{LAYOUT}"
            )
        image_dir = root / "images" / split
        if not image_dir.is_dir():
            raise DataError(
                f"{NAME}: image folder {image_dir} is missing; expected layout:\n{LAYOUT}"
            )
        classes = _class_folders(root / "images" / "train") or _class_folders(image_dir)
        if not classes:
            raise DataError(
                f"{NAME}: no class folders under {root / 'images' / 'train'}; expected layout:\n{LAYOUT}"
            )
        to_idx = class_index(classes)

        raw = read_bytes(csv_path, NAME, "split file")
        problems = Problems(skip_bad)
        records: list[Record] = []
        first = True
        for line, row in iter_csv_rows(decode_text(raw, csv_path), str(csv_path)):
            where = f"{csv_path} line {line}"
            if first:
                first = False
                if (
                    row[0].strip().lower() in _HEADER_FIRST
                    or row[-1].strip().lower() in _HEADER_LAST
                ):
                    continue  # a header row; the original files have none
            try:
                if len(row) < 3:
                    raise DataError(
                        f"{where}: expected 3 fields (image, text, label), got {len(row)}"
                    )
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
                        f"{root / 'images' / 'train'}; {len(classes)} classes known)"
                    )
                check_text(text, where, allow_empty_text)
                records.append(
                    Record(
                        image=image_dir / label_name / image_name,
                        text=text,
                        label=to_idx[label_name],
                        source=where,
                    )
                )
            except DataError as e:
                problems.bad(str(e))

        info = DatasetInfo(
            name=NAME,
            task="single_label",
            classes=classes,
            primary_metric="accuracy",
            metrics=["accuracy"],
        )
        super().__init__(
            info=info,
            split=split,
            root=root,
            records=records,
            problems=problems,
            content_hash=hash_bytes(
                raw, "\n".join(classes), options_hash({"allow_empty_text": allow_empty_text})
            ),
            check_files=check_files,
            workers=workers,
        )


def _class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
