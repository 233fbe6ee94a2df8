"""Hostile MOSEI / MOSI pickles (issue 23, items 1, 2, 7, 9 and 11): a crafted file can
neither crash the reader nor cost more than its size justifies, and every refusal is a
named ``DataError``.

The crafted files are read in a subprocess under a memory cap (``RLIMIT_AS``: what the
process holds once torch is imported, plus 2 GiB), so a crash is seen as a signal on the
child and not as the end of the test session, and a bomb as a refusal rather than swap.
Each case states the refusal it expects, so a ``MemoryError`` caught and reported as
"not a readable pickle" does not pass for a bounded reader.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_mosei import _dump, _mmsa, _mult, _mult_split

from balgrad.cli import main
from balgrad.data.disk._records import DataWarning
from balgrad.data.readers import _mosei as mosei
from balgrad.errors import DataError

# numpy's own reconstructors, by way of its pickles (numpy 1 and 2 name their modules apart)
RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
SCALAR = np.float32(0).__reduce__()[0]
# the structured-dtype field offsets tried: inside the item, just past it, far past it
# (100 000 000 crashed `balgrad compare` with a segmentation fault)
OFFSETS = [0, 4, 8, 64, 4096, 1 << 20, 100_000_000, 2**31 - 1]
GB = 3_300_000_000


class R:
    """An object that pickles as ``reduce`` says: how a hostile file is written with the
    very globals numpy's own pickles use."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def dtype(spec, state):
    return R(np.dtype, (spec, False, True), state)


def structured(offset, itemsize=8):
    fields = {"a": (np.dtype("<U4"), offset)}
    return dtype(f"V{itemsize}", (3, "|", None, ("a",), fields, itemsize, 1, 16))


def array(dt, shape, data):
    return R(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dt, False, data))


def mult_with_id(ids) -> dict:
    """A MulT file whose train split's ``id`` is ``ids``."""
    raw = {split: _mult_split(2, s) for s, split in enumerate(mosei.SPLITS)}
    raw["train"]["id"] = ids
    return raw


def structured_ids(offset):
    return mult_with_id(array(structured(offset), (2,), b"\0" * 16))


# --- the cases: name -> (pickled object or raw bytes, the refusal expected) ---------------


def _object_cases() -> dict[str, tuple[object, str]]:
    f8 = np.dtype("f8")
    cases = {}
    for off in OFFSETS:
        cases[f"structured_V8_offset_{off}"] = (structured_ids(off), r"refused numpy dtype 'V8'")
        # a plain spec, the field table smuggled in through the state
        fields = {"a": (np.dtype("<U4"), off)}
        state = (3, "|", None, ("a",), fields, 8, 1, 16)
        ids = array(dtype("f8", state), (2,), b"\0" * 16)
        cases[f"structured_state_offset_{off}"] = (
            mult_with_id(ids),
            r"refused the state of numpy dtype",
        )
    sub = (3, "|", (f8, (4,)), None, None, 32, 8, 0)
    cases["subarray_state"] = (array(dtype("f8", sub), (2,), b"\0" * 64), "refused the state")
    cases["subarray_spec"] = (
        array(dtype("(2,)f8", (3, "<") + (None,) * 3 + (-1, -1, 0)), (1,), b""),
        "refused numpy dtype",
    )
    # an item flagged as holding object pointers: numpy would reference-count the floats
    flags = (3, "<", None, None, None, -1, -1, 63)
    # (the flags are numpy's own, not the file's: it reads as floats, then is not a dataset)
    cases["float_with_object_flags"] = (
        array(dtype("f8", flags), (2,), b"\x01" * 16),
        r"expected a dict of splits .*found ndarray",
    )
    cases["void_spec"] = (
        array(dtype("V16", (3, "|") + (None,) * 3 + (16, 1, 0)), (1,), b"\0" * 16),
        r"refused numpy dtype 'V16'",
    )
    cases["datetime_spec"] = (
        array(dtype("M8", (4, "<") + (None,) * 3 + (-1, -1, 0, {})), (1,), b"\0" * 8),
        r"refused numpy dtype 'M8'",
    )
    cases["text_item_size_bomb"] = (
        array(dtype("U1", (3, "<", None, None, None, 4 * 10**12, 4, 8)), (1,), b""),
        r"refused numpy dtype '<U1' with item size",
    )
    cases["zero_item_size"] = (
        array(dtype("S1", (3, "|", None, None, None, 0, 1, 0)), (10**12,), b""),
        r"refused numpy dtype '\|S1' with item size 0",
    )
    cases["dtype_without_state"] = (
        array(R(np.dtype, ("S1", False, True)), (4,), b"abcd"),
        r"its dtype is not a complete numpy dtype",
    )
    cases["object_array_short_list"] = (
        array(np.dtype("O"), (5,), [b"a", b"b"]),
        r"object array of shape \(5,\): it must hold exactly 5 scalars",
    )
    cases["object_array_of_containers"] = (
        array(np.dtype("O"), (2,), [[1, 2], {"a": 1}]),
        r"must hold exactly 2 scalars",
    )
    cases["object_scalar"] = (
        R(SCALAR, (np.dtype("O"), [1])),
        r"refused a numpy scalar of dtype object",
    )
    cases["array_shape_bomb"] = (
        array(f8, (10**9,), b"\0" * 8),
        r"refused an array of shape \(1000000000,\)",
    )
    cases["array_empty_with_huge_dim"] = (
        array(f8, (0, 10**15), b""),
        r"each at most the file's size",
    )
    cases["array_negative_dim"] = (array(f8, (-1,), b""), r"refused an array of shape \(-1,\)")
    cases["array_too_many_dims"] = (array(f8, (1,) * 40, b"\0" * 8), r"at most 32 dimensions")
    cases["array_short_data"] = (array(f8, (3,), b"\0" * 8), r"needs 24 bytes, the pickle holds 8")
    cases["array_data_not_bytes"] = (array(f8, (1,), 7), r"its data is a int, not bytes")
    cases["reconstruct_shape_bomb"] = (
        R(RECONSTRUCT, (np.ndarray, (GB,), b"b")),
        r"refused numpy _reconstruct",
    )
    # numpy.ndarray called directly: a 2 GB zero-strided "array" over 4 bytes
    cases["zero_stride_view"] = (
        R(np.ndarray, ((500_000_000,), np.dtype("f4"), b"abcd", 0, (0,))),
        r"refused to call numpy\.ndarray",
    )
    cases["frombuffer_shape_bomb"] = (
        R(FROMBUFFER, (b"abcd", np.dtype("f4"), (500_000_000,), "C")),
        r"refused an array \(protocol 5\) of shape",
    )
    cases["frombuffer_short"] = (
        R(FROMBUFFER, (b"abcd", np.dtype("f4"), (2,), "C")),
        r"needs 8 bytes, the pickle holds 4",
    )
    cases["frombuffer_axis_order"] = (
        R(FROMBUFFER, (b"\0" * 16, np.dtype("f4"), (2, 2), "K", (0, 0))),
        r"axis order",
    )
    cases["frombuffer_object"] = (
        R(FROMBUFFER, (b"\0" * 16, np.dtype("O"), (2,), "C")),
        r"only plain dtypes",
    )
    cases["bytearray_of_a_size"] = (R(bytearray, (GB,)), r"a bytearray call other than")
    cases["codecs_other_encoding"] = (
        R(__import__("codecs").encode, ("x", "zlib")),
        r"_codecs\.encode",
    )
    # shared references: a list of 2**40 paths in a few hundred bytes
    shared: list = []
    for _ in range(40):
        shared = [shared, shared]
    cases["shared_lists"] = (shared, r"a second reference to a list")
    tup: tuple = ("x",)
    for _ in range(40):
        tup = (tup, tup)
    cases["shared_tuples"] = (tup, r"a second reference to a tuple")
    flat = tuple(range(2000))
    cases["shared_flat_tuple_many_times"] = ([flat] * 20000, r"to allocate more than")
    cases["shared_bytes_many_times"] = ([b"x" * 100_000] * 100_000, r"to allocate more than")
    cases["shared_array_many_times"] = ([np.zeros(100_000)] * 10_000, r"to allocate more than")
    d: dict = {}
    cases["shared_dict"] = ({"a": d, "b": d}, r"a second reference to a dict")
    return cases


def _raw_cases() -> dict[str, tuple[bytes, str]]:
    q = lambda n: struct.pack("<Q", n)  # noqa: E731
    deep_list = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."
    deep_tuple = b"\x80\x02)" + b"\x85" * 100_000 + b"."
    deep_key = b"\x80\x02}" + b")" + b"\x85" * 100_000 + b"Ns."
    return {
        "binbytes8_declares_3GB": (b"\x80\x04\x8e" + q(GB) + b"xx.", r"declares 3300000000 bytes"),
        "binunicode8_declares_3GB": (b"\x80\x04\x8d" + q(GB) + b"xx.", r"declares 3300000000"),
        "bytearray8_declares_3GB": (b"\x80\x05\x96" + q(GB) + b"xx.", r"a bytearray of 3300000000"),
        "frame_declares_3GB": (b"\x80\x04\x95" + q(GB) + b"N.", r"declares 3300000000 bytes"),
        "binbytes_declares_2GB": (b"\x80\x03B" + struct.pack("<I", 2**31) + b".", r"declares"),
        "long4_declares_1GB": (b"\x80\x02\x8b" + struct.pack("<i", 2**30) + b".", r"declares"),
        "deep_lists": (deep_list, r"nested more than 32 deep"),
        "deep_tuples": (deep_tuple, r"nested more than 32 deep"),
        "deep_tuple_as_a_key": (deep_key, r"nested more than 32 deep"),
        "many_marks": (b"\x80\x02" + b"(" * 1_000_000 + b".", r"to allocate more than"),
        "many_lists": (b"\x80\x02" + b"]" * 2_000_000 + b".", r"to allocate more than"),
        "dup_makes_a_cycle": (b"\x80\x02]2a.", r"refused pickle opcode DUP"),
        "memo_get_makes_a_cycle": (b"\x80\x02]q\x00h\x00a.", r"second reference to a list"),
        "newobj": (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f8\x85\x81.", r"opcode NEWOBJ"),
        "build_on_a_list": (b"\x80\x02]}b.", r"to set the state of a list"),
        "setitem_on_a_list": (b"\x80\x02]NNs.", r"opcode SETITEM on a list"),
        "call_a_string": (b"\x80\x02X\x01\x00\x00\x00x)R.", r"refused to call 'x'"),
        "long_text_digits": (b"L" + b"9" * 100_000 + b"L\n.", r"not a readable pickle"),
        "out_of_band_buffer": (
            pickle.dumps(np.zeros(3), protocol=5, buffer_callback=lambda b: False),
            r"out-of-band",
        ),
    }


CHILD = textwrap.dedent(
    """
    import json, re, resource, sys
    from balgrad.data.readers import _mosei as mosei
    from balgrad.errors import DataError

    try:  # the cap: what the process maps once torch is imported, plus 2 GiB (Linux)
        status = open("/proc/self/status").read()
    except OSError:
        status = ""
    found = re.search(r"VmSize:\\s+(\\d+)", status)
    if found:
        cap = int(found.group(1)) * 1024 + (2 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(json.dumps(["cap", resource.getrlimit(resource.RLIMIT_AS)[0]]), flush=True)
    for path in sys.argv[1:]:
        print(json.dumps(["begin", path]), flush=True)
        try:
            mosei.load_mult_pickle(path)
        except DataError as e:
            outcome = ["DataError", str(e)]
        except BaseException as e:
            outcome = ["other", f"{type(e).__name__}: {e}"]
        else:
            outcome = ["loaded", ""]
        print(json.dumps(["end", path, *outcome]), flush=True)
    """
)


def child_env() -> dict[str, str]:
    """The environment of a child Python that imports this very balgrad (whatever its
    working folder), on one BLAS thread."""
    import balgrad

    src = str(Path(balgrad.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return dict(os.environ, PYTHONPATH=path, **threads)


def read_in_a_capped_child(paths: list[Path]) -> dict[str, tuple[str, str]]:
    """``{path: (outcome, message)}`` of each file read by a child under the memory cap;
    fails naming the file that crashed the child, if one does."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, paths)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=900,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    last = lines[-1][1] if lines else None
    assert done.returncode == 0, (
        f"the reader died (return code {done.returncode}) on {last}: {done.stderr[-2000:]}"
    )
    if sys.platform.startswith("linux"):
        assert any(line[0] == "cap" and line[1] > 0 for line in lines), "no memory cap was set"
    return {line[1]: (line[2], line[3]) for line in lines if line[0] == "end"}


def _damaged(root: Path) -> list[Path]:
    """A valid MulT file, written with protocols 0, 2 and 5, cut at many points and with
    one to three bytes changed (seeded)."""
    rng = np.random.default_rng(23)
    paths = []
    for protocol in (0, 2, 5):
        raw = _mult(2)
        raw["train"]["id"] = np.array([[b"a", b"1"], [b"b", b"2"]], dtype=object)
        good = pickle.dumps(raw, protocol=protocol)
        for cut in sorted(set(rng.integers(0, len(good), 60).tolist())):
            paths.append(root / f"cut-p{protocol}-{cut}.pkl")
            paths[-1].write_bytes(good[:cut])
        for k in range(150):
            data = bytearray(good)
            for at in rng.integers(0, len(data), rng.integers(1, 4)):
                data[at] = rng.integers(0, 256)
            paths.append(root / f"mutated-p{protocol}-{k}.pkl")
            paths[-1].write_bytes(bytes(data))
    return paths


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """``(expected, damaged, outcomes)``: every hostile case written with every pickle
    protocol (0 to 5) that can write it, with the refusal it expects; the damaged files;
    and what one capped child made of them all."""
    root = tmp_path_factory.mktemp("hostile")
    expected = {}
    for name, (obj, pattern) in _object_cases().items():
        for protocol in range(6):
            try:
                data = pickle.dumps(obj, protocol=protocol)
            except Exception:  # e.g. protocol 0/1 cannot write some reductions
                continue
            path = root / f"{name}-p{protocol}.pkl"
            path.write_bytes(data)
            expected[path] = pattern
    for name, (data, pattern) in _raw_cases().items():
        path = root / f"{name}.pkl"
        path.write_bytes(data)
        expected[path] = pattern
    damaged = _damaged(root)
    return expected, damaged, read_in_a_capped_child([*expected, *damaged])


def test_every_hostile_pickle_is_a_named_refusal_never_a_crash(hostile):
    expected, _, outcomes = hostile
    wrong = {}
    for path, pattern in expected.items():
        outcome, message = outcomes[str(path)]
        if outcome != "DataError" or path.name not in message:
            wrong[path.name] = (outcome, message)
        elif not re.search(pattern, message):
            wrong[path.name] = (f"not /{pattern}/", message)
    assert not wrong, json.dumps(wrong, indent=1)[:6000]


def test_the_crash_offset_is_among_the_cases(hostile):
    names = {p.name for p in hostile[0]}
    for protocol in range(6):
        assert f"structured_V8_offset_100000000-p{protocol}.pkl" in names


def test_truncated_and_mutated_pickles_are_refused_or_read_never_a_crash(hostile):
    _, damaged, outcomes = hostile
    got = {p: outcomes[str(p)] for p in damaged}
    odd = {p.name: o for p, o in got.items() if o[0] not in ("DataError", "loaded")}
    assert not odd, odd
    # a cut file never reads as a whole one
    assert all(o[0] == "DataError" for p, o in got.items() if p.name.startswith("cut-"))


# --- valid files load exactly as the standard unpickler loads them -----------------------


def _valid_arrays() -> dict:
    return {
        "c_order": np.arange(24, dtype="f4").reshape(2, 3, 4),
        "f_order": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 50, 74), "f4"),
        "text_ids": np.array([["vid0", "1.5"], ["vid1", "2.5"]]),
        "bytes_ids": np.array([b"x", b"yy"]),
        "object_ids": np.array([[b"a", "1"], [b"b", 2]], dtype=object),
        "int64": np.arange(5),
        "uint8": np.arange(3, dtype="u1"),
        "bool": np.array([True, False]),
        "big_endian": np.arange(3, dtype=">f8"),
        "complex": np.ones(2, "c16"),
        "strided": np.arange(20.0).reshape(4, 5)[:, ::2],
        "scalar": np.float32(2.5),
        "text_scalar": np.str_("ab"),
        "containers": [
            ("s", 1, 2.0, None, True),
            {"k": frozenset({"a"})},
            {1, 2},
            bytearray(b"xy"),
        ],
    }


@pytest.mark.parametrize("protocol", range(6))
def test_valid_arrays_load_as_the_standard_unpickler_loads_them(tmp_path, protocol):
    path = _dump(tmp_path, _valid_arrays(), protocol=protocol)
    got = mosei.safe_load_pickle(path)
    want = pickle.loads(path.read_bytes())
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        assert type(g) is type(w), key
        if isinstance(w, np.ndarray):
            assert (g.dtype, g.shape, g.strides) == (w.dtype, w.shape, w.strides), key
            assert g.flags.writeable == w.flags.writeable, key
            assert g.tobytes() == w.tobytes() if w.dtype != object else g.tolist() == w.tolist()
        else:
            assert g == w, key


def test_the_allocation_budget_is_4x_the_file_plus_64_mib(tmp_path):
    # a large valid file fits: its arrays' bytes are charged once as read, once as copied
    big = {"a": np.random.default_rng(0).normal(size=(3000, 50, 74)).astype("f4")}
    for protocol in (2, 5):
        path = _dump(tmp_path, big, protocol=protocol)
        np.testing.assert_array_equal(mosei.safe_load_pickle(path)["a"], big["a"])
    # an opcode-dense file: 256 bytes charged per opcode (a Python object each at most)
    path = tmp_path / "lists.pkl"
    n_fits = (64 * 2**20) // 256 // 2  # half the slack's worth of opcodes fits
    path.write_bytes(b"\x80\x02]" + b"]a" * (n_fits // 2) + b".")
    assert len(mosei.safe_load_pickle(path)) == n_fits // 2
    path.write_bytes(b"\x80\x02]" + b"]a" * (2 * n_fits) + b".")
    with pytest.raises(DataError, match=r"lists\.pkl: refused to allocate more than \d+ bytes"):
        mosei.safe_load_pickle(path)


# --- the item-1 pickle through the CLI ----------------------------------------------------


def crafted_folder(root: Path, offset: int) -> list[str]:
    """A MOSEI data folder whose train ids are the item-1 array, and the compare argv."""
    data = root / "data"
    data.mkdir()
    raw = {split: _mult_split(16, s) for s, split in enumerate(mosei.SPLITS)}
    raw["train"]["id"] = array(structured(offset), (16,), b"\0" * 8 * 16)
    (data / "mosei_senti_data.pkl").write_bytes(pickle.dumps(raw, protocol=2))
    argv = ["compare", "--dataset", "mosei", "--data-dir", str(data), "--methods", "joint"]
    argv += ["--epochs", "1", "--seeds", "0", "--no-progress", "--out", str(root / "out")]
    return argv + ["--cache-dir", str(root / "cache")]


ITEM_1 = "mosei_senti_data.pkl: refused numpy dtype 'V8'"


def test_the_crafted_id_pickle_at_the_crash_offset_is_a_cli_error_not_a_segfault(tmp_path):
    # in a child process: before the fix it died of SIGSEGV (return code -11)
    done = subprocess.run(
        [sys.executable, "-m", "balgrad.cli", *crafted_folder(tmp_path, 100_000_000)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=child_env(),
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("balgrad: error: "), done.stderr[-2000:]
    assert ITEM_1 in lines[0]


@pytest.mark.parametrize("offset", [0, 64, 4096])
def test_the_crafted_id_pickle_is_a_cli_error_at_every_offset(tmp_path, offset, capsys):
    # before the fix these trained, with heap bytes in the ids and the fingerprint
    assert main(crafted_folder(tmp_path, offset)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("balgrad: error: ") and ITEM_1 in err[0]


# --- items 7, 9 and 11: cleaning warned, empty modalities and odd ids refused at load ----


def test_cleaned_features_warn_with_count_and_share_per_split_and_modality(tmp_path):
    raw = _mult(3)
    raw["valid"]["vision"][0, 0, :5] = np.nan
    raw["valid"]["text"] = raw["valid"]["text"].astype(np.float64)
    raw["valid"]["text"][1, 2, 0] = 1e39  # finite in float64, beyond float32's range
    with pytest.warns(DataWarning) as caught:
        splits = mosei.load_mult_pickle(_dump(tmp_path, raw))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "split 'valid'" in messages[0]
    n_vision, n_text = 3 * 4 * 35, 3 * 4 * 300
    assert f"visual (key 'vision') 5 of {n_vision} ({100 * 5 / n_vision:.3g}%)" in messages[0]
    assert f"text (key 'text') 1 of {n_text}" in messages[0]
    assert splits["valid"].cleaned == {"audio": 0, "visual": 5, "text": 1}
    assert splits["valid"].features["text"][1, 2, 0] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file: no warning
        mosei.load_mult_pickle(_dump(tmp_path, _mult(3), "clean.pkl"))


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e39])
def test_a_modality_with_no_finite_value_is_refused(tmp_path, value):
    raw = _mult(3)
    raw["test"]["audio"] = np.full((3, 4, 74), value)
    with pytest.raises(DataError, match=r"split 'test' key 'audio': every value is NaN"):
        mosei.load_mult_pickle(_dump(tmp_path, raw))


def test_a_split_with_no_real_steps_fails_at_load(tmp_path):
    raw = _mmsa()
    raw["test"]["vision_lengths"] = [0, 0, 0]
    path = _dump(tmp_path, raw, "unaligned_50.pkl")
    pattern = r"unaligned_50\.pkl split 'test' modality 'visual' \(key 'vision'\): no real steps"
    with pytest.raises(DataError, match=pattern):
        mosei.load_mmsa_pickle(path)
    raw = _mult(2)
    raw["valid"]["text"] = np.zeros((2, 0, 300), np.float32)
    with pytest.raises(DataError, match=r"split 'valid' modality 'text' .*: no real steps"):
        mosei.load_mult_pickle(_dump(tmp_path, raw))


def test_a_test_split_with_no_real_steps_stops_compare_before_training(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    raw = _mmsa(3)
    raw["test"]["audio_lengths"] = [0, 0, 0]
    (data / "unaligned_50.pkl").write_bytes(pickle.dumps(raw))
    argv = ["compare", "--dataset", "mosei", "--data-dir", str(data), "--methods", "joint"]
    argv += ["--epochs", "1", "--seeds", "0", "--no-progress", "--out", str(tmp_path / "out")]
    argv += ["--name", "run", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("balgrad: error: ")
    assert "split 'test' modality 'audio' (key 'audio'): no real steps" in err[0]
    assert not list((tmp_path / "out").rglob("eval.json"))
    assert not list((tmp_path / "out").rglob("*.safetensors"))


@pytest.mark.parametrize(
    "ids, message",
    [
        (7, r"key 'id': expected one id per record \(a list or an array\), found int"),
        ({"a": 1}, r"key 'id': .*found dict"),
        (np.array("x"), r"key 'id': .*found ndarray of shape \(\)"),
        (None, r"key 'id': .*found NoneType"),
        ([b"a", {"b": 1}], r"key 'id' record 1: an id must be text, bytes or a number, not dict"),
    ],
)
def test_an_id_of_the_wrong_type_is_a_data_error_naming_the_field(tmp_path, ids, message):
    with pytest.raises(DataError, match=r"split 'train' " + message):
        mosei.load_mult_pickle(_dump(tmp_path, mult_with_id(ids)))
