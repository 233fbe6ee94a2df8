"""CUB-200-2011 (Wah et al., 2011) with the text descriptions of Reed et al. (2016).

::

    <data_dir>/                          (data_dir may also be CUB_200_2011/ itself)
      CUB_200_2011/
        images/<class folder>/<file>.jpg
        images.txt                       "<image id> <class folder>/<file>.jpg"
        image_class_labels.txt           "<image id> <class id>"      (1-based)
        train_test_split.txt             "<image id> <1 = train, 0 = test>"
        classes.txt                      "<class id> <class folder>"
      text_c10/<class folder>/<file stem>.txt     (10 sentences, one per line)

The text folder is looked for, in order, at ``CUB_200_2011/text_c10``,
``<data_dir>/text_c10``, ``<data_dir>/cvpr2016_cub/text_c10``, ``CUB_200_2011/text``
and ``<data_dir>/text`` (the layout of the AttnGAN "birds" bundle); option
``text_dir`` overrides. Option ``sentence`` picks the text: ``"join"`` (default, all
sentences space-joined), ``"first"``, ``"random"`` (one sentence per image, fixed by
``seed``) or an integer index. 200 classes; splits ``train`` and ``test`` only.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from balgrad.data._base import check_label
from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._layout import layout_error
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions, path_option
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._readers import check_text, check_utf8, decode_text, split_lines
from balgrad.data.disk._records import Problems, Record
from balgrad.errors import DataError

INDEX_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
SentenceMode = Literal["join", "first", "random"]


class CUBDataset(DiskLoader):
    """The ``cub`` on-disk dataset (the module docstring gives the layout): 200 bird classes,
    one image and its text descriptions per record.

    The options are also ``--dataset-option KEY=VALUE`` flags; the arguments every disk
    dataset takes are :class:`~balgrad.data.disk.DiskLoader`'s.

    Args:
        sentence: ``"join"``, another sentence mode, or a sentence index.
        seed: The draws of ``sentence="random"``.
        text_dir: The descriptions' folder (looked for by default).
    """

    name = "cub"
    layout = """  <data_dir>/
    CUB_200_2011/
      images/<class folder>/<file>.jpg
      images.txt               (<image id> <class folder>/<file>.jpg)
      image_class_labels.txt   (<image id> <class id>)
      train_test_split.txt     (<image id> <1|0>)
      classes.txt              (<class id> <class folder>)
    text_c10/<class folder>/<file stem>.txt   (Reed et al.; or CUB_200_2011/text_c10)"""
    markers = ("images", *INDEX_FILES)
    nested = ("CUB_200_2011",)
    splits = ("train", "test")
    split_note = (
        "CUB-200-2011 has only train, test (no official validation split: carve one from 'train')"
    )
    metrics = ("accuracy",)

    @dataclass(frozen=True)
    class Options(LoaderOptions):
        sentence: SentenceMode | Annotated[int, Field(ge=0)] = "join"  # or a sentence index
        seed: int = 0  # of sentence="random"
        # default: looked for; relative to the data folder (the one holding CUB_200_2011/)
        text_dir: str | os.PathLike[str] | None = path_option("folder")

    def parse(
        self, root: Path, split: str, problems: Problems, options: Options
    ) -> tuple[list[Record], IndexInfo]:
        """Read a split's index under ``root``: its records (bad ones to ``problems``) and what
        else was learned (classes, counts). See :meth:`balgrad.data.disk.DiskLoader.parse`."""
        sentence, seed, allow_empty_text = options.sentence, options.seed, options.allow_empty_text
        texts_root = self.text_dir = self._find_text_dir(root, options.text_dir)
        text_boundary = FolderBoundary(texts_root)

        raws = {f: self.boundary.read_bytes(root / f, self.name) for f in INDEX_FILES}
        tables = {f: _read_pairs(root / f, raws[f]) for f in INDEX_FILES}

        # classes.txt: ids must be 1..N
        class_rows = tables["classes.txt"]
        class_ids = sorted(int(_int(k, w)) for k, _, w in class_rows)
        if class_ids != list(range(1, len(class_rows) + 1)):
            raise DataError(
                f"{root / 'classes.txt'}: class ids must be 1..{len(class_rows)} without gaps"
            )
        by_id = {_int(k, w): check_utf8(v, w) for k, v, w in class_rows}
        classes = [by_id[i] for i in range(1, len(class_rows) + 1)]

        labels = _index(tables["image_class_labels.txt"], problems)
        is_train = _index(tables["train_test_split.txt"], problems)
        want = "1" if split == "train" else "0"
        records: list[Record] = []
        for key, rel, where in tables["images.txt"]:
            try:
                if key not in is_train:
                    raise DataError(
                        f"{where}: image id {key} has no entry in {root / 'train_test_split.txt'}"
                    )
                flag, flag_where = is_train[key]
                if flag not in ("0", "1"):
                    raise DataError(f"{flag_where}: split flag {flag!r} is not 0 or 1")
                if flag != want:
                    continue
                if key not in labels:
                    raise DataError(
                        f"{where}: image id {key} has no entry in {root / 'image_class_labels.txt'}"
                    )
                cls, cls_where = labels[key]
                label = check_label(_int(cls, cls_where) - 1, len(classes), cls_where)
                rel_path = Path(check_utf8(rel, where))
                text_file = texts_root / rel_path.parent / f"{rel_path.stem}.txt"
                text_boundary.check(where, "text file", text_file)
                text = _pick_sentence(text_file, sentence, seed, key, where)
                check_text(text, f"{where} ({text_file})", allow_empty_text)
                records.append(Record(root / "images" / rel_path, text, label, where))
            except DataError as e:
                problems.bad(str(e))
        content_hash = hash_bytes(
            *raws.values(),
            options_hash(
                {"sentence": sentence, "seed": seed, "allow_empty_text": allow_empty_text}
            ),
        )
        return records, IndexInfo(classes, content_hash)

    @classmethod
    def data_folder(cls, root: Path) -> Path:
        # the text folder of the release lies next to CUB_200_2011/, not inside it
        """The folder holding ``CUB_200_2011/`` (the descriptions lie beside it).

        Args:
            root: The dataset root.

        Returns:
            The folder.
        """
        return root.parent

    def _find_text_dir(self, root: Path, text_dir: str | os.PathLike[str] | None) -> Path:
        if text_dir is not None:
            p = self.option_path(text_dir)
            if not p.is_dir():
                raise DataError(f"{self.name}: text_dir {p} does not exist")
            return p
        parent = root.parent
        candidates = [
            root / "text_c10",
            parent / "text_c10",
            parent / "cvpr2016_cub" / "text_c10",
            root / "text",
            parent / "text",
        ]
        for c in candidates:
            if c.is_dir():
                return self.boundary.check(self.name, "text folder", c)
        looked = ", ".join(map(str, candidates))
        raise layout_error(
            self.name,
            parent,
            [f"text_c10/ (Reed et al. descriptions; looked in {looked})"],
            self.layout,
        )


def _read_pairs(path: Path, raw: bytes) -> list[tuple[str, str, str]]:
    """Lines ``<key> <value>`` -> ``(key, value, "<file> line N")``; malformed lines raise.
    A value that is not UTF-8 is the caller's to refuse (a record's, or the file's)."""
    out = []
    for i, line in enumerate(split_lines(decode_text(raw, path)), start=1):
        if not line.strip():
            continue
        where = f"{path} line {i}"
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{where}: expected '<id> <value>', got {line.strip()!r}")
        out.append((parts[0], parts[1].strip(), where))
    return out


def _index(rows: list[tuple[str, str, str]], problems: Problems) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for key, value, where in rows:
        if key in out:
            problems.bad(f"{where}: duplicate image id {key} (first at {out[key][1]})")
            continue
        out[key] = (value, where)
    return out


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{where}: {value!r} is not an integer") from None


def _pick_sentence(path: Path, mode: str | int, seed: int, key: str, where: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{where}: text file {path} is missing") from None
    except OSError as e:
        raise DataError(f"{where}: cannot read text file {path}: {e}") from None
    text = decode_text(raw, path)
    check_utf8(text, f"{where}: text file {path}")
    sentences = [s.strip() for s in split_lines(text)]
    sentences = [s for s in sentences if s]
    if not sentences:
        return ""
    if mode == "join":
        return " ".join(sentences)
    if mode == "first":
        return sentences[0]
    if mode == "random":
        return random.Random(f"cub:{seed}:{key}").choice(sentences)
    assert isinstance(mode, int)
    if mode >= len(sentences):
        raise DataError(f"{path}: has {len(sentences)} sentence(s), no sentence index {mode}")
    return sentences[mode]
