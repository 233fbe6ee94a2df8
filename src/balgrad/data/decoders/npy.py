"""The ``.npy`` decoder every array reader uses (Kinetics-Sounds' spectrograms).

The header is parsed with numpy's own parser (``numpy.lib.format``, which evaluates
only literals), then checked before any payload is read:

* the dtype must be plain numeric (integers, unsigned integers, floats): no objects
  (pickles), no structured, sub-array, string, bytes, complex or datetime dtypes;
* the shape times the item size must equal the bytes that follow the header exactly
  (a larger shape is a truncated file or a lie that would size an allocation, a smaller
  one trailing data);
* an ``.npz`` archive, a pickle or any other file is refused.

Only then is the payload read (the file's own size, no more) and, with ``finite=True``
(the default), an array holding NaN or infinity is refused. Nothing is ever unpickled.
Every problem is a :class:`DataError` naming the file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from balgrad.errors import DataError

#: the dtype kinds read: signed and unsigned integers, floats
NUMERIC_KINDS = "iuf"
_MAX_HEADER = 10_000  # numpy's own default limit on a header's length


def decode_npy(
    path: Path,
    source: str | None = None,
    *,
    what: str = "array file",
    ndim: int | None = None,
    expected: str = "a plain numeric array",
    finite: bool = True,
) -> np.ndarray:
    """The array in ``.npy`` file ``path``, checked as the module docstring says, and
    with ``ndim`` dimensions when given (``expected`` describes what is wanted in the
    message). Raises :class:`DataError` naming ``what``, the file and ``source``."""
    path = Path(path)
    where = f"{source + ': ' if source else ''}{what} {path}"

    def bad(why: str) -> DataError:
        return DataError(f"{where} cannot be read as a .npy array: {why}")

    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            head = f.read(6)
            if head != npy_format.MAGIC_PREFIX:
                if head[:2] == b"PK":
                    raise bad("it is an .npz (zip) archive, not one .npy array")
                raise bad("it does not start with the .npy magic string")
            f.seek(0)
            dtype, shape, fortran = _header(f, bad)
            offset = f.tell()
            _check_dtype(dtype, shape, where, expected, bad)
            if ndim is not None and len(shape) != ndim:
                raise DataError(
                    f"{where} holds a {dtype} array of shape {shape}; expected {expected}"
                )
            want = math.prod(shape) * dtype.itemsize
            if want != size - offset:
                raise bad(
                    f"its header declares shape {shape} of {dtype} ({want} bytes), the file "
                    f"holds {size - offset} bytes after the header"
                )
            payload = f.read(want)
    except FileNotFoundError:
        raise DataError(f"{where} is missing") from None
    except OSError as e:
        raise bad(f"{type(e).__name__}: {e}") from None
    if len(payload) != want:  # the file shrank since its size was taken
        raise bad("it is truncated")
    arr = np.frombuffer(payload, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    arr = arr.copy(order="K")  # writable, and free of the bytes object
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{where} holds NaN or infinite values")
    return arr


def _header(f, bad) -> tuple[np.dtype, tuple[int, ...], bool]:
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f, _MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f, _MAX_HEADER)
        else:
            raise bad(f"format version {version[0]}.{version[1]} is not read (1.0 or 2.0)")
    except DataError:
        raise
    except Exception as e:  # numpy's parser on a damaged header: every failure is the file's
        raise bad(f"a damaged header ({type(e).__name__}: {e})") from None
    return dtype, tuple(shape), bool(fortran)


def _check_dtype(dtype: np.dtype, shape, where: str, expected: str, bad) -> None:
    if dtype.hasobject:
        raise bad("it holds Python objects (a pickle), which are never loaded")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise bad(f"its dtype {dtype} is structured or a sub-array; only plain numbers are read")
    if dtype.kind not in NUMERIC_KINDS:
        raise DataError(f"{where} holds a {dtype} array of shape {shape}; expected {expected}")
