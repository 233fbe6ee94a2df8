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
Classes come from option ``classes`` (names in index order), else ``classes.txt``, else
the union of the labels of every split file (train, val, test): the sorted distinct
names, or ``"0".."K-1"`` when every label is an integer, with a :class:`DataWarning`
naming each class only one of several split files holds (a typo makes such a class).
Every text and path field must be a JSON string (``null`` text reads as empty); any
other type is an error naming file, line and field. Field names are options
(``image_field``, ``text_field``, ``label_field``, ``labels_field``); ``dataset_name``
sets ``info.name`` (default ``"generic"``).

An index whose header declares its modalities (``photo:image,sound:audio,...``), or the
option ``modalities``, is read by :mod:`balgrad.data.readers._generic_modal` instead (image files,
text, WAV audio, ``.npy`` features); ``GenericDataset(...)`` returns that reader's dataset.
"""

from __future__ import annotations

import inspect
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from balgrad.data._base import TaskKind, check_label
from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._readers import (
    check_text,
    check_utf8,
    class_index,
    decode_text,
    iter_csv_rows,
    iter_jsonl,
    json_type,
    split_lines,
    string_field,
    utf8_problem,
)
from balgrad.data.disk._records import DataWarning, MissingSplitError, Problems, Record
from balgrad.errors import ConfigError, DataError

NAME = "generic"
EXTENSIONS = (".jsonl", ".csv")
SPLIT_STEMS = {"val": ("val", "valid", "validation", "dev")}


class GenericDataset(DiskLoader):
    """The ``generic`` on-disk dataset: image and text (or the modalities an index
    declares) from one JSONL or CSV file per split (see the module docstring).

    The options are also ``--dataset-option KEY=VALUE`` flags; the arguments every disk
    dataset takes are :class:`~balgrad.data.disk.DiskLoader`'s.

    Args:
        dataset_name: The name shown in ``info`` and messages.
        task: ``"auto"`` (multi-label when records carry ``labels_field``),
            ``"single_label"`` or ``"multi_label"``.
        image_field, text_field, label_field, labels_field: The records' field names.
        primary_metric: The metric that picks the best epoch (default: the first).
        metrics: The metrics reported (default: by task).
        classes: The class names in index order (instead of ``classes.txt``).
        modalities: ``{name: kind}`` of an index that declares its modalities.
        sample_rate: Audio: every clip resampled to it (None: one rate for all).
        audio_seconds: Audio: every clip looped or cropped to this length.
    """

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
        task: Literal["auto", "single_label", "multi_label"] = (
            "auto"  # auto: multi-label when records carry labels_field
        )
        image_field: str = "image"
        text_field: str = "text"
        label_field: str = "label"
        labels_field: str = "labels"
        primary_metric: str | None = None  # default: the first metric
        metrics: list[str] | None = None  # default: by task
        classes: list[str] | None = None  # the class names in index order (over classes.txt)
        # an index that declares its modalities (balgrad.data.readers._generic_modal):
        modalities: dict[str, str] | None = None  # name -> kind, for plainly named columns
        sample_rate: int | None = None  # audio: every clip resampled to it (None: one rate)
        audio_seconds: float = 3.0  # audio: every clip looped or cropped to this length

    def __new__(cls, data_dir: Any = None, split: str = "train", **options: Any):
        """An index that declares its modalities (``<name>:<kind>`` columns, or the option
        ``modalities``) is read by :class:`~balgrad.data.readers._generic_modal.GenericModalDataset`;
        the image+text index by this class, as before."""
        if cls is GenericDataset:
            from balgrad.data.readers._generic_modal import GenericModalDataset, declared_modalities

            declared = declared_modalities(data_dir, options)
            if declared is not None:
                return GenericModalDataset(data_dir, split, declared, **options)
        return super().__new__(cls)

    @classmethod
    def dataset_name(cls, options: Options) -> str:
        """The name shown in ``info`` and messages: the ``dataset_name`` option.

        Args:
            options: The dataset's options.

        Returns:
            The name.
        """
        return options.dataset_name

    def parse(
        self, root: Path, split: str, problems: Problems, options: Options
    ) -> tuple[list[Record], IndexInfo]:
        """Read a split's index under ``root``: its records (bad ones to ``problems``) and what
        else was learned (classes, counts). See :meth:`balgrad.data.disk.DiskLoader.parse`."""
        name = options.dataset_name
        if options.modalities is not None:
            raise ConfigError(
                f"{name}: option modalities declares an index of other modalities; load it "
                "with load_dataset_from_disk('generic', ...)"
            )
        fields = (
            options.image_field,
            options.text_field,
            options.label_field,
            options.labels_field,
        )
        path = split_file(root, split)
        if path is None:
            present = sorted(p.name for p in root.iterdir() if p.suffix in EXTENSIONS)
            raise MissingSplitError(
                f"{name}: split file for '{split}' is missing: no {_looked_for(split)} in {root} "
                f"(found: {', '.join(present) or 'none'}); expected layout:\n{self.layout}"
            )
        raw = self.boundary.read_bytes(path, name, "split file")
        rows = _read_rows(path, raw, fields, problems)
        task = _resolve_task(options.task, rows, options.label_field, options.labels_field)
        label_key = options.labels_field if task == "multi_label" else options.label_field
        classes, classes_src = _classes(
            self.boundary, root, split, rows, label_key, fields, name, options.classes
        )
        to_idx = class_index(classes)
        records: list[Record] = []
        for line, obj in rows:
            where = f"{path} line {line}"
            try:
                image, text = _image_and_text(obj, where, fields[:2], label_key, options)
                label = _record_label(obj, label_key, task, to_idx, where)
                # an absolute path stays absolute; it must still lie inside data_dir
                records.append(Record(path.parent / image, text, label, where))
            except DataError as e:
                problems.bad(str(e))
        metrics = list(options.metrics) if options.metrics else _default_metrics(task)
        settings = {"fields": fields, "task": task, "allow_empty_text": options.allow_empty_text}
        content_hash = hash_bytes(raw, "\n".join(classes), classes_src, options_hash(settings))
        resolved_task: TaskKind = task  # type: ignore[assignment]
        return records, IndexInfo(
            classes, content_hash, resolved_task, metrics, options.primary_metric or metrics[0]
        )


def _image_and_text(
    obj: dict[str, Any],
    where: str,
    fields: tuple[str, ...],
    label_key: str,
    options: GenericDataset.Options,
) -> tuple[str, str]:
    """The image path and the text of one image+text index row (``fields``: their
    fields), once it is checked to hold them and ``label_key``."""
    image_field, text_field = fields
    for f in (image_field, text_field, label_key):
        if f not in obj:
            raise DataError(f"{where}: missing field '{f}'")
    image = string_field(obj, image_field, where)
    if not image:
        raise DataError(f"{where}: empty field '{image_field}'")
    return image, check_text(string_field(obj, text_field, where), where, options.allow_empty_text)


def _looked_for(split: str) -> str:
    """The split file names looked for, as an error message lists them."""
    return " / ".join(f"{s}{e}" for s in SPLIT_STEMS.get(split, (split,)) for e in EXTENSIONS)


def _resolve_task(
    task: str, rows: list[tuple[int, dict[str, Any]]], label: str, labels: str
) -> str:
    """The task: the option, or with ``"auto"`` told by the first record's fields
    (multi-label when it has the ``labels`` field and not the ``label`` one)."""
    if task != "auto":
        return task
    first = next((obj for _, obj in rows), None)
    multi = first is not None and labels in first and label not in first
    return "multi_label" if multi else "single_label"


def _record_label(obj: dict[str, Any], key: str, task: str, to_idx: dict[str, int], where: str):
    """The label of a record: a class index, or for ``multi_label`` the sorted distinct
    indices of its list."""
    if key not in obj:
        raise DataError(f"{where}: missing field '{key}'")
    if task != "multi_label":
        return _label_index(obj[key], to_idx, where, key)
    values = _as_list(obj[key], where)
    if not values:
        raise DataError(f"{where}: empty '{key}' list")
    return tuple(sorted({_label_index(v, to_idx, where, key) for v in values}))


def _default_metrics(task: str) -> list[str]:
    return ["f1_macro", "f1_micro"] if task == "multi_label" else ["accuracy"]


def split_file(root: Path, split: str) -> Path | None:
    """The split's file under ``root`` (``<stem>.jsonl`` before ``<stem>.csv``), or None.

    Args:
        root: The dataset root.
        split: The canonical split.

    Returns:
        The file, or None.
    """
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
    header = [check_utf8(h, f"{path} line 1").strip() for h in header]
    image_field, text_field, label_field, labels_field = fields
    missing = [f for f in (image_field, text_field) if f is not None and f not in header]
    if label_field not in header and labels_field not in header:
        missing.append(f"{label_field} (or {labels_field})")
    if missing:
        raise DataError(
            f"{path} line 1: header lacks column(s) {', '.join(missing)}; header is {header!r}"
        )
    out = []
    for line, row in rows:
        problem = next(filter(None, map(utf8_problem, row)), None)
        if problem is not None:
            problems.bad(f"{path} line {line}: {problem}")
            continue
        if len(row) != len(header):
            problems.bad(f"{path} line {line}: expected {len(header)} fields, got {len(row)}")
            continue
        out.append((line, dict(zip(header, row))))
    return out


def _classes(
    boundary: FolderBoundary,
    root: Path,
    split: str,
    rows: list[tuple[int, dict[str, Any]]],
    label_key: str,
    fields: tuple[str, ...],
    name: str,
    given: list[str] | None,
) -> tuple[list[str], str]:
    """The class names in index order, and where they came from (for the content hash):
    the ``classes`` option, else ``classes.txt``, else the union over every split file."""
    if given is not None:
        classes = _checked_classes([str(c).strip() for c in given], f"{name}: option classes")
        return classes, "option:" + "\n".join(classes)
    classes_path = root / "classes.txt"
    if classes_path.is_file():
        text = decode_text(boundary.read_bytes(classes_path, name, "classes file"), classes_path)
        names = []
        for i, line in enumerate(split_lines(text), start=1):
            if check_utf8(line, f"{classes_path} line {i}").strip():
                names.append(line.strip())
        classes = _checked_classes(names, str(classes_path))
        return classes, "classes.txt:" + "\n".join(classes)
    # the union over the split files: a class no split file names cannot be known
    per_split: dict[str, list[Any]] = {}
    for s in dict.fromkeys(("train", "val", "test", split)):
        path = split_file(root, s)
        if path is None:
            continue
        split_rows = (
            rows
            if s == split
            else _read_rows(
                path, boundary.read_bytes(path, name, "split file"), fields, Problems(True)
            )
        )
        per_split[path.name] = _label_values(split_rows, label_key, label_key == fields[3])
    values = [v for vs in per_split.values() for v in vs]
    if not values:
        raise DataError(
            f"{name}: cannot infer classes: no '{label_key}' values in the split files of "
            f"{root} (add a classes.txt, or pass the classes option)"
        )
    ints = [_int_or_none(v) for v in values]
    if all(i is not None and i >= 0 for i in ints):
        classes = [str(i) for i in range(max(ints) + 1)]  # type: ignore[type-var]
        source = "inferred-int"
    else:
        classes = sorted({str(v).strip() for v in values if _int_or_none(v) is None})
        source = "inferred-names"
    _warn_single_split(name, per_split, classes, source == "inferred-int")
    return classes, source


def _checked_classes(classes: list[str], where: str) -> list[str]:
    if not classes or not all(classes):
        raise DataError(f"{where}: no class names" if not classes else f"{where}: empty class name")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise DataError(f"{where}: duplicate class names {dup}")
    return classes


def _label_values(rows: list[tuple[int, dict[str, Any]]], key: str, multi: bool) -> list[Any]:
    values: list[Any] = []
    for line, obj in rows:
        if key not in obj:
            continue
        try:
            values.extend(_as_list(obj[key], f"line {line}") if multi else [obj[key]])
        except DataError:
            continue
    return [
        v
        for v in values
        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and not _fraction(v)
    ]


def _fraction(v: Any) -> bool:
    return isinstance(v, float) and not v.is_integer()


def _warn_single_split(
    name: str, per_split: dict[str, list[Any]], classes: list[str], by_index: bool
) -> None:
    """Warn, when there are several split files, for each class only one of them names
    (a typo in a label makes such a class)."""
    if len(per_split) < 2:
        return
    seen: dict[str, list[str]] = {c: [] for c in classes}
    for file, vs in per_split.items():
        for c in {str(_int_or_none(v)) if by_index else str(v).strip() for v in vs}:
            if c in seen:
                seen[c].append(file)
    lonely = {c: files[0] for c, files in seen.items() if len(files) == 1}
    if lonely:
        listed = ", ".join(f"{c!r} (only in {f})" for c, f in list(lonely.items())[:10])
        more = f" and {len(lonely) - 10} more" if len(lonely) > 10 else ""
        warnings.warn(
            f"{name}: classes inferred from the union of {', '.join(per_split)}; "
            f"{len(lonely)} of {len(classes)} appear in one split only: {listed}{more}. "
            "A typo in a label? Pin the class set with classes.txt or the classes option",
            DataWarning,
            stacklevel=7,  # as the skip_bad warning: at load_dataset_from_disk
        )


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


def _label_index(v: Any, to_idx: dict[str, int], where: str, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)) or _fraction(v):
        raise DataError(
            f"{where}: field '{field}' must hold class names or indices, got {json_type(v)} {v!r}"
        )
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


# inspect.signature (and so the registry's option list) reads __new__ before __init__
GenericDataset.__new__.__signature__ = inspect.signature(GenericDataset.__init__)  # type: ignore[attr-defined]
