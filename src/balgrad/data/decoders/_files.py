"""Opening a file for a decoder: the two failures every decoder words the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from balgrad.errors import DataError

_T = TypeVar("_T")


def read_file(path: Path, where: str, read: Callable[[BinaryIO], _T], cannot: str) -> _T:
    """``read(f)`` on ``path`` opened for binary reading. A missing file is a
    :class:`DataError` "``where`` is missing"; any other failure to open or read it,
    "``where`` ``cannot`` (the error)". What ``read`` raises itself passes through.

    Args:
        path: The file.
        where: The file as the messages name it.
        read: Reads the open file.
        cannot: The failure, as the message says it ("cannot be read").

    Returns:
        What ``read`` returns.

    Raises:
        DataError: The file is missing or cannot be read.
    """
    try:
        with path.open("rb") as f:
            return read(f)
    except FileNotFoundError:
        raise DataError(f"{where} is missing") from None
    except OSError as e:
        raise DataError(f"{where} {cannot} ({type(e).__name__}: {e})") from None


def seek_size(f: BinaryIO) -> int:
    """The size of open file ``f`` in bytes, found by seeking to its end; ``f`` is left at
    its start.

    Args:
        f: The open file.

    Returns:
        Its size in bytes.
    """
    size = f.seek(0, 2)
    f.seek(0)
    return size
