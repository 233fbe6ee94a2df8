"""The IDX file format of (Fashion-)MNIST: gzip or plain, checked header and size."""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
from pathlib import Path

import numpy as np

from balgrad.errors import DataError

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip-compressed, detected by content).

    Checks the magic number (two zero bytes, a known type code, the number of
    dimensions), ``ndim`` when given, and that the payload has exactly the announced
    size. Raises :class:`DataError` naming the file on any problem.

    Args:
        path: The file.
        ndim: The number of dimensions wanted, or None.

    Returns:
        The array.

    Raises:
        DataError: The file is missing or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = _gunzip_bounded(raw, path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc}); the file may be truncated") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero0, zero1, code, dims = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or dims == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} "
            "(expected 0x0000 + type code 08/09/0B/0C/0D/0E + number of dimensions)"
        )
    if ndim is not None and dims != ndim:
        raise DataError(f"{path}: expected an IDX file with {ndim} dimension(s), found {dims}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise DataError(
            f"{path}: truncated IDX file: dimensions {list(shape)} need {expected} data bytes, "
            f"found {got}"
        )
    if got > expected:
        raise DataError(
            f"{path}: IDX file has trailing bytes after the {expected} data bytes of "
            f"dimensions {list(shape)}"  # (a gzipped file is read no further than that)
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))  # a writable copy


#: deflate expands data at most about 1032-fold
_MAX_DEFLATE_RATIO = 1032


def _gunzip_bounded(packed: bytes, path: Path) -> bytes:
    """The decompressed IDX bytes, read only as far as its header says (plus one byte, so
    trailing data is still found): a small file whose header, or whose compressed
    stream, promises gigabytes costs nothing. A declared size beyond what ``packed``
    could expand to is a :class:`DataError`; a bad header is left to :func:`read_idx`."""
    with gzip.GzipFile(fileobj=io.BytesIO(packed)) as f:
        head = f.read(4)
        if len(head) < 4 or head[3] == 0 or head[2] not in _IDX_DTYPES:
            return head
        head += f.read(4 * head[3])
        if len(head) < 4 + 4 * head[3]:
            return head
        shape = struct.unpack(f">{head[3]}I", head[4:])
        size = math.prod(shape) * _IDX_DTYPES[head[2]].itemsize
        if size > _MAX_DEFLATE_RATIO * len(packed):
            raise DataError(
                f"{path}: IDX header declares dimensions {list(shape)} ({size} bytes), more "
                f"than its {len(packed)} compressed bytes can hold"
            )
        return head + f.read(size + 1)
