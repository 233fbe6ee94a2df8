"""Odd but valid image and WAV files, and hostile WAV/.npy headers, written byte by byte
with the values each should decode to computed here, from the raw numbers written (not
by the decoder under test). Shared by tests/data/test_decoders*.py (issue 23)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

RNG = np.random.default_rng(23)
H, W = 5, 7

# ---------------------------------------------------------------------------- images
# name -> (file bytes, expected float64 [3, H, W] in [0, 1], tolerance and why)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _grey3(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[None], 3, axis=0)


def odd_images() -> dict[str, tuple[bytes, np.ndarray, float]]:
    out = {}
    u16 = RNG.integers(0, 65536, size=(H, W)).astype(np.uint16)
    u16[0, 0], u16[0, 1] = 0, 65535
    # 16-bit grey PNG ("I;16") and big-endian TIFF ("I;16B"): / 65535 (exact in float32
    # up to one rounding)
    png16 = Image.frombytes("I;16", (W, H), u16.astype("<u2").tobytes())
    out["png16"] = (_save(png16, "PNG"), _grey3(u16 / 65535), 1e-7)
    tif16 = Image.frombytes("I;16B", (W, H), u16.astype(">u2").tobytes())
    out["tiff16b"] = (_save(tif16, "TIFF"), _grey3(u16 / 65535), 1e-7)
    # 16-bit data in a 32-bit integer container ("I")
    out["tiff_i32"] = (
        _save(Image.fromarray(u16.astype(np.int32)), "TIFF"),
        _grey3(u16 / 65535),
        1e-7,
    )
    # palette: indices into a palette of random colours, one of them transparent
    palette = RNG.integers(0, 256, size=(256, 3)).astype(np.uint8)
    idx = RNG.integers(0, 256, size=(H, W)).astype(np.uint8)
    pal = Image.frombytes("P", (W, H), idx.tobytes())
    pal.putpalette(palette.tobytes())
    rgb = palette[idx].transpose(2, 0, 1) / 255  # [3, H, W]
    out["palette"] = (_save(pal, "PNG"), rgb, 1e-7)
    out["palette_transparent"] = (_save(pal, "PNG", transparency=int(idx[0, 0])), rgb, 1e-7)
    # CMYK (TIFF): PIL's conversion, r = (255 - c) * (255 - k) / 255 rounded
    cmyk = RNG.integers(0, 256, size=(H, W, 4)).astype(np.uint8)
    c = cmyk.astype(np.float64)
    want = (255 - c[..., :3]) * (255 - c[..., 3:]) / 255
    im = Image.frombytes("CMYK", (W, H), cmyk.tobytes())
    out["cmyk"] = (_save(im, "TIFF"), want.transpose(2, 0, 1) / 255, 0.5 / 255 + 1e-7)
    # 32-bit float grey in [0, 1]: kept as it is
    f32 = RNG.random((H, W)).astype(np.float32)
    f32[0, 0], f32[0, 1] = 0.0, 1.0
    out["float"] = (_save(Image.fromarray(f32), "TIFF"), _grey3(f32.astype(np.float64)), 1e-7)
    # 1-bit, grey + alpha, RGBA
    bits = RNG.integers(0, 2, size=(H, W)).astype(bool)
    one = Image.frombytes("1", (W, H), np.packbits(bits, axis=1).tobytes())
    out["bilevel"] = (_save(one, "PNG"), _grey3(bits.astype(np.float64)), 0.0)
    la = RNG.integers(0, 256, size=(H, W, 2)).astype(np.uint8)
    out["grey_alpha"] = (
        _save(Image.frombytes("LA", (W, H), la.tobytes()), "PNG"),
        _grey3(la[..., 0] / 255),
        1e-7,
    )
    rgba = RNG.integers(0, 256, size=(H, W, 4)).astype(np.uint8)
    out["rgba"] = (
        _save(Image.frombytes("RGBA", (W, H), rgba.tobytes()), "PNG"),
        rgba[..., :3].transpose(2, 0, 1) / 255,
        1e-7,
    )
    return out


def bad_images() -> dict[str, bytes]:
    """Files no reader may decode: each must be a DataError naming the file."""
    png = _save(Image.fromarray(RNG.integers(0, 256, (40, 40, 3)).astype(np.uint8)), "PNG")
    nan = np.full((H, W), 0.5, np.float32)
    nan[1, 1] = np.nan
    return {
        "truncated_png": png[: len(png) // 2],
        "garbage": b"\x89PNG\r\n\x1a\n" + bytes(range(64)),
        "float_nan": _save(Image.fromarray(nan), "TIFF"),
        "float_out_of_range": _save(Image.fromarray(np.full((H, W), 3.0, np.float32)), "TIFF"),
        "int_negative": _save(Image.fromarray(np.full((H, W), -4, np.int32)), "TIFF"),
    }


# ---------------------------------------------------------------------------- WAVs

PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    size = len(body) if size is None else size
    return cid + struct.pack("<I", size) + body + (b"\0" if len(body) % 2 else b"")


def fmt_body(tag, channels, rate, sample_bytes, bits=None, extensible=False) -> bytes:
    bits = 8 * sample_bytes if bits is None else bits
    block = channels * sample_bytes
    base = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if not extensible:
        return base
    sub = struct.pack("<H", tag) + GUID_TAIL
    return struct.pack("<HHIIHH", EXTENSIBLE, channels, rate, rate * block, block, bits) + (
        struct.pack("<HHI", 22, bits, 0) + sub
    )


def riff(*chunks: bytes, riff_size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def wav_file(tag, channels, rate, sample_bytes, payload: bytes, extensible=False, extra=True):
    chunks = [chunk(b"fmt ", fmt_body(tag, channels, rate, sample_bytes, extensible=extensible))]
    if extra:  # an odd-sized chunk the reader must skip, with its pad byte
        chunks.append(chunk(b"LIST", b"INFOabc"))
    chunks.append(chunk(b"data", payload))
    return riff(*chunks)


N = 64  # frames per WAV


def odd_wavs() -> dict[str, tuple[bytes, int, np.ndarray]]:
    """name -> (file bytes, rate, expected mono float64 samples)."""
    out = {}
    u8 = RNG.integers(0, 256, size=N).astype(np.uint8)
    out["pcm8"] = (wav_file(PCM, 1, 8000, 1, u8.tobytes()), 8000, (u8 - 128.0) / 128)
    i16 = RNG.integers(-(2**15), 2**15, size=N).astype("<i2")
    out["pcm16"] = (wav_file(PCM, 1, 16000, 2, i16.tobytes()), 16000, i16 / 2**15)
    i24 = RNG.integers(-(2**23), 2**23, size=N)
    raw24 = b"".join(int(v).to_bytes(3, "little", signed=True) for v in i24)
    out["pcm24"] = (wav_file(PCM, 1, 44100, 3, raw24), 44100, i24 / 2**23)
    i32 = RNG.integers(-(2**31), 2**31, size=N).astype("<i4")
    out["pcm32"] = (wav_file(PCM, 1, 22050, 4, i32.tobytes()), 22050, i32 / 2**31)
    f32 = RNG.uniform(-1, 1, size=N).astype("<f4")
    out["float32"] = (wav_file(FLOAT, 1, 48000, 4, f32.tobytes()), 48000, f32.astype(np.float64))
    out["float32_extensible"] = (
        wav_file(FLOAT, 1, 48000, 4, f32.tobytes(), extensible=True),
        48000,
        f32.astype(np.float64),
    )
    f64 = RNG.uniform(-1, 1, size=N).astype("<f8")
    out["float64"] = (wav_file(FLOAT, 1, 32000, 8, f64.tobytes()), 32000, f64)
    st = RNG.integers(-(2**15), 2**15, size=(N, 2)).astype("<i2")
    # stereo: the stated rule is the mean of the channels
    out["stereo16"] = (wav_file(PCM, 2, 16000, 2, st.tobytes()), 16000, (st / 2**15).mean(1))
    st24 = RNG.integers(-(2**23), 2**23, size=(N, 2))
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in st24.ravel())
    out["stereo24_extensible"] = (
        wav_file(PCM, 2, 96000, 3, raw, extensible=True),
        96000,
        (st24 / 2**23).mean(1),
    )
    odd = RNG.integers(-(2**15), 2**15, size=N).astype("<i2")
    out["odd_rate_11025"] = (wav_file(PCM, 1, 11025, 2, odd.tobytes()), 11025, odd / 2**15)
    out["odd_rate_7350"] = (
        wav_file(PCM, 1, 7350, 2, odd.tobytes(), extra=False),
        7350,
        odd / 2**15,
    )
    return out


def _pcm16_fmt(**kw) -> bytes:
    args = {"tag": PCM, "channels": 1, "rate": 16000, "sample_bytes": 2} | kw
    return chunk(b"fmt ", fmt_body(**args))


_DATA = chunk(b"data", bytes(2 * N))


def bad_wavs() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a regex the DataError must match after the file name)."""
    fmt = _pcm16_fmt()
    big_fmt = fmt_body(PCM, 1, 16000, 2)
    return {
        "rate_2e31": (riff(_pcm16_fmt(rate=2**31 - 1), _DATA), r"sample rate of 2147483647 Hz"),
        "rate_1hz": (riff(_pcm16_fmt(rate=1), _DATA), r"sample rate of 1 Hz"),
        "rate_zero": (riff(_pcm16_fmt(rate=0), _DATA), r"sample rate of 0 Hz"),
        "zero_channels": (
            riff(chunk(b"fmt ", struct.pack("<HHIIHH", PCM, 0, 16000, 0, 0, 16)), _DATA),
            r"0 channels",
        ),
        "no_chunks": (riff(), r"no chunks"),
        "no_fmt": (riff(_DATA), r"data chunk comes before any fmt chunk"),
        "no_data": (riff(fmt, chunk(b"LIST", b"INFO")), r"no data chunk"),
        "data_beyond_file": (
            riff(fmt, b"data" + struct.pack("<I", 10**9) + bytes(2 * N)),
            r"'data' .* declares 1000000000 bytes, beyond the end",
        ),
        "riff_beyond_file": (
            riff(fmt, _DATA, riff_size=2**32 - 1),
            r"RIFF header declares 4294967303 bytes",
        ),
        "fmt_too_short": (riff(chunk(b"fmt ", big_fmt[:10]), _DATA), r"fmt chunk holds 10 bytes"),
        "partial_frame": (riff(fmt, chunk(b"data", bytes(7))), r"not a whole number"),
        "compressed": (riff(_pcm16_fmt(tag=0x55), _DATA), r"format 0x0055 is not read"),
        "bad_block": (
            riff(chunk(b"fmt ", struct.pack("<HHIIHH", PCM, 2, 16000, 0, 3, 16)), _DATA),
            r"block size 3",
        ),
        "float_nan": (
            riff(
                chunk(b"fmt ", fmt_body(FLOAT, 1, 16000, 4)),
                chunk(b"data", np.array([0.0, np.nan], "<f4").tobytes()),
            ),
            r"NaN or infinite",
        ),
        "riff_magic_only": (b"RIFF\x00\x00\x00\x00WAVE", r"no chunks"),
        # the reported case: a valid 12-byte RIFF/WAVE start, broken chunks after it
        "broken_chunks": (riff(b"\xff" * 40), r"chunk .* declares 4294967295 bytes"),
        "not_wav": (b"not a wav file at all", r"not a RIFF/WAVE file"),
    }


# ---------------------------------------------------------------------------- .npy


def npy_bytes(descr: str, shape: tuple, payload: bytes, fortran=False, version=(1, 0)) -> bytes:
    """A ``.npy`` file; ``descr`` as Python source (``"'<f4'"``, ``"[('a', '<i8')]"``)."""
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    pad_to = 64
    prefix = 10 if version == (1, 0) else 12
    header += " " * ((-(prefix + len(header) + 1)) % pad_to) + "\n"
    size = struct.pack("<H" if version == (1, 0) else "<I", len(header))
    return b"\x93NUMPY" + bytes(version) + size + header.encode("latin-1") + payload


def bad_npys() -> dict[str, tuple[bytes, str]]:
    ok = np.zeros((4, 3), "<f4").tobytes()
    return {
        "shape_beyond_file": (npy_bytes("'<f4'", (10**6, 10**6), ok), r"declares shape"),
        "shape_short_of_file": (npy_bytes("'<f4'", (2, 3), ok), r"declares shape"),
        # numpy's header parser accepts these; their product matches the payload
        "shape_negative": (npy_bytes("'<f4'", (-2, -6), ok), r"non-negative integers"),
        "shape_bool": (npy_bytes("'<f4'", (True, 12), ok), r"non-negative integers"),
        "object": (npy_bytes("'|O'", (2,), b"\x80\x04N."), r"Python objects"),
        "structured": (npy_bytes("[('a', '<i4'), ('b', '<f4')]", (6,), ok), r"structured"),
        # a field lying outside the item (the MOSEI crash's dtype, here in a .npy)
        "field_outside_item": (
            npy_bytes(
                "{'names': ['a'], 'formats': ['<i8'], 'offsets': [1000000], 'itemsize': 8}",
                (6,),
                ok,
            ),
            r"structured|damaged header",
        ),
        "subarray_field": (npy_bytes("[('a', '<f4', (3,))]", (4,), ok), r"structured"),
        "unicode": (npy_bytes("'<U1'", (4, 3), bytes(48)), r"expected"),
        "complex": (npy_bytes("'<c8'", (2, 3), ok), r"expected"),
        "nan": (npy_bytes("'<f4'", (4, 3), np.full((4, 3), np.nan, "<f4").tobytes()), r"NaN"),
        "bad_header": (b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4   \n", r"damaged header"),
        "npz": (b"PK\x03\x04" + bytes(40), r"npz"),
        "version3": (npy_bytes("'<f4'", (4, 3), ok, version=(3, 0)), r"version 3.0"),
    }
