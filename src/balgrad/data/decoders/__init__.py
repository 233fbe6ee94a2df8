"""One checked decoder per file format, used by every reader of balgrad.data.

- :mod:`.image`: images and video frames (every PIL mode scaled to [0, 1] by its real
  range, or refused), and checking an image without decoding it.
- :mod:`.wav`: WAV files (PCM 8/16/24/32-bit, IEEE float, ``WAVE_FORMAT_EXTENSIBLE``),
  every declared size checked before anything is allocated; resampling, bounded.
- :mod:`.npy`: ``.npy`` arrays and ``.npz`` archives (plain numeric dtypes only, the
  header's shape checked against the file's size before anything is allocated, nothing
  unpickled).

Each raises :class:`~balgrad.errors.DataError` naming the file.
"""

from balgrad.data.decoders._image import decode_image, header_error
from balgrad.data.decoders._npy import decode_npy, decode_npz, read_npy_header
from balgrad.data.decoders._wav import decode_wav, read_wav_header, resample

__all__ = [
    "decode_image",
    "decode_npy",
    "decode_npz",
    "decode_wav",
    "header_error",
    "read_npy_header",
    "read_wav_header",
    "resample",
]
