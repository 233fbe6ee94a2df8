"""The WAV decoder every reader uses (CREMA-D, Kinetics-Sounds' ``audio_format="wav"``).

A RIFF/WAVE file (little-endian ``RIFF`` or big-endian ``RIFX``) is parsed here, chunk by
chunk, and every size its header declares is checked against the file and a sane range
before anything is allocated:

* the RIFF size, and each chunk's size, must lie within the file (a larger one means a
  truncated file);
* the ``fmt `` chunk must come before the ``data`` chunk, and both must exist;
* channels: 1 to :data:`MAX_CHANNELS`; sample rate: :data:`MIN_RATE` to
  :data:`MAX_RATE` Hz (a header's rate sizes a resample: 2**31 - 1 Hz would ask for
  hundreds of GiB);
* samples: PCM of 8 (unsigned), 16, 24 or 32 bits, or IEEE float of 32 or 64 bits, as
  the format tag says or as ``WAVE_FORMAT_EXTENSIBLE``'s sub-format says; the block
  size must be the channels times the sample's byte size, and the data size a whole
  number of blocks.

Anything else is a :class:`DataError` naming the file. Decoded samples are float32 in
[-1, 1] at full scale: unsigned 8-bit ``(x - 128) / 128``, signed integers divided by
2**15 (16-bit) or 2**31 (24-bit placed in the top bytes of an int32, as scipy reads it,
and 32-bit); floats are kept as they are and must be finite. Several channels are
averaged into one (as ``librosa.load`` does). The values equal those of
``scipy.io.wavfile.read`` followed by that scaling, which is what the readers did before
this module.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from balgrad.data.decoders._files import read_file
from balgrad.errors import DataError

#: the sample rates a header may declare, in Hz (telephone audio is 8000; 384000 is the
#: highest rate common hardware records)
MIN_RATE, MAX_RATE = 1_000, 384_000
MAX_CHANNELS = 256
#: the most samples a resample may produce (about 50 minutes at 22050 Hz; 256 MiB float32)
MAX_RESAMPLED = 2**26

_PCM, _IEEE_FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# the last 12 bytes of a KSDATAFORMAT_SUBTYPE_* GUID (its first 4 are the format tag)
_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
# sample bytes -> the value full scale maps to 1.0 (24-bit is read into an int32's top bytes)
_FULL_SCALE = {2: 32768.0, 3: 2147483648.0, 4: 2147483648.0}


@dataclass(frozen=True)
class WavHeader:
    """What a WAV file's header declares, checked against the file."""

    rate: int
    channels: int
    is_float: bool
    sample_bytes: int  # bytes per sample of one channel
    big_endian: bool  # RIFX
    data_offset: int  # where the samples start in the file
    data_size: int  # bytes of samples

    @property
    def frames(self) -> int:
        """The number of sample frames (samples per channel)."""
        return self.data_size // (self.channels * self.sample_bytes)


def _where(path: Path, source: str | None) -> str:
    return f"{source + ': ' if source else ''}audio file {path}"


def read_wav_header(path: Path, source: str | None = None) -> WavHeader:
    """Parse and check ``path``'s RIFF header and chunks without reading its samples;
    a missing file, or any problem listed in the module docstring, is a
    :class:`DataError` naming it (and ``source``, e.g. the CSV line).

    Args:
        path: The WAV file.
        source: Where the path comes from, for the message.

    Returns:
        The header.

    Raises:
        DataError: The file is missing or its header is bad.
    """
    path = Path(path)
    return read_file(
        path,
        _where(path, source),
        lambda f: _parse(f, os.fstat(f.fileno()).st_size, path, source),
        "cannot be read",
    )


def _parse(f, size: int, path: Path, source: str | None) -> WavHeader:
    def bad(why: str) -> DataError:
        return DataError(f"{_where(path, source)} cannot be read as WAV: {why}")

    head = f.read(12)
    if len(head) < 12:
        raise bad(f"it holds {len(head)} bytes, fewer than a RIFF header's 12")
    if head[:4] == b"RF64":
        raise bad("RF64 (64-bit RIFF) is not read; convert it to a plain WAV")
    if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise bad("it is not a RIFF/WAVE file")
    big = head[:4] == b"RIFX"
    order = ">" if big else "<"
    declared = struct.unpack(order + "I", head[4:8])[0] + 8
    if declared > size:
        raise bad(f"its RIFF header declares {declared} bytes, the file holds {size} (truncated?)")
    fmt = None
    pos, chunks = 12, 0
    while pos + 8 <= declared:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack(order + "4sI", f.read(8))
        chunks += 1
        name = chunk_id.decode("latin-1")
        if pos + 8 + chunk_size > size:
            raise bad(
                f"chunk {name!r} at byte {pos} declares {chunk_size} bytes, beyond the end "
                f"of the file ({size} bytes; truncated?)"
            )
        if chunk_id == b"fmt ":
            fmt = _format(f.read(min(chunk_size, 40)), order, bad)  # 40: the EXTENSIBLE form
        elif chunk_id == b"data":
            if fmt is None:
                raise bad("its data chunk comes before any fmt chunk")
            channels, is_float, sample_bytes, rate = fmt
            block = channels * sample_bytes
            if chunk_size % block:
                raise bad(
                    f"its data chunk holds {chunk_size} bytes, not a whole number of "
                    f"{block}-byte sample frames"
                )
            return WavHeader(rate, channels, is_float, sample_bytes, big, pos + 8, chunk_size)
        pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    if chunks == 0:
        raise bad("it holds no chunks")
    raise bad("it has no fmt chunk" if fmt is None else "it has no data chunk")


def _format(raw: bytes, order: str, bad) -> tuple[int, bool, int, int]:
    """(channels, is_float, sample bytes, rate) of a ``fmt `` chunk, checked."""
    if len(raw) < 16:
        raise bad(f"its fmt chunk holds {len(raw)} bytes, fewer than 16")
    tag, channels, rate, _byte_rate, block, bits = struct.unpack(order + "HHIIHH", raw[:16])
    if tag == _EXTENSIBLE:
        if len(raw) < 40 or raw[26:28] != b"\0\0" or raw[28:40] != _GUID_TAIL:
            raise bad("its WAVE_FORMAT_EXTENSIBLE fmt chunk has no known sub-format")
        tag = struct.unpack(order + "H", raw[24:26])[0]
    if tag not in (_PCM, _IEEE_FLOAT):
        raise bad(
            f"format 0x{tag:04x} is not read (only PCM and IEEE float samples; a compressed "
            "file must be converted)"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise bad(f"it declares {channels} channels (expected 1 to {MAX_CHANNELS})")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise bad(f"it declares a sample rate of {rate} Hz (expected {MIN_RATE} to {MAX_RATE})")
    sample_bytes, rest = divmod(block, channels)
    is_float = tag == _IEEE_FLOAT
    allowed = (4, 8) if is_float else (1, 2, 3, 4)
    if rest or sample_bytes not in allowed:
        sizes = " or ".join(map(str, allowed))
        raise bad(
            f"its block size {block} for {channels} channel(s) is not {sizes} bytes a sample "
            f"({'float' if is_float else 'PCM'})"
        )
    ok_bits = (
        bits == 8 * sample_bytes if is_float else 8 * sample_bytes - 8 < bits <= 8 * sample_bytes
    )
    if not ok_bits:
        raise bad(f"it declares {bits} bits a sample in {sample_bytes}-byte samples")
    return channels, is_float, sample_bytes, rate


def decode_wav(path: Path, source: str | None = None) -> tuple[torch.Tensor, int]:
    """``(float32 mono waveform, sample rate)`` of a WAV file (module docstring); every
    problem is a :class:`DataError` naming the file and ``source``.

    Args:
        path: The WAV file.
        source: Where the path comes from (a CSV line), for the message.

    Returns:
        (waveform ``[T]``, rate in Hz).

    Raises:
        DataError: The file is missing or not a supported WAV.
    """
    path = Path(path)
    h = read_wav_header(path, source)
    try:
        with path.open("rb") as f:
            f.seek(h.data_offset)
            raw = f.read(h.data_size)
    except OSError as e:
        raise DataError(
            f"{_where(path, source)} cannot be read ({type(e).__name__}: {e})"
        ) from None
    if len(raw) != h.data_size:  # the file shrank since its header was read
        raise DataError(f"{_where(path, source)} cannot be read as WAV: its data is truncated")
    data = _samples(raw, h)
    if h.channels > 1:
        data = data.reshape(-1, h.channels)
    if h.sample_bytes == 1:  # 8-bit PCM is unsigned
        wave = (data.astype(np.float32) - 128.0) / 128.0
    elif h.is_float:
        wave = data.astype(np.float32)
        if not np.isfinite(wave).all():
            raise DataError(f"{_where(path, source)} holds NaN or infinite samples")
    else:
        wave = data.astype(np.float32) / _FULL_SCALE[h.sample_bytes]
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    return torch.from_numpy(np.ascontiguousarray(wave)), h.rate


def _samples(raw: bytes, h: WavHeader) -> np.ndarray:
    """The samples as numpy integers or floats, in file order (channels interleaved)."""
    order = ">" if h.big_endian else "<"
    if h.sample_bytes == 1:
        return np.frombuffer(raw, dtype=np.uint8)
    if h.sample_bytes == 3:  # into the top three bytes of an int32, as scipy reads it
        three = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        four = np.zeros((len(three), 4), dtype=np.uint8)
        if h.big_endian:
            four[:, :3] = three
        else:
            four[:, 1:] = three
        return four.view(order + "i4").reshape(-1)
    kind = "f" if h.is_float else "i"
    return np.frombuffer(raw, dtype=f"{order}{kind}{h.sample_bytes}")


def resample(wave: torch.Tensor, rate: int, target: int, what: str = "audio") -> torch.Tensor:
    """``wave`` (float32 ``[T]``) from ``rate`` Hz to ``target`` Hz: scipy's polyphase
    filter (``resample_poly``, Kaiser window), the ratio reduced to lowest terms (16000 ->
    22050 Hz is up 441, down 320). The output may hold at most :data:`MAX_RESAMPLED`
    samples (a :class:`DataError` naming ``what`` otherwise), checked before anything is
    allocated.

    Args:
        wave: The waveform ``[T]``.
        rate: Its rate in Hz.
        target: The rate wanted.
        what: What the audio is, for the message.

    Returns:
        The resampled waveform.

    Raises:
        DataError: The result would be too long.
    """
    if rate == target:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(target))
    up, down = target // g, rate // g
    out_len = -(-len(wave) * up // down)
    if out_len > MAX_RESAMPLED:
        raise DataError(
            f"{what}: {len(wave)} samples at {rate} Hz resampled to {target} Hz would be "
            f"{out_len} samples, more than the {MAX_RESAMPLED} allowed"
        )
    out = resample_poly(wave.numpy().astype(np.float64), up, down)
    return torch.from_numpy(out.astype(np.float32))
