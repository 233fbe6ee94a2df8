"""Reading a user's pickle of numpy arrays in plain containers, without trusting it.

A pickle is a program for a stack machine. :class:`SafeUnpickler` runs it on the pure-Python
unpickler of the standard library (``pickle._Unpickler``), with its opcodes replaced or
wrapped so that a file can neither run code, nor crash the process, nor cost more than its
size justifies. Every refusal is a :class:`~balgrad.errors.DataError` naming the file and
what was refused.

**Code.** Only the globals that numpy arrays and plain containers pickle through can be
named, and each is replaced by a checking wrapper (the "Restricting Globals" recipe of the
``pickle`` documentation, carried through to the arguments). ``numpy.ndarray`` is only a
token for ``_reconstruct``; nothing else is ever called. Opcodes that instantiate classes
(``INST``, ``OBJ``, ``NEWOBJ``, ``NEWOBJ_EX``, ``EXT*``) are refused.

**Plain arrays only.** A dtype is admitted only if it is plain: bool, integer, float,
complex, fixed-width bytes ``S`` or text ``U``, byte order as pickled, no fields, no
subarray, no metadata, and a nonzero item size. The state numpy applies to a dtype is
rebuilt from those validated values (never the file's flags or field table: a field whose
offset lies outside the item read outside its buffer), and a dtype must have its state
before an array uses it. An array's shape, dtype and data are checked *before* numpy builds
it: the data holds exactly shape x item size bytes, every dimension is at most the file's
size, and the result is contiguous (no zero-stride or broadcast view). The one exception to
"no object dtype": a plain ``O`` array whose pickled items are all scalars (str, bytes,
numbers, None), exactly one per element, because the field's files hold ids that way;
numpy itself does not check the item count (a short list crashes it).

**Bounded cost.** The loader counts what it allocates against a budget of
``BUDGET_FACTOR`` (4) x the file's size + ``BUDGET_SLACK`` (64 MiB): ``OPCODE_COST``
(256 bytes, more than the Python objects any one opcode creates: a container, a memo or
stack slot) per opcode, plus the size of every bytes, text, integer and array payload.
A declared length is compared with the bytes left in the file before anything is read or
allocated, and an array's bytes are charged before numpy copies them, so no single step
can allocate more than the file holds (text decoded from n bytes is at most 4n; it is
charged once made). Containers form a tree: a memo reference (``GET``) to a list, dict,
set or a tuple holding containers is refused, and so is ``DUP``, so a shared-reference
graph cannot make a later traversal exponential; a memo reference to a flat tuple is
charged as a copy, and so is any other memo reference (to text, bytes or an array: a
list of a million references to one array would be copied a million times by whatever
stacks it). Containers nest at most ``MAX_DEPTH`` (32) deep, checked before a key
is hashed or an item inserted.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import re
import struct
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from balgrad.errors import DataError

BUDGET_FACTOR = 4
BUDGET_SLACK = 64 * 2**20
OPCODE_COST = 256
MAX_DEPTH = 32
#: the most dimensions an array may have (numpy's own limit is 64)
MAX_NDIM = 32

_CONTAINERS = (list, tuple, dict, set, frozenset)  # OrderedDict is a dict
# the values an object array (ids) may hold
_SCALARS = (str, bytes, int, float, complex, bool, type(None), np.generic)
# dtype specs as numpy's dtype.__reduce__ writes them: kind and item size
_PLAIN_SPEC = re.compile(r"(b1|[iu](1|2|4|8)|f(2|4|8|12|16)|c(8|16|24|32)|[US]\d{1,9}|O[48])")
_BYTE_ORDERS = ("<", ">", "|", "=")

# the opcodes numpy arrays and plain containers are never pickled with, and which run or
# share something: instantiation, the extension registry, DUP (shares a container)
_REFUSED_OPCODES = {
    pickle.INST: "INST",
    pickle.OBJ: "OBJ",
    pickle.NEWOBJ: "NEWOBJ",
    pickle.NEWOBJ_EX: "NEWOBJ_EX",
    pickle.EXT1: "EXT1",
    pickle.EXT2: "EXT2",
    pickle.EXT4: "EXT4",
    pickle.DUP: "DUP",
}
# opcodes whose pushed object (bytes, text, integer) is charged at its size once made
_PAYLOAD_OPCODES = {
    op[0]
    for op in (
        pickle.INT,
        pickle.LONG,
        pickle.LONG1,
        pickle.LONG4,
        pickle.FLOAT,
        pickle.STRING,
        pickle.BINSTRING,
        pickle.SHORT_BINSTRING,
        pickle.UNICODE,
        pickle.BINUNICODE,
        pickle.SHORT_BINUNICODE,
        pickle.BINUNICODE8,
        pickle.BINBYTES,
        pickle.SHORT_BINBYTES,
        pickle.BINBYTES8,
    )
}


class _BoundedReader:
    """A file whose reads may not ask for more bytes than are left in it: a declared length
    is checked before the read allocates a buffer of that length."""

    def __init__(self, file: Any, source: Path) -> None:
        self._file = file
        self.source = source
        start = file.tell()
        self.size = file.seek(0, io.SEEK_END) - start
        file.seek(start)
        self.left = self.size

    def _claim(self, n: int) -> None:
        if n > self.left:
            raise DataError(
                f"{self.source}: not a readable pickle (truncated or corrupt: an item "
                f"declares {n} bytes, only {self.left} are left in the file)"
            )
        self.left -= n

    def read(self, n: int) -> bytes:
        self._claim(n)
        return self._file.read(n)

    def readinto(self, buf: Any) -> int:
        self._claim(len(buf))
        return self._file.readinto(buf)

    def readline(self) -> bytes:
        line = self._file.readline()
        self.left -= len(line)
        return line


class _Token:
    """``numpy.ndarray`` as a pickle names it: only ``_reconstruct``'s first argument."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _Token()


def _wrapper(fn):
    fn.safe_global = True
    return fn


def _copy_cost(obj: Any) -> int:
    """Bytes a copy of a leaf, or of a flat tuple or frozenset of leaves, would take."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (str, bytes, bytearray)):
        return len(obj)
    if isinstance(obj, (tuple, frozenset)):
        return 8 * len(obj) + sum(_copy_cost(x) for x in obj)
    return 0


def _nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape) * itemsize


class SafeUnpickler(pickle._Unpickler):
    """The unpickler of a dataset pickle: numpy arrays of plain dtypes in plain containers,
    at a cost bounded by the file's size (see the module docstring for every rule).

    ``file`` is a binary file open for reading, at the start of the pickle; ``source`` the
    path named in errors.

    Args:
        file: The open binary file.
        source: Its path, for messages.
    """

    def __init__(self, file: Any, source: str | Path) -> None:
        self.source = Path(source)
        self._reader = _BoundedReader(file, self.source)
        # latin1: numpy's advice for pickles written by Python 2 (a no-op for Python 3 ones)
        super().__init__(self._reader, encoding="latin1")
        self.budget = BUDGET_FACTOR * self._reader.size + BUDGET_SLACK
        self.spent = 0
        self._depths: dict[int, tuple[Any, int]] = {}  # nested containers: id -> (obj, depth)
        self._pending: dict[int, Any] = {}  # arrays and dtypes awaiting their BUILD
        self._globals = {
            **{(m, "_reconstruct"): self._reconstruct for m in _NUMPY_CORE},
            **{(m, "scalar"): self._scalar for m in _NUMPY_CORE},
            **{(m, "_frombuffer"): self._frombuffer for m in _NUMPY_NUMERIC},
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): self._dtype,
            # protocol <= 2 pickles spell bytes as _codecs.encode(str, "latin1")
            ("_codecs", "encode"): self._encode,
            ("builtins", "bytes"): self._bytes,  # protocol <= 2 spells b"" as bytes()
            ("builtins", "bytearray"): self._bytearray,
            ("builtins", "set"): self._set,
            ("builtins", "frozenset"): self._frozenset,
            ("builtins", "list"): self._list,
            ("builtins", "tuple"): self._tuple,
            ("builtins", "dict"): self._dict,
            ("collections", "OrderedDict"): self._ordered_dict,
        }

    # --- refusals and the budget --------------------------------------------------------

    def _refuse(self, what: str) -> DataError:
        return DataError(f"{self.source}: refused {what}")

    def _charge(self, n: int) -> None:
        self.spent += n
        if self.spent > self.budget:
            raise self._refuse(
                f"to allocate more than {self.budget} bytes while unpickling a "
                f"{self._reader.size}-byte file ({BUDGET_FACTOR}x its size + "
                f"{BUDGET_SLACK // 2**20} MiB): the pickle is a resource bomb or corrupt"
            )

    def _left(self) -> int:
        """Bytes left to read: in the file, and in the current protocol-4 frame."""
        frame = self._unframer.current_frame if hasattr(self, "_unframer") else None
        if frame is None:
            return self._reader.left
        with frame.getbuffer() as view:
            return self._reader.left + view.nbytes - frame.tell()

    # --- globals --------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        """The class or function a pickle names, only from the allowed ones (Python 2
        names mapped as pickle maps them).

        Args:
            module: The module.
            name: The name.

        Returns:
            The allowed object.

        Raises:
            DataError: Anything else (the file is refused, naming it).
        """
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle itself maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        found = self._globals.get((module, name))
        if found is None:
            raise DataError(
                f"{self.source}: refused to unpickle global {module}.{name}; only numpy arrays "
                "and plain containers are read from a dataset pickle (a pickle can run code)"
            )
        return found

    # --- depth: containers form a tree at most MAX_DEPTH deep ----------------------------

    def _depth(self, obj: Any) -> int:
        if not isinstance(obj, _CONTAINERS):
            return 0
        entry = self._depths.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else 1

    def _nest(self, parent: Any, items: Any, base: int = 1) -> None:
        """Record ``parent``'s depth once ``items`` are in it; refuse past MAX_DEPTH. Called
        before the items are inserted (and so before any key is hashed)."""
        depth = max([base, *(self._depth(x) + 1 for x in items)])
        if depth > MAX_DEPTH:
            raise self._refuse(f"containers nested more than {MAX_DEPTH} deep")
        if depth > 1:
            self._depths[id(parent)] = (parent, depth)

    def _nested(self, obj: Any, items: Any) -> Any:
        """``obj``, a new container of ``items`` (already in it), with its depth recorded."""
        self._nest(obj, items)
        return obj

    def _check_key(self, key: Any) -> None:
        if self._depth(key) >= MAX_DEPTH:
            raise self._refuse(f"containers nested more than {MAX_DEPTH} deep")

    # --- numpy ------------------------------------------------------------------------------

    @_wrapper
    def _dtype(self, spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str) or not _PLAIN_SPEC.fullmatch(spec):
            raise self._refuse(
                f"numpy dtype {spec!r}: only plain bool, integer, float, complex, bytes (S) "
                "and text (U) dtypes are read (no structured, subarray, void or other kinds)"
            )
        dt = np.dtype(spec, bool(align), True)  # a copy: its state must not touch numpy's own
        self._pending[id(dt)] = dt
        return dt

    def _build_dtype(self, dt: np.dtype, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) == 8 and state[0] == 3
        ok = ok and state[1] in _BYTE_ORDERS and state[2:5] == (None, None, None)
        ok = ok and all(type(v) is int for v in state[5:])
        if not ok:
            raise self._refuse(
                f"the state of numpy dtype {dt.str!r}: only plain dtypes (no fields, subarray "
                "or metadata) are read"
            )
        byteorder, elsize = state[1], state[5]
        if dt.kind in "US":
            unit = 4 if dt.kind == "U" else 1
            if elsize <= 0 or elsize % unit or elsize > self._reader.size:
                raise self._refuse(f"numpy dtype {dt.str!r} with item size {elsize}")
            plain = np.dtype(f"{dt.kind}{elsize // unit}")
        elif elsize not in (-1, dt.itemsize):
            raise self._refuse(f"numpy dtype {dt.str!r} with item size {elsize}")
        else:
            plain = np.dtype(dt.kind + str(dt.itemsize))
        if byteorder in "<>" and plain.byteorder != "|":
            plain = plain.newbyteorder(byteorder)
        # numpy's own state for the validated dtype: never the file's flags or fields
        dt.__setstate__(plain.__reduce__()[2])
        if dt != plain or dt.itemsize != plain.itemsize:
            raise self._refuse(f"numpy dtype {dt.str!r}: its state did not give {plain.str!r}")

    def _plain_dtype(self, dt: Any, what: str, objects: bool = False) -> np.dtype:
        if not isinstance(dt, np.dtype) or id(dt) in self._pending:
            raise self._refuse(f"{what}: its dtype is not a complete numpy dtype")
        kinds = "biufcUSO" if objects else "biufcUS"
        if dt.kind not in kinds or dt.fields is not None or dt.subdtype is not None:
            raise self._refuse(f"{what} of dtype {dt}: only plain dtypes are read")
        if dt.itemsize <= 0 or dt.metadata:
            raise self._refuse(f"{what} of dtype {dt}: item size {dt.itemsize}")
        return dt

    def _shape(self, shape: Any, what: str) -> tuple[int, ...]:
        ok = isinstance(shape, tuple) and len(shape) <= MAX_NDIM
        ok = ok and all(type(s) is int and 0 <= s <= max(self._reader.size, 1) for s in shape)
        if not ok:
            raise self._refuse(
                f"{what} of shape {shape!r}: at most {MAX_NDIM} dimensions, each at most the "
                f"file's size ({self._reader.size})"
            )
        return shape

    def _checked(self, array: np.ndarray, what: str) -> np.ndarray:
        """The array numpy built, checked before anything reads an element."""
        self._plain_dtype(array.dtype, what, objects=True)
        if array.size > 1 and not (array.flags.c_contiguous or array.flags.f_contiguous):
            raise self._refuse(f"{what}: not a contiguous array (strides {array.strides})")
        if any(st == 0 for st, n in zip(array.strides, array.shape) if n > 1):
            raise self._refuse(f"{what}: a zero-stride view (strides {array.strides})")
        return array

    @_wrapper
    def _reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
        # numpy pickles every array as _reconstruct(ndarray, (0,), b"b") then its state
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise self._refuse(
                f"numpy _reconstruct({subtype!r}, {shape!r}, {typecode!r}): only numpy's own "
                "form, _reconstruct(ndarray, (0,), b'b'), is read"
            )
        array = np.ndarray((0,), np.int8)
        self._pending[id(array)] = array
        return array

    def _build_array(self, array: np.ndarray, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise self._refuse("an array state that numpy does not write")
        if len(state) == 5:
            version, *rest = state
            if version not in (0, 1):
                raise self._refuse(f"an array state of version {version!r}")
            state = tuple(rest)
        shape, dtype, fortran, data = state
        what = "an array"
        shape = self._shape(shape, what)
        dtype = self._plain_dtype(dtype, what, objects=True)
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise self._refuse(f"{what}: order flag {fortran!r}")
        count = math.prod(shape)
        if dtype.kind == "O":
            ok = type(data) is list and len(data) == count
            if not ok or not all(isinstance(x, _SCALARS) for x in data):
                raise self._refuse(
                    f"an object array of shape {shape}: it must hold exactly {count} scalars "
                    "(str, bytes, numbers, None)"
                )
            self._charge(8 * count)
        else:
            if isinstance(data, str):  # Python 2's str, read as latin1; numpy encodes it back
                if not data.isascii() and max(data) > "\xff":
                    raise self._refuse(f"{what}: its data is not latin-1 text")
            elif not isinstance(data, (bytes, bytearray)):
                raise self._refuse(f"{what}: its data is a {type(data).__name__}, not bytes")
            if len(data) != _nbytes(shape, dtype.itemsize):
                raise self._refuse(
                    f"an array of shape {shape} and dtype {dtype}: it needs "
                    f"{_nbytes(shape, dtype.itemsize)} bytes, the pickle holds {len(data)}"
                )
            self._charge(len(data))  # numpy may copy them
        array.__setstate__((1, shape, dtype, bool(fortran), data))
        self._checked(array, what)

    @_wrapper
    def _frombuffer(
        self, buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None
    ) -> np.ndarray:
        # protocol 5: numpy's _frombuffer(buffer, dtype, shape, order[, axis_order])
        what = "an array (protocol 5)"
        if not isinstance(buf, (bytes, bytearray)):
            raise self._refuse(f"{what}: its data is a {type(buf).__name__}, not bytes")
        dtype = self._plain_dtype(dtype, what)
        shape = self._shape(shape, what)
        if order not in ("C", "F", "K"):
            raise self._refuse(f"{what}: order {order!r}")
        if axis_order is not None and (
            not isinstance(axis_order, tuple) or sorted(axis_order) != list(range(len(shape)))
        ):
            raise self._refuse(f"{what}: axis order {axis_order!r}")
        if len(buf) != _nbytes(shape, dtype.itemsize):
            raise self._refuse(
                f"an array of shape {shape} and dtype {dtype}: it needs "
                f"{_nbytes(shape, dtype.itemsize)} bytes, the pickle holds {len(buf)}"
            )
        array = np.frombuffer(buf, dtype=dtype)  # a view of the pickle's bytes: no copy
        if order == "K" and axis_order is not None:
            array = array.reshape(shape, order="C").transpose(axis_order)
        else:
            array = array.reshape(shape, order=order)
        return self._checked(array, what)

    @_wrapper
    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        what = "a numpy scalar"
        dtype = self._plain_dtype(dtype, what)
        if isinstance(data, str) and (data.isascii() or max(data) <= "\xff"):
            data = data.encode("latin1")
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise self._refuse(f"{what} of dtype {dtype}: its data is not {dtype.itemsize} bytes")
        return _NUMPY_SCALAR(dtype, data)

    # --- builtins: only the calls pickle itself writes --------------------------------------

    @_wrapper
    def _encode(self, text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
            raise self._refuse("a _codecs.encode call other than encode(text, 'latin1')")
        self._charge(len(text))
        return text.encode("latin1")

    @_wrapper
    def _bytes(self, *args: Any) -> bytes:
        if args:
            raise self._refuse("a bytes call other than bytes()")
        return b""

    @_wrapper
    def _bytearray(self, *args: Any) -> bytearray:
        if args == () or (len(args) == 1 and isinstance(args[0], (bytes, bytearray))):
            data = args[0] if args else b""
        elif len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            data = self._encode(*args)
        else:
            raise self._refuse("a bytearray call other than bytearray(bytes)")
        self._charge(len(data))
        return bytearray(data)

    def _items_arg(self, args: tuple, kinds: tuple, what: str) -> Any:
        if args == ():
            return ()
        if len(args) != 1 or not isinstance(args[0], kinds):
            raise self._refuse(f"a {what} call other than {what}() or {what}(items)")
        self._charge(8 * len(args[0]))
        return args[0]

    @_wrapper
    def _set(self, *args: Any) -> set:
        items = self._items_arg(args, (list, tuple), "set")
        for x in items:
            self._check_key(x)
        return self._nested(set(items), items)

    @_wrapper
    def _frozenset(self, *args: Any) -> frozenset:
        items = self._items_arg(args, (list, tuple), "frozenset")
        for x in items:
            self._check_key(x)
        return self._nested(frozenset(items), items)

    @_wrapper
    def _list(self, *args: Any) -> list:
        items = self._items_arg(args, (list, tuple), "list")
        return self._nested(list(items), items)

    @_wrapper
    def _tuple(self, *args: Any) -> tuple:
        items = self._items_arg(args, (list, tuple), "tuple")
        return self._nested(tuple(items), items)

    @_wrapper
    def _dict(self, *args: Any) -> dict:
        items = self._items_arg(args, (dict,), "dict")
        return self._nested(dict(items), [*items, *items.values()] if items else ())

    @_wrapper
    def _ordered_dict(self, *args: Any) -> OrderedDict:
        items = self._items_arg(args, (dict,), "OrderedDict")
        return self._nested(OrderedDict(items), [*items, *items.values()] if items else ())

    # --- opcodes ------------------------------------------------------------------------------

    def load_reduce(self) -> None:
        """The ``REDUCE`` opcode, within this unpickler's limits (see the module docstring)."""
        args = self.stack.pop()
        func = self.stack[-1]
        if not getattr(func, "safe_global", False):
            raise self._refuse(f"to call {func!r}: only the admitted numpy and builtin globals")
        if type(args) is not tuple:
            raise self._refuse(f"a call with arguments of type {type(args).__name__}")
        self.stack[-1] = func(*args)

    def load_build(self) -> None:
        """The ``BUILD`` opcode, within this unpickler's limits (see the module docstring)."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if self._pending.pop(id(inst), None) is not inst:
            raise self._refuse(
                f"to set the state of a {type(inst).__name__}: only a new numpy array or "
                "dtype takes a state"
            )
        if isinstance(inst, np.dtype):
            self._build_dtype(inst, state)
        else:
            self._build_array(inst, state)

    def load_bytearray8(self) -> None:
        """The ``BYTEARRAY8`` opcode, within this unpickler's limits (see the module docstring)."""
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._left():
            raise self._refuse(f"a bytearray of {n} bytes: only {self._left()} are left")
        self._charge(n)
        buf = bytearray(n)
        self.readinto(buf)
        self.append(buf)

    def _memo_get(self, key: int) -> None:
        try:
            obj = self.memo[key]
        except KeyError:
            raise pickle.UnpicklingError(f"Memo value not found at index {key}") from None
        if isinstance(obj, (list, dict, set)) or (
            isinstance(obj, (tuple, frozenset)) and self._depth(obj) > 1
        ):
            raise self._refuse(
                f"a second reference to a {type(obj).__name__} (shared containers are not read)"
            )
        self._charge(_copy_cost(obj))  # as a copy: whatever walks it again may copy it
        self.append(obj)

    def load_get(self) -> None:
        """The ``GET`` opcode, within this unpickler's limits (see the module docstring)."""
        self._memo_get(int(self.readline()[:-1]))

    def load_binget(self) -> None:
        """The ``BINGET`` opcode, within this unpickler's limits (see the module docstring)."""
        self._memo_get(self.read(1)[0])

    def load_long_binget(self) -> None:
        """The ``LONG_BINGET`` opcode, within this unpickler's limits (see the module docstring)."""
        (key,) = struct.unpack("<I", self.read(4))
        self._memo_get(key)

    def _new_container(self, obj: Any, items: Any) -> None:
        self.append(self._nested(obj, items))

    def load_tuple(self) -> None:
        """The ``TUPLE`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.pop_mark()
        self._new_container(tuple(items), items)

    def load_tuple1(self) -> None:
        """The ``TUPLE1`` opcode, within this unpickler's limits (see the module docstring)."""
        self.stack[-1] = self._nested((self.stack[-1],), self.stack[-1:])

    def load_tuple2(self) -> None:
        """The ``TUPLE2`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.stack[-2:]
        self.stack[-2:] = [self._nested(tuple(items), items)]

    def load_tuple3(self) -> None:
        """The ``TUPLE3`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.stack[-3:]
        self.stack[-3:] = [self._nested(tuple(items), items)]

    def load_list(self) -> None:
        """The ``LIST`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.pop_mark()
        self._new_container(items, items)

    def load_dict(self) -> None:
        """The ``DICT`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.pop_mark()
        for key in items[::2]:
            self._check_key(key)
        self._new_container({items[i]: items[i + 1] for i in range(0, len(items), 2)}, items)

    def load_frozenset(self) -> None:
        """The ``FROZENSET`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.pop_mark()
        for key in items:
            self._check_key(key)
        self._new_container(frozenset(items), items)

    def _parent(self, kind: type, opcode: str) -> Any:
        parent = self.stack[-1]
        if not isinstance(parent, kind):
            raise self._refuse(f"opcode {opcode} on a {type(parent).__name__}")
        return parent

    def _grow(self, parent: Any, items: Any) -> None:
        self._nest(parent, items, base=self._depth(parent))

    def load_append(self) -> None:
        """The ``APPEND`` opcode, within this unpickler's limits (see the module docstring)."""
        value = self.stack.pop()
        parent = self._parent(list, "APPEND")
        self._grow(parent, (value,))
        parent.append(value)

    def load_appends(self) -> None:
        """The ``APPENDS`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.pop_mark()
        parent = self._parent(list, "APPENDS")
        self._grow(parent, items)
        parent.extend(items)

    def load_setitem(self) -> None:
        """The ``SETITEM`` opcode, within this unpickler's limits (see the module docstring)."""
        value = self.stack.pop()
        key = self.stack.pop()
        parent = self._parent(dict, "SETITEM")
        self._check_key(key)
        self._grow(parent, (key, value))
        parent[key] = value

    def load_setitems(self) -> None:
        """The ``SETITEMS`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.pop_mark()
        parent = self._parent(dict, "SETITEMS")
        for key in items[::2]:
            self._check_key(key)
        self._grow(parent, items)
        for i in range(0, len(items), 2):
            parent[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        """The ``ADDITEMS`` opcode, within this unpickler's limits (see the module docstring)."""
        items = self.pop_mark()
        parent = self._parent(set, "ADDITEMS")
        for key in items:
            self._check_key(key)
        self._grow(parent, items)
        parent.update(items)


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
# numpy's scalar(dtype, bytes), as its scalars pickle themselves (numpy 1 and 2 alike)
_NUMPY_SCALAR = np.float32(0).__reduce__()[0]


def _refused_opcode(name: str):
    def refuse(self: SafeUnpickler) -> None:
        raise self._refuse(f"pickle opcode {name}: numpy arrays and plain containers never use it")

    return refuse


def _charged(handler, payload: bool):
    def run(self: SafeUnpickler) -> None:
        self._charge(OPCODE_COST)
        handler(self)
        if payload:
            self._charge(sys.getsizeof(self.stack[-1]))

    return run


class _Dispatch(dict):
    def __missing__(self, key: int):
        raise pickle.UnpicklingError(f"invalid load key, {bytes([key])!r}")


def _dispatch() -> dict:
    table = _Dispatch()
    for code, handler in pickle._Unpickler.dispatch.items():
        name = handler.__name__
        handler = getattr(SafeUnpickler, name, handler)  # the overrides above
        table[code] = _charged(handler, code in _PAYLOAD_OPCODES)
    for opcode, name in _REFUSED_OPCODES.items():
        table[opcode[0]] = _refused_opcode(name)
    return table


SafeUnpickler.dispatch = _dispatch()


def safe_load_pickle(path: str | Path) -> Any:
    """The object in pickle file ``path``, read with :class:`SafeUnpickler`.

    Args:
        path: The pickle file.

    Returns:
        The object.

    Raises:
        DataError: The file is missing, damaged or holds what is not allowed.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return SafeUnpickler(f, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: the pickle file is missing") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the pickle file: {e}") from None
    except RecursionError:
        raise DataError(f"{path}: refused a pickle nested too deeply") from None
    except Exception as e:  # truncated or not a pickle: UnpicklingError, EOFError, ValueError...
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
