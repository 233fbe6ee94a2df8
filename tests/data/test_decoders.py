"""The checked decoders of balgrad.data.decoders (issue 23, items 1, 3, 5 and 11): every
size a WAV or ``.npy`` header declares is checked against the file and a range before
anything is allocated, hostile headers are a DataError naming the file (never a
traceback, a huge allocation or a crash, also when fuzzed under a memory cap), and valid
files keep the values they had."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import torch
from odd_files import bad_npys, bad_wavs, npy_bytes, odd_wavs
from test_kinetics_sounds import make as make_ks

from balgrad.data._catalog import DATASETS
from balgrad.data.decoders import decode_npy, decode_wav, read_wav_header, resample
from balgrad.data.decoders._wav import MAX_RATE, MAX_RESAMPLED, MIN_RATE
from balgrad.errors import ConfigError, DataError

HERE = Path(__file__).resolve().parent
BAD_WAVS = bad_wavs()
BAD_NPYS = bad_npys()


@pytest.mark.parametrize("name", sorted(BAD_WAVS))
def test_a_hostile_wav_header_is_a_data_error_naming_the_file(tmp_path, name):
    data, why = BAD_WAVS[name]
    path = tmp_path / f"{name}.wav"
    path.write_bytes(data)
    with pytest.raises(DataError, match=f"audio file {path} .*{why}"):
        decode_wav(path, None)


def test_the_header_alone_is_parsed_for_validation(tmp_path):
    data, rate, _ = odd_wavs()["stereo24_extensible"]
    path = tmp_path / "x.wav"
    path.write_bytes(data)
    h = read_wav_header(path)
    assert (h.rate, h.channels, h.sample_bytes, h.is_float, h.frames) == (rate, 2, 3, False, 64)
    assert data[h.data_offset - 8 : h.data_offset - 4] == b"data"


def test_16_bit_mono_pcm_is_bitwise_what_the_readers_gave_before(tmp_path):
    """CREMA-D's recorded results rest on scipy's read scaled by 1/32768: the decoder
    must give the very same float32 tensor (deterministic by construction: an exact
    integer conversion and one correctly rounded division each)."""
    rng = np.random.default_rng(0)
    for rate, channels in ((16000, 1), (22050, 1), (8000, 2)):
        pcm = rng.integers(-(2**15), 2**15, size=(3001, channels)).astype("<i2")
        path = tmp_path / f"{rate}_{channels}.wav"
        with wave.open(str(path), "wb") as f:
            f.setnchannels(channels)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes(pcm.tobytes())
        got, got_rate = decode_wav(path)
        r, data = scipy.io.wavfile.read(path)
        old = data.astype(np.float32) / 32768.0
        old = old.mean(axis=1) if old.ndim == 2 else old
        assert got_rate == r == rate
        assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(old))


def test_the_rate_range_is_stated_and_applied(tmp_path):
    from odd_files import PCM, chunk, fmt_body, riff

    for rate, ok in (
        (MIN_RATE - 1, False),
        (MIN_RATE, True),
        (MAX_RATE, True),
        (MAX_RATE + 1, False),
    ):
        path = tmp_path / f"{rate}.wav"
        path.write_bytes(riff(chunk(b"fmt ", fmt_body(PCM, 1, rate, 2)), chunk(b"data", bytes(8))))
        if ok:
            assert decode_wav(path)[1] == rate
        else:
            with pytest.raises(DataError, match=f"sample rate of {rate} Hz"):
                decode_wav(path)


def test_a_resample_is_bounded_before_it_allocates():
    wave_ = torch.zeros(MAX_RESAMPLED // 384 + 1000)
    with pytest.raises(DataError, match=f"more than the {MAX_RESAMPLED} allowed"):
        resample(wave_, MIN_RATE, MAX_RATE, "clip.wav")
    # within the bound it runs, and matches scipy (the same call: bitwise)
    from scipy.signal import resample_poly

    x = torch.linspace(-1, 1, 1000)
    want = resample_poly(x.numpy().astype(np.float64), 441, 320).astype(np.float32)
    assert torch.equal(resample(x, 16000, 22050), torch.from_numpy(want))


def test_the_sample_rate_options_have_the_same_range(tmp_path):
    from test_cremad import make

    from balgrad.data.readers._cremad import CremaDDataset

    DATASETS.get("kinetics_sounds")
    from balgrad.data.readers._kinetics_sounds import KineticsSounds

    root = make(tmp_path / "cremad")
    ks_root = make_ks(tmp_path / "ks")
    for rate in (0, 10, 10**7):
        with pytest.raises(ConfigError, match=r"'sample_rate' must be None or in \[1000, 384000\]"):
            CremaDDataset(root, "train", sample_rate=rate)
        with pytest.raises(ConfigError, match=r"'sample_rate' must be None or in \[1000, 384000\]"):
            KineticsSounds(ks_root, "train", audio_format="wav", sample_rate=rate)


# --------------------------------------------------------------------- .npy


@pytest.mark.parametrize("name", sorted(BAD_NPYS))
def test_a_hostile_npy_is_a_data_error_naming_the_file(tmp_path, name):
    data, why = BAD_NPYS[name]
    path = tmp_path / f"{name}.npy"
    path.write_bytes(data)
    with pytest.raises(DataError, match=f"array file {path} .*(?:{why})"):
        decode_npy(path)


@pytest.mark.parametrize("name", sorted(BAD_NPYS))
def test_kinetics_sounds_refuses_each_hostile_npy_naming_file_and_line(tmp_path, name):
    DATASETS.get("kinetics_sounds")
    from balgrad.data.readers._kinetics_sounds import KineticsSounds

    root = make_ks(tmp_path, clips=[("-1IlT", 3)], frames=3)
    path = root / "audio" / "train" / "-1IlT.npy"
    path.write_bytes(BAD_NPYS[name][0])
    with pytest.raises(DataError, match=f"my_train.txt line 1: audio file {path} "):
        KineticsSounds(root, "train", num_frames=1).validate()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="<f4").reshape(3, 4),
        np.arange(12, dtype=">f8").reshape(4, 3),
        np.asfortranarray(np.arange(12, dtype="<i2").reshape(3, 4)),
        np.arange(6, dtype="u1").reshape(2, 3),
        np.zeros((0, 5), "<f4"),
    ],
)
def test_a_valid_npy_reads_as_numpy_reads_it(tmp_path, array):
    path = tmp_path / "a.npy"
    np.save(path, array)
    got = decode_npy(path)
    want = np.load(path, allow_pickle=False)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # a copy of the same bytes: exact
    assert got.flags.writeable


def test_non_finite_values_are_refused_unless_asked_for(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.array([[1.0, np.inf]], "<f4"))
    with pytest.raises(DataError, match="NaN or infinite"):
        decode_npy(path)
    assert np.isinf(decode_npy(path, finite=False)).sum() == 1


def test_a_version_2_header_is_read(tmp_path):
    path = tmp_path / "a.npy"
    path.write_bytes(npy_bytes("'<f4'", (2, 2), np.ones(4, "<f4").tobytes(), version=(2, 0)))
    np.testing.assert_array_equal(decode_npy(path), np.ones((2, 2)))


# --------------------------------------------------------------------- fuzzing

FUZZ = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from odd_files import npy_bytes, odd_wavs
    from balgrad.data.decoders import decode_npy, decode_wav
    from balgrad.errors import DataError

    # cap the address space at what is mapped now plus 512 MiB: a header that sized an
    # allocation from its own fields would hit it (MemoryError, reported as a failure)
    vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))
    cap = vm * 1024 + 512 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    tmp, rounds = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(23)
    extremes = [0, 1, 2, 3, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    wavs = [b for b, _, _ in odd_wavs().values()]
    npys = [npy_bytes("'<f4'", (4, 3), bytes(48)), npy_bytes("'>i2'", (6,), bytes(12))]
    descrs = ["'<f4'", "'>f8'", "'|u1'", "'<i8'", "'|O'", "'<U3'", "'|V8'", "'<c16'",
              "'|b1'", "'<m8'", "'<f2'", "[('a', '<f4')]", "('<f4', (2,))"]
    failures, outcomes = [], {"ok": 0, "refused": 0}

    def mutate(base, header_len):
        b = bytearray(base)
        how = rng.integers(3)
        if how == 0:  # random bytes in the header
            for _ in range(rng.integers(1, 5)):
                b[rng.integers(header_len)] = rng.integers(256)
        elif how == 1:  # an extreme value in a 2- or 4-byte field
            width = int(rng.choice([2, 4]))
            at = int(rng.integers(header_len - width))
            b[at:at + width] = (int(rng.choice(extremes)) % 2 ** (8 * width)).to_bytes(width, "little")
        else:  # cut short
            b = b[: rng.integers(len(b))]
        return bytes(b)

    def attempt(kind, data):
        path = f"{tmp}/fuzz.{kind}"
        with open(path, "wb") as f:
            f.write(data)
        try:
            if kind == "wav":
                x, rate = decode_wav(path)
                assert x.dtype.is_floating_point and bool(x.isfinite().all()) and 1000 <= rate
            else:
                decode_npy(path)
            outcomes["ok"] += 1
        except DataError as e:
            if path not in str(e):
                failures.append(f"{kind}: message names no file: {e}")
            outcomes["refused"] += 1
        except BaseException as e:
            failures.append(f"{kind}: {type(e).__name__}: {e} on {data[:60]!r}")

    for i in range(rounds):
        base = wavs[i % len(wavs)]
        attempt("wav", mutate(base, base.index(b"data") + 8))
        base = npys[i % len(npys)]
        attempt("npy", mutate(base, len(base) - 12))
        shape = tuple(int(d) for d in rng.integers(-3, 2**40, size=rng.integers(0, 4)))
        descr = descrs[rng.integers(len(descrs))]
        payload = bytes(int(rng.integers(0, 64)))
        if rng.random() < 0.3:  # a small shape, maybe negative, whose size the payload matches
            shape = tuple(int(d) for d in rng.integers(-4, 5, size=rng.integers(1, 3)))
            descr, payload = "'<f4'", bytes(4 * abs(int(np.prod(shape))))
        attempt("npy", npy_bytes(descr, shape, payload))
    print(json.dumps({"failures": failures[:20], "outcomes": outcomes}))
    """
)


def test_fuzzed_wav_and_npy_headers_are_refused_by_name_under_a_memory_cap(tmp_path):
    env = dict(os.environ)
    src = str(Path(__import__("balgrad").__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), src, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ, str(tmp_path), "300"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # a crash or a signal fails here
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    # the fuzzing reached both outcomes: some mutations leave a valid file
    assert report["outcomes"]["refused"] > 600 and report["outcomes"]["ok"] > 10


# --------------------------------------------------------------------- .npz (the caches)


def _zip(members: dict[str, bytes], compression=None) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression or zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _size_lie(data: bytes) -> bytes:
    """A zip whose central directory declares 2**31 uncompressed bytes for its member."""
    raw = bytearray(data)
    at = raw.index(b"PK\x01\x02") + 24  # the uncompressed size field of the entry
    raw[at : at + 4] = (2**31).to_bytes(4, "little")
    return bytes(raw)


GOOD_MEMBER = npy_bytes("'<f4'", (4, 3), bytes(48))
BAD_NPZS = {
    "shape_lie": (_zip({"x.npy": npy_bytes("'<f8'", (10**5, 10**5), bytes(16))}), "declares shape"),
    "object": (_zip({"x.npy": npy_bytes("'|O'", (1,), b"\x80\x04N.")}), "Python objects"),
    "size_lie": (_size_lie(_zip({"x.npy": GOOD_MEMBER})), "more than the compression can give"),
    "not_npy": (_zip({"x.pkl": b"\x80\x04N."}), "is not an .npy array"),
    "bzip2": (_zip({"x.npy": GOOD_MEMBER}, compression=12), "zip compression 12"),
    "garbage": (b"PK\x03\x04" + bytes(30), "cannot be read as .npz"),
}


@pytest.mark.parametrize("name", sorted(BAD_NPZS))
def test_a_hostile_npz_is_a_data_error_naming_the_file(tmp_path, name):
    from balgrad.data.decoders import decode_npz

    data, why = BAD_NPZS[name]
    path = tmp_path / "a.npz"
    path.write_bytes(data)
    with pytest.raises(DataError, match=f"array archive {path}.*{why}"):
        decode_npz(path)


def test_a_valid_npz_reads_as_numpy_reads_it(tmp_path):
    from balgrad.data.decoders import decode_npz

    path = tmp_path / "a.npz"
    arrays = {"x": np.arange(6, dtype="<f4").reshape(2, 3), "t": np.array(["ab", "c"])}
    np.savez_compressed(path, **arrays, flags=np.array([True, False]), big=np.zeros(10**5, "u1"))
    got = decode_npz(path, kinds="biufU")
    with np.load(path, allow_pickle=False) as z:
        assert sorted(got) == sorted(z.files)
        for k in z.files:
            assert got[k].dtype == z[k].dtype and np.array_equal(got[k], z[k])


@pytest.mark.parametrize("name", ["shape_lie", "size_lie", "object"])
def test_a_hostile_digits_cache_is_a_miss_with_a_warning(tmp_path, monkeypatch, name):
    from balgrad.data._cache_files import CacheWarning
    from balgrad.data.readers import _digits as digits
    from balgrad.data.readers._builtin import load_builtin

    opts = {"n_train": 40, "n_test": 20}
    monkeypatch.setattr(digits, "_DIGITS_MEMORY", {})
    good = load_builtin("digits", "train", cache_dir=str(tmp_path), **opts)
    (path,) = tmp_path.glob("digits-*.npz")
    path.write_bytes(BAD_NPZS[name][0])
    monkeypatch.setattr(digits, "_DIGITS_MEMORY", {})
    with pytest.warns(CacheWarning, match=f"digits cache {path} is unusable .*{BAD_NPZS[name][1]}"):
        again = load_builtin("digits", "train", cache_dir=str(tmp_path), **opts)
    assert np.array_equal(again.images, good.images)


# --------------------------------------------------------------------- IDX (fashion)


def test_a_gzipped_idx_is_decompressed_only_as_far_as_its_header_says(tmp_path):
    """A gzip bomb: 8 MB of zeros behind a header declaring 10 bytes is refused by its
    trailing data after reading 11 bytes, and a header declaring more than the file can
    hold is refused before decompressing anything."""
    import gzip
    import struct

    from balgrad.data.readers._idx import read_idx

    bomb = tmp_path / "bomb-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + bytes(8 * 2**20)))
    with pytest.raises(
        DataError, match=f"{bomb}: IDX file has trailing bytes after the 10 data bytes"
    ):
        read_idx(bomb)
    lie = tmp_path / "lie-idx1-ubyte.gz"
    lie.write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 2**31) + bytes(10)))
    with pytest.raises(DataError, match=f"{lie}: IDX header declares dimensions \\[2147483648\\]"):
        read_idx(lie)
    ok = tmp_path / "ok-idx2-ubyte.gz"
    ok.write_bytes(gzip.compress(struct.pack(">BBBBII", 0, 0, 8, 2, 2, 3) + bytes(range(6))))
    assert read_idx(ok).tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_8_bit_frames_are_bitwise_what_the_readers_gave_before(tmp_path, fmt):
    """The recorded CREMA-D and Kinetics-Sounds results rest on 8-bit frames read as
    PIL's RGB, resized by PIL (integer arithmetic) and divided by 255: deterministic by
    construction, so the same bits."""
    from PIL import Image

    from balgrad.data.decoders import decode_image

    rng = np.random.default_rng(1)
    path = tmp_path / f"f.{fmt.lower()}"
    Image.fromarray(rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)).save(path, fmt)
    with Image.open(path) as im:
        rgb = im.convert("RGB").resize((24, 16), Image.Resampling.BILINEAR)
    old = torch.from_numpy(np.array(rgb, np.uint8)).permute(2, 0, 1).to(torch.float32) / 255.0
    assert torch.equal(decode_image(path, None, (16, 24)), old)
