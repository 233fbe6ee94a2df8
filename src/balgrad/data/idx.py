"""The IDX file format of (Fashion-)MNIST: gzip or plain, checked header and size."""

from __future__ import annotations

import gzip
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
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
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
            f"{path}: IDX file has {got - expected} trailing bytes after the data of "
            f"dimensions {list(shape)}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))  # a writable copy
