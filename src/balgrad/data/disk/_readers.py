"""Reading index files: bytes, text, CSV rows, JSONL objects, JSON documents; text cleaning."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from balgrad.data.disk._records import Problems
from balgrad.errors import DataError


def read_bytes(path: Path, dataset: str, what: str = "index file") -> bytes:
    """A dataset file's bytes.

    Args:
        path: The file.
        dataset: The dataset, for the message.
        what: What the file is, for the message.

    Returns:
        The bytes.

    Raises:
        DataError: The file is missing or unreadable.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{dataset}: {what} {path} is missing") from None
    except OSError as e:
        raise DataError(f"{dataset}: cannot read {what} {path}: {e}") from None


def decode_text(data: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM). A byte that is not valid UTF-8 is kept as a lone
    surrogate (``surrogateescape``), so the records around it decode faithfully and the
    record holding it is refused by :func:`utf8_problem`, naming its line.

    Args:
        data: The file's bytes.
        path: The file, for the message.

    Returns:
        The text.

    Raises:
        DataError: A UTF-16 file.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: UTF-16 text (it starts with a UTF-16 BOM); save it as UTF-8")
    return data.decode("utf-8-sig", errors="surrogateescape")


def split_lines(text: str) -> list[str]:
    """The lines of an index file, split at a newline (LF, CRLF, or CR in a file without
    LF) only: ``str.splitlines`` also splits at U+2028, U+0085, form feeds..., which a
    JSON string or a text may hold.

    Args:
        text: The text.

    Returns:
        The lines, without their ends.
    """
    if "\n" not in text:
        text = text.replace("\r", "\n")  # classic Mac line ends
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def utf8_problem(text: str) -> str | None:
    """Why ``text`` (from :func:`decode_text`) did not decode, or None when it did.

    Args:
        text: A decoded text.

    Returns:
        The reason, or None.
    """
    for i, ch in enumerate(text):
        if "\udc80" <= ch <= "\udcff":
            return (
                f"not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02X} at character {i + 1}); "
                "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            )
    return None


def check_utf8(text: str, where: str) -> str:
    """``text``, or :class:`DataError` naming ``where`` when it did not decode.

    Args:
        text: A decoded text.
        where: Where it comes from, for the message.

    Returns:
        ``text``.

    Raises:
        DataError: It holds bytes that are not UTF-8.
    """
    problem = utf8_problem(text)
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    return text


def parse_json(data: bytes, path: Path) -> Any:
    """One JSON document; malformed JSON or bytes that are not UTF-8 are a
    :class:`DataError` naming file, line and column.

    Args:
        data: The file's bytes.
        path: The file, for the message.

    Returns:
        The parsed document.

    Raises:
        DataError: Malformed JSON or bytes that are not UTF-8.
    """
    text = decode_text(data, path)
    for lineno, line in enumerate(split_lines(text), start=1):
        if utf8_problem(line) is not None:
            check_utf8(line, f"{path} line {lineno}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path} line {e.lineno}: malformed JSON ({e.msg} at column {e.colno})"
        ) from None


def iter_csv_rows(text: str, where: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line number, row)`` for each CSV record, skipping blank lines.

    Args:
        text: The CSV text.
        where: The file, for the message.
        delimiter: The field delimiter.

    Yields:
        (line number, fields).

    Raises:
        DataError: A malformed record.
    """
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
    """Yield ``(line number, object)`` per non-blank JSONL line; bad lines go to ``problems``.

    Args:
        text: The JSONL text.
        where: The file, for the messages.
        problems: Where bad lines go.

    Yields:
        (line number, object).
    """
    for i, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        problem = utf8_problem(line)
        if problem is not None:
            problems.bad(f"{where} line {i}: {problem}")
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
    """A text cell of a CSV or spreadsheet export (NaN reads as empty).

    Args:
        value: The cell.

    Returns:
        The text, stripped.
    """
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from a spreadsheet export
        return ""
    return str(value).strip()


def string_field(obj: dict[str, Any], field: str, where: str) -> str:
    """``obj[field]`` as a text: a JSON string (``null`` reads as empty); any other JSON
    type is a :class:`DataError` naming ``where`` and the field (never its Python repr).

    Args:
        obj: A JSON object.
        field: The field.
        where: The record, for the message.

    Returns:
        The text.

    Raises:
        DataError: Another JSON type.
    """
    value = obj[field]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(
            f"{where}: field '{field}' must be a string, got {json_type(value)} {_short(value)}"
        )
    return value.strip()


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type.

    Args:
        value: A parsed JSON value.

    Returns:
        ``"string"``, ``"number"``, ``"object"``...
    """
    for t, name in ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string")):
        if isinstance(value, t):
            return name
    return {list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    s = json.dumps(value, ensure_ascii=False, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def check_text(text: str, where: str, allow_empty_text: bool) -> str:
    """A record's text, refused when empty unless ``allow_empty_text``.

    Args:
        text: The text.
        where: The record, for the message.
        allow_empty_text: Keep an empty text.

    Returns:
        ``text``.

    Raises:
        DataError: An empty text not allowed.
    """
    if not text and not allow_empty_text:
        raise DataError(f"{where}: empty text (pass allow_empty_text=True to keep such records)")
    return text


def case_insensitive_index(folder: Path) -> dict[str, str]:
    """``lower-case name -> actual name`` for the files of ``folder`` (empty if absent).

    Args:
        folder: A folder.

    Returns:
        The index.
    """
    try:
        return {n.lower(): n for n in os.listdir(folder)}
    except OSError:
        return {}


def class_index(names: Iterable[str]) -> dict[str, int]:
    """Each class name's index, in the order given.

    Args:
        names: The class names.

    Returns:
        ``{name: index}``.
    """
    return {n: i for i, n in enumerate(names)}
