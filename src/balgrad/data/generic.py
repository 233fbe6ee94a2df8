"""A generic image+text classification dataset: one JSONL or CSV file per split.

::

    <data_dir>/
      train.jsonl | train.csv
      val.jsonl   | val.csv      (also valid / validation / dev)
      test.jsonl  | test.csv
      classes.txt                (optional: one class name per line, in index order)
      <images inside data_dir; paths are relative to the split file's folder>

Each record (JSONL object, or CSV row with a header) has ``image`` (path), ``text`` and
either ``label`` (a class name or a 0-based class index: single-label) or ``labels``
(a list of names/indices: multi-label; in CSV a JSON list or ``|``-separated).
Classes come from ``classes.txt`` when present; otherwise they are inferred from the
*train* file: the sorted distinct names, or ``"0".."K-1"`` when every train label is an
integer. Field names are options (``image_field``, ``text_field``, ``label_field``,
``labels_field``); ``dataset_name`` sets ``info.name`` (default ``"generic"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balgrad.data.base import TaskKind, check_label
from balgrad.data.disk.content_hash import hash_bytes, options_hash
from balgrad.data.disk.loader import DiskLoader, IndexInfo, LoaderOptions, choice
from balgrad.data.disk.readers import (
    check_text,
    class_index,
    clean_text,
    decode_text,
    iter_csv_rows,
    iter_jsonl,
    read_bytes,
)
from balgrad.data.disk.records import MissingSplitError, Problems, Record
from balgrad.errors import DataError

NAME = "generic"
EXTENSIONS = (".jsonl", ".csv")
SPLIT_STEMS = {"val": ("val", "valid", "validation", "dev")}
TASKS = ("auto", "single_label", "multi_label")


class GenericDataset(DiskLoader):
    name = NAME
    layout = """  <data_dir>/
    train.jsonl | train.csv   (fields: image, text, label | labels)
    val.jsonl   | val.csv     (optional; also valid / validation / dev)
    test.jsonl  | test.csv
    classes.txt               (optional; one class name per line)"""
    splits = None  # whichever split files exist

    @dataclass(frozen=True)
    class Options(LoaderOptions):
        dataset_name: str = NAME  # info.name
        task: str = choice("auto", TASKS)  # auto: multi-label when records carry labels_field
        image_field: str = "image"
        text_field: str = "text"
        label_field: str = "label"
        labels_field: str = "labels"
        primary_metric: str | None = None  # default: the first metric
        metrics: list[str] | None = None  # default: by task

    @classmethod
    def dataset_name(cls, options: Options) -> str:
        return options.dataset_name

    def parse(
        self, root: Path, split: str, problems: Problems, options: Options
    ) -> tuple[list[Record], IndexInfo]:
        name, task, allow_empty_text = options.dataset_name, options.task, options.allow_empty_text
        fields = (
            options.image_field,
            options.text_field,
            options.label_field,
            options.labels_field,
        )
        image_field, text_field, label_field, labels_field = fields
        path = split_file(root, split)
        if path is None:
            present = sorted(p.name for p in root.iterdir() if p.suffix in EXTENSIONS)
            looked = " / ".join(
                f"{s}{e}" for s in SPLIT_STEMS.get(split, (split,)) for e in EXTENSIONS
            )
            raise MissingSplitError(
                f"{name}: split file for '{split}' is missing: no {looked} in {root} "
                f"(found: {', '.join(present) or 'none'}); expected layout:\n{self.layout}"
            )
        raw = read_bytes(path, name, "split file")
        rows = _read_rows(path, raw, fields, problems)

        # task: from the option, else from the first record's fields
        if task == "auto":
            first = next((obj for _, obj in rows), None)
            multi = first is not None and labels_field in first and label_field not in first
            task = "multi_label" if multi else "single_label"
        label_key = labels_field if task == "multi_label" else label_field

        classes, classes_src = _classes(root, split, rows, label_key, fields, name)
        to_idx = class_index(classes)

        records: list[Record] = []
        for line, obj in rows:
            where = f"{path} line {line}"
            try:
                for f in (image_field, text_field, label_key):
                    if f not in obj:
                        raise DataError(f"{where}: missing field '{f}'")
                image = clean_text(obj[image_field])
                if not image:
                    raise DataError(f"{where}: empty field '{image_field}'")
                text = check_text(clean_text(obj[text_field]), where, allow_empty_text)
                if task == "multi_label":
                    values = _as_list(obj[label_key], where)
                    if not values:
                        raise DataError(f"{where}: empty '{label_key}' list")
                    label: int | tuple[int, ...] = tuple(
                        sorted({_label_index(v, to_idx, where) for v in values})
                    )
                else:
                    label = _label_index(obj[label_key], to_idx, where)
                # an absolute path stays absolute; it must still lie inside data_dir
                records.append(Record(path.parent / image, text, label, where))
            except DataError as e:
                problems.bad(str(e))

        default_metrics = ["f1_macro", "f1_micro"] if task == "multi_label" else ["accuracy"]
        metrics = list(options.metrics) if options.metrics else default_metrics
        content_hash = hash_bytes(
            raw,
            "\n".join(classes),
            classes_src,
            options_hash({"fields": fields, "task": task, "allow_empty_text": allow_empty_text}),
        )
        resolved_task: TaskKind = task  # type: ignore[assignment]
        return records, IndexInfo(
            classes, content_hash, resolved_task, metrics, options.primary_metric or metrics[0]
        )


def split_file(root: Path, split: str) -> Path | None:
    """The split's file under ``root`` (``<stem>.jsonl`` before ``<stem>.csv``), or None."""
    for stem in SPLIT_STEMS.get(split, (split,)):
        for ext in EXTENSIONS:
            p = root / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def _read_rows(
    path: Path, raw: bytes, fields: tuple[str, ...], problems: Problems
) -> list[tuple[int, dict[str, Any]]]:
    text = decode_text(raw, path)
    if path.suffix == ".jsonl":
        return list(iter_jsonl(text, str(path), problems))
    rows = iter_csv_rows(text, str(path))
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header row)") from None
    header = [h.strip() for h in header]
    image_field, text_field, label_field, labels_field = fields
    missing = [f for f in (image_field, text_field) if f not in header]
    if label_field not in header and labels_field not in header:
        missing.append(f"{label_field} (or {labels_field})")
    if missing:
        raise DataError(
            f"{path} line 1: header lacks column(s) {', '.join(missing)}; header is {header!r}"
        )
    out = []
    for line, row in rows:
        if len(row) != len(header):
            problems.bad(f"{path} line {line}: expected {len(header)} fields, got {len(row)}")
            continue
        out.append((line, dict(zip(header, row))))
    return out


def _classes(
    root: Path,
    split: str,
    rows: list[tuple[int, dict[str, Any]]],
    label_key: str,
    fields: tuple[str, ...],
    name: str,
) -> tuple[list[str], str]:
    classes_path = root / "classes.txt"
    if classes_path.is_file():
        raw = read_bytes(classes_path, name, "classes file")
        classes = [c.strip() for c in decode_text(raw, classes_path).splitlines() if c.strip()]
        if not classes:
            raise DataError(f"{classes_path}: no class names")
        if len(set(classes)) != len(classes):
            raise DataError(f"{classes_path}: duplicate class names")
        return classes, "classes.txt:" + "\n".join(classes)
    # infer from train
    if split == "train":
        train_rows = rows
    else:
        train_path = split_file(root, "train")
        if train_path is None:
            raise DataError(
                f"{name}: cannot infer classes for split '{split}': no classes.txt and no "
                f"train.jsonl / train.csv in {root}"
            )
        train_rows = _read_rows(
            train_path, read_bytes(train_path, name, "split file"), fields, Problems(True)
        )
    values: list[Any] = []
    for line, obj in train_rows:
        if label_key not in obj:
            continue
        try:
            v = obj[label_key]
            values.extend(_as_list(v, f"line {line}") if label_key == fields[3] else [v])
        except DataError:
            continue
    if not values:
        raise DataError(
            f"{name}: cannot infer classes: no '{label_key}' values in the train file of {root} "
            "(add a classes.txt)"
        )
    ints = [_int_or_none(v) for v in values]
    if all(i is not None and i >= 0 for i in ints):
        return [str(i) for i in range(max(ints) + 1)], "inferred-int"  # type: ignore[type-var]
    classes = sorted({str(v).strip() for v in values if _int_or_none(v) is None})
    return classes, "inferred-names"


def _int_or_none(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return None


def _label_index(v: Any, to_idx: dict[str, int], where: str) -> int:
    if isinstance(v, str) and v.strip() in to_idx:
        return to_idx[v.strip()]
    i = _int_or_none(v)
    if i is None:
        raise DataError(
            f"{where}: unknown label {v!r} (not among the {len(to_idx)} classes "
            f"{list(to_idx)[:10]}{'...' if len(to_idx) > 10 else ''})"
        )
    return check_label(i, len(to_idx), where)


def _as_list(v: Any, where: str) -> list[Any]:
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            try:
                out = json.loads(s)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: malformed JSON list {s!r} ({e.msg})") from None
            if not isinstance(out, list):
                raise DataError(f"{where}: expected a list of labels, got {s!r}")
            return out
        return [p.strip() for p in s.split("|") if p.strip()]
    raise DataError(f"{where}: expected a list of labels, got {v!r}")
