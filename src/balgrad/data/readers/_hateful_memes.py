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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from balgrad.data._base import check_label
from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions, path_option
from balgrad.data.disk._readers import check_text, decode_text, iter_jsonl, json_type, string_field
from balgrad.data.disk._records import MissingSplitError, Problems, Record
from balgrad.errors import DataError

CLASSES = ["not_hateful", "hateful"]

SPLIT_FILES = {
    "train": ("train.jsonl",),
    "val": ("dev.jsonl", "dev_seen.jsonl"),
    "test": ("test_seen.jsonl", "test.jsonl"),
    "dev_seen": ("dev_seen.jsonl",),
    "dev_unseen": ("dev_unseen.jsonl",),
    "test_seen": ("test_seen.jsonl",),
    "test_unseen": ("test_unseen.jsonl",),
}


class HatefulMemesDataset(DiskLoader):
    """The ``hateful_memes`` on-disk dataset (the module docstring gives the layout): binary,
    AUROC first.

    The options are also ``--dataset-option KEY=VALUE`` flags; the arguments every disk
    dataset takes are :class:`~balgrad.data.disk.DiskLoader`'s.

    Args:
        split_file: Any JSONL file under the root, read whatever the split.
    """

    name = "hateful_memes"
    layout = """  <data_dir>/
    img/<id>.png
    train.jsonl   (lines of {"id", "img": "img/<id>.png", "label": 0|1, "text"})
    dev.jsonl     (or dev_seen.jsonl / dev_unseen.jsonl)
    test.jsonl    (or test_seen.jsonl / test_unseen.jsonl)"""
    markers = ("img",)
    nested = ("data", "hateful_memes")
    splits = tuple(SPLIT_FILES)
    split_note = f"use one of {', '.join(SPLIT_FILES)} or split_file=<name>.jsonl"
    metrics = ("auroc", "accuracy")

    @dataclass(frozen=True)
    class Options(LoaderOptions):
        # any JSONL file under the root, whatever the split
        split_file: str | None = path_option("file")

    @classmethod
    def available_splits(cls, options: Options) -> Sequence[str] | None:
        """The splits the dataset has; None when ``split_file`` names the file (any split name).

        Args:
            options: The dataset's options.

        Returns:
            The split names, or None.
        """
        return None if options.split_file is not None else cls.splits

    def parse(
        self, root: Path, split: str, problems: Problems, options: Options
    ) -> tuple[list[Record], IndexInfo]:
        """Read a split's index under ``root``: its records (bad ones to ``problems``) and what
        else was learned (classes, counts). See :meth:`balgrad.data.disk.DiskLoader.parse`."""
        split_file = options.split_file
        if split_file is not None:
            candidates = [self.option_path(split_file)]
        else:
            candidates = [root / n for n in SPLIT_FILES[split]]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise MissingSplitError(
                f"{self.name}: split file for '{split}' is missing: looked for "
                f"{' or '.join(map(str, candidates))}; expected layout:\n{self.layout}"
            )

        raw = self.boundary.read_bytes(path, self.name, "split file")
        objs = list(iter_jsonl(decode_text(raw, path), str(path), problems))
        if objs and not any("label" in o for _, o in objs):
            raise DataError(
                f"{self.name}: {path} has no labels (split '{split}'); the public Hateful Memes "
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
                    mid = obj["id"]
                    if isinstance(mid, bool) or not isinstance(mid, (int, str)):
                        raise DataError(
                            f"{where}: field 'id' must be a number or a string, "
                            f"got {json_type(mid)} {mid!r}"
                        )
                    img = f"img/{mid}.png"
                if not isinstance(img, str) or not img.strip():
                    raise DataError(
                        f"{where}: field 'img' must be a non-empty string, "
                        f"got {json_type(img)} {img!r}"
                    )
                if "text" not in obj:
                    raise DataError(f"{where}: missing field 'text'")
                text = check_text(string_field(obj, "text", where), where, options.allow_empty_text)
                if "label" not in obj:
                    raise DataError(f"{where}: missing field 'label'")
                label = _parse_label(obj["label"], where)
                records.append(Record(root / img.strip(), text, label, where))
            except DataError as e:
                problems.bad(str(e))
        content_hash = hash_bytes(
            raw, path.name, options_hash({"allow_empty_text": options.allow_empty_text})
        )
        return records, IndexInfo(list(CLASSES), content_hash)


def _parse_label(value: object, where: str) -> int:
    """0 or 1, as a JSON number (or its string, as converted files hold it)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: field 'label' {value!r} ({json_type(value)}) is not 0 or 1")
    return check_label(value, len(CLASSES), where)
