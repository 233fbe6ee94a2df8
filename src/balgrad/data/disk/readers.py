"""Reading index files: bytes, text, CSV rows, JSONL objects, JSON documents; text cleaning."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from balgrad.data.disk.records import Problems
from balgrad.errors import DataError


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


def parse_json(data: bytes, path: Path) -> Any:
    """One JSON document; malformed JSON is a :class:`DataError` naming file, line and column."""
    try:
        return json.loads(decode_text(data, path))
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path} line {e.lineno}: malformed JSON ({e.msg} at column {e.colno})"
        ) from None


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


def case_insensitive_index(folder: Path) -> dict[str, str]:
    """``lower-case name -> actual name`` for the files of ``folder`` (empty if absent)."""
    try:
        return {n.lower(): n for n in os.listdir(folder)}
    except OSError:
        return {}


def class_index(names: Iterable[str]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}
