"""Hateful Memes (Kiela et al., 2020) in its released layout.

::

    <data_dir>/                  (or a sub-folder data/ or hateful_memes/)
      img/<id>.png
      train.jsonl                {"id": 42953, "img": "img/42953.png", "label": 0, "text": "..."}
      dev.jsonl                  (phase 2 release: dev_seen.jsonl, dev_unseen.jsonl)
      test.jsonl                 (public release: no "label"; phase 2: test_seen.jsonl, test_unseen.jsonl)

Binary (0 = not hateful, 1 = hateful); AUROC is the primary metric, accuracy is also
reported. Split ``val`` reads ``dev.jsonl`` (else ``dev_seen.jsonl``); ``test`` reads
``test_seen.jsonl`` when present (it carries labels), else ``test.jsonl``. The file
names ``dev_seen``, ``dev_unseen``, ``test_seen``, ``test_unseen`` work as split names,
and ``split_file=`` names any JSONL file under the root.
"""

from __future__ import annotations

import os

from balgrad.data._io import (
    DiskDataset,
    MissingSplitError,
    Problems,
    Record,
    canonical_split,
    check_text,
    clean_text,
    decode_text,
    hash_bytes,
    iter_jsonl,
    options_hash,
    read_bytes,
    resolve_root,
)
from balgrad.data.base import DatasetInfo, check_label
from balgrad.errors import DataError

NAME = "hateful_memes"
CLASSES = ["not_hateful", "hateful"]
LAYOUT = """  <data_dir>/
    img/<id>.png
    train.jsonl   (lines of {"id", "img": "img/<id>.png", "label": 0|1, "text"})
    dev.jsonl     (or dev_seen.jsonl / dev_unseen.jsonl)
    test.jsonl    (or test_seen.jsonl / test_unseen.jsonl)"""

SPLIT_FILES = {
    "train": ("train.jsonl",),
    "val": ("dev.jsonl", "dev_seen.jsonl"),
    "test": ("test_seen.jsonl", "test.jsonl"),
    "dev_seen": ("dev_seen.jsonl",),
    "dev_unseen": ("dev_unseen.jsonl",),
    "test_seen": ("test_seen.jsonl",),
    "test_unseen": ("test_unseen.jsonl",),
}


class HatefulMemesDataset(DiskDataset):
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str = "train",
        *,
        skip_bad: bool = False,
        allow_empty_text: bool = False,
        split_file: str | None = None,
        check_files: bool = True,
        workers: int | None = None,
    ) -> None:
        root = resolve_root(data_dir, NAME, ["img"], LAYOUT, nested=("data", "hateful_memes"))
        split = canonical_split(split)
        if split_file is not None:
            names: tuple[str, ...] = (split_file,)
        elif split in SPLIT_FILES:
            names = SPLIT_FILES[split]
        else:
            raise MissingSplitError(
                f"{NAME}: unknown split '{split}'; use one of {', '.join(SPLIT_FILES)} "
                "or split_file=<name>.jsonl"
            )
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            raise MissingSplitError(
                f"{NAME}: split file for '{split}' is missing: looked for "
                f"{' or '.join(str(root / n) for n in names)}; expected layout:\n{LAYOUT}"
            )

        raw = read_bytes(path, NAME, "split file")
        problems = Problems(skip_bad)
        objs = list(iter_jsonl(decode_text(raw, path), str(path), problems))
        if objs and not any("label" in o for _, o in objs):
            raise DataError(
                f"{NAME}: {path} has no labels (split '{split}'); the public Hateful Memes "
                "test set is unlabeled. Evaluate on split 'val' (dev.jsonl / dev_seen.jsonl), "
                "or on 'test_seen' if you have the labeled test_seen.jsonl"
            )
        records: list[Record] = []
        for line, obj in objs:
            where = f"{path} line {line}"
            try:
                img = obj.get("img")
                if img is None:
                    if "id" not in obj:
                        raise DataError(f"{where}: missing field 'img' (and no 'id')")
                    img = f"img/{obj['id']}.png"
                if not isinstance(img, str) or not img.strip():
                    raise DataError(f"{where}: field 'img' must be a non-empty string, got {img!r}")
                if "text" not in obj:
                    raise DataError(f"{where}: missing field 'text'")
                text = check_text(clean_text(obj["text"]), where, allow_empty_text)
                if "label" not in obj:
                    raise DataError(f"{where}: missing field 'label'")
                label = _parse_label(obj["label"], where)
                records.append(Record(root / img.strip(), text, label, where))
            except DataError as e:
                problems.bad(str(e))

        info = DatasetInfo(
            name=NAME,
            task="single_label",
            classes=list(CLASSES),
            primary_metric="auroc",
            metrics=["auroc", "accuracy"],
        )
        super().__init__(
            info=info,
            split=split,
            root=root,
            records=records,
            problems=problems,
            content_hash=hash_bytes(
                raw, path.name, options_hash({"allow_empty_text": allow_empty_text})
            ),
            check_files=check_files,
            workers=workers,
        )


def _parse_label(value: object, where: str) -> int:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise DataError(f"{where}: label {value!r} is not 0 or 1")
    return check_label(value, len(CLASSES), where)
