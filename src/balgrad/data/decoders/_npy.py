"""The ``.npy`` and ``.npz`` decoder every array reader uses (Kinetics-Sounds'
spectrograms; the digits and keypad ``.npz`` caches).

The header is parsed with numpy's own parser (``numpy.lib.format``, which evaluates
only literals), then checked before any payload is read:

* the dtype must be plain numeric (integers, unsigned integers, floats): no objects
  (pickles), no structured, sub-array, string, bytes, complex or datetime dtypes;
* the shape must be non-negative integers, and times the item size must equal the bytes that follow the header exactly
  (a larger shape is a truncated file or a lie that would size an allocation, a smaller
  one trailing data);
* an ``.npz`` archive, a pickle or any other file is refused.

Only then is the payload read (the file's own size, no more) and, with ``finite=True``
(the default), an array holding NaN or infinity is refused. Nothing is ever unpickled.
In an ``.npz`` archive each member is read so, after its zip entry's declared size is
checked against its compressed size. Every problem is a :class:`DataError` naming the
file.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from balgrad.data.decoders._files import read_file, seek_size
from balgrad.errors import DataError

#: the dtype kinds read: signed and unsigned integers, floats
NUMERIC_KINDS = "iuf"
_MAX_HEADER = 10_000  # numpy's own default limit on a header's length
_CANNOT = "cannot be read as a .npy array"


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
    message). Raises :class:`DataError` naming ``what``, the file and ``source``.

    Args:
        path: The ``.npy`` file.
        source: Where the path comes from (a CSV line), for the message.
        what: What the file is, for the message.
        ndim: The number of dimensions wanted, or None for any.
        expected: What is wanted, for the message.
        finite: Refuse NaN and infinite values.

    Returns:
        The array.

    Raises:
        DataError: The file is missing, damaged or not what is wanted.
    """
    path = Path(path)
    where = f"{source + ': ' if source else ''}{what} {path}"
    return read_file(
        path,
        where,
        lambda f: _read_array(f, seek_size(f), where, NUMERIC_KINDS, ndim, expected, finite),
        _CANNOT,
    )


def read_npy_header(
    path: Path,
    source: str | None = None,
    *,
    what: str = "array file",
    ndim: int | tuple[int, ...] | None = None,
    expected: str = "a plain numeric array",
) -> tuple[np.dtype, tuple[int, ...]]:
    """``(dtype, shape)`` of ``.npy`` file ``path``, every check of :func:`decode_npy`
    made but the finiteness of the values, without reading the payload (as
    :func:`~balgrad.data.decoders._wav.read_wav_header` for WAV). ``ndim``: the allowed
    number(s) of dimensions.

    Args:
        path: The ``.npy`` file.
        source: Where the path comes from, for the message.
        what: What the file is, for the message.
        ndim: The allowed number(s) of dimensions, or None.
        expected: What is wanted, for the message.

    Returns:
        (dtype, shape).

    Raises:
        DataError: The file is missing, damaged or not what is wanted.
    """
    path = Path(path)
    where = f"{source + ': ' if source else ''}{what} {path}"
    dtype, shape, _ = read_file(
        path,
        where,
        lambda f: _checked_header(f, seek_size(f), where, NUMERIC_KINDS, None, expected),
        _CANNOT,
    )
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and len(shape) not in allowed:
        raise DataError(f"{where} holds a {dtype} array of shape {shape}; expected {expected}")
    return dtype, shape


#: deflate expands data at most about 1032-fold: a zip member declaring more is a lie
_MAX_DEFLATE_RATIO = 1032


def decode_npz(
    path: Path, *, what: str = "array archive", kinds: str = NUMERIC_KINDS, finite: bool = True
) -> dict[str, np.ndarray]:
    """Every array of ``.npz`` archive ``path``, each read as :func:`decode_npy` reads a
    file (dtype kinds ``kinds``: add ``"U"`` for text, ``"b"`` for booleans), after its
    zip entry's declared size is checked against its compressed size (stored: equal;
    deflated: at most :data:`_MAX_DEFLATE_RATIO` times); any other compression, a member
    that is not ``.npy``, or a damaged archive is a :class:`DataError` naming the file.

    Args:
        path: The ``.npz`` archive.
        what: What the archive is, for the message.
        kinds: The numpy dtype kinds accepted.
        finite: Refuse NaN and infinite values.

    Returns:
        ``{name: array}``.

    Raises:
        DataError: The archive is missing, damaged or holds what is refused.
    """
    path = Path(path)
    where = f"{what} {path}"
    arrays = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                member = f"{where} member {info.filename!r}"
                if not info.filename.endswith(".npy"):
                    raise DataError(f"{member} is not an .npy array")
                if info.compress_type == zipfile.ZIP_STORED:
                    bound = info.compress_size
                elif info.compress_type == zipfile.ZIP_DEFLATED:
                    bound = info.compress_size * _MAX_DEFLATE_RATIO + 1024
                else:
                    raise DataError(f"{member} uses zip compression {info.compress_type}")
                if info.file_size > bound:
                    raise DataError(
                        f"{member} declares {info.file_size} bytes from {info.compress_size} "
                        "compressed, more than the compression can give"
                    )
                with z.open(info) as f:
                    arr = _read_array(f, info.file_size, member, kinds, None, "", finite)
                    if f.read(1):  # also makes zipfile check the CRC
                        raise DataError(f"{member} holds bytes after its array")
                arrays[info.filename[: -len(".npy")]] = arr
    except FileNotFoundError:
        raise DataError(f"{where} is missing") from None
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise DataError(f"{where} cannot be read as .npz ({type(e).__name__}: {e})") from None
    return arrays


def _read_array(
    f, size: int, where: str, kinds: str, ndim: int | None, expected: str, finite: bool
) -> np.ndarray:
    """The array in ``.npy`` stream ``f`` of ``size`` bytes, checked before its payload
    is read (module docstring)."""
    dtype, shape, fortran = _checked_header(f, size, where, kinds, ndim, expected)
    want = math.prod(shape) * dtype.itemsize
    payload = f.read(want)
    if len(payload) != want:  # the file shrank since its size was taken
        raise DataError(f"{where} cannot be read as a .npy array: it is truncated")
    arr = np.frombuffer(payload, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    arr = arr.copy(order="K")  # writable, and free of the bytes object
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{where} holds NaN or infinite values")
    return arr


def _checked_header(
    f, size: int, where: str, kinds: str, ndim: int | None, expected: str
) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, Fortran order) of ``.npy`` stream ``f`` of ``size`` bytes, checked
    against the bytes after the header (module docstring); ``f`` is left at the payload."""
    expected = expected or f"dtype kinds {kinds!r}"

    def bad(why: str) -> DataError:
        return DataError(f"{where} cannot be read as a .npy array: {why}")

    head = f.read(6)
    if head != npy_format.MAGIC_PREFIX:
        if head[:2] == b"PK":
            raise bad("it is an .npz (zip) archive, not one .npy array")
        raise bad("it does not start with the .npy magic string")
    dtype, shape, fortran = _header(f, bad)
    offset = f.tell()
    if not all(type(d) is int and d >= 0 for d in shape):  # numpy's parser lets -1, True by
        raise bad(f"its header's shape {shape} is not a tuple of non-negative integers")
    _check_dtype(dtype, shape, where, kinds, expected, bad)
    if ndim is not None and len(shape) != ndim:
        raise DataError(f"{where} holds a {dtype} array of shape {shape}; expected {expected}")
    want = math.prod(shape) * dtype.itemsize
    if want != size - offset:
        raise bad(
            f"its header declares shape {shape} of {dtype} ({want} bytes), the file "
            f"holds {size - offset} bytes after the header"
        )
    return dtype, shape, fortran


def _header(f, bad) -> tuple[np.dtype, tuple[int, ...], bool]:
    try:
        version = npy_format.read_magic(_Rewound(f))
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


class _Rewound:
    """``f`` after its 6-byte magic prefix was read, as ``read_magic`` expects it before."""

    def __init__(self, f) -> None:
        self.f, self.pending = f, npy_format.MAGIC_PREFIX

    def read(self, n: int) -> bytes:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out + self.f.read(n - len(out))


def _check_dtype(dtype: np.dtype, shape, where: str, kinds: str, expected: str, bad) -> None:
    if dtype.hasobject:
        raise bad("it holds Python objects (a pickle), which are never loaded")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise bad(f"its dtype {dtype} is structured or a sub-array; only plain numbers are read")
    if dtype.kind not in kinds:
        raise DataError(f"{where} holds a {dtype} array of shape {shape}; expected {expected}")
