"""Loading an image, decoding it to find out whether it is readable, and checking it
without decoding (``DiskDataset.validate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

# what a complete file of each format ends with
_TRAILERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b";"}


def load_image(path: Path) -> torch.Tensor:
    """Open ``path`` with PIL, convert to RGB, return float32 ``[3, H, W]`` in ``[0, 1]``.

    Raises ``OSError``/``ValueError``-like exceptions from PIL unchanged; callers wrap
    them in :class:`DataError` with the file and line.
    """
    with Image.open(path) as im:
        im.load()
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # avoids PIL's palette-transparency warning
        rgb = im.convert("RGB")
    arr = np.array(rgb, dtype=np.uint8)  # [H, W, 3], writable copy
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


def image_error(path: Path, source: str, err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return f"{source}: image file {path} is missing"
    return f"{source}: image file {path} cannot be read ({type(err).__name__}: {err})"


def decode_error(path: Path) -> BaseException | None:
    """Open and fully decode ``path``; return the exception, or None if it is fine."""
    try:
        with Image.open(path) as im:
            im.load()
    except IMAGE_ERRORS as e:
        return e
    return None


def header_error(path: Path) -> BaseException | None:
    """Check ``path`` without decoding its pixels; return the exception, or None.

    PIL reads the header (format and size: an unknown format, a damaged header or an
    empty image fail here). Then the file must end as a complete file of its format ends
    (JPEG's end-of-image marker, PNG's IEND chunk, GIF's trailer, the size a WebP or BMP
    header declares), which catches truncated files. A file whose end does not match
    (truncated, or valid with trailing bytes, or a format without such a check) is fully
    decoded to decide, so a valid file never fails. Damage inside the compressed data of
    a file that ends properly is only found by decoding (``DiskDataset.get``).
    """
    try:
        with open(path, "rb") as f:
            with Image.open(f) as im:
                fmt, (width, height) = im.format, im.size
            if width < 1 or height < 1:
                return ValueError(f"the {fmt} header gives an empty image ({width}x{height})")
            complete = _ends_complete(f, fmt)
    except IMAGE_ERRORS as e:
        return e
    return None if complete else decode_error(path)


def _ends_complete(f, fmt: str | None) -> bool:
    size = f.seek(0, 2)
    if fmt in _TRAILERS:
        trailer = _TRAILERS[fmt]
        f.seek(max(0, size - len(trailer)))
        return f.read() == trailer
    if fmt in ("WEBP", "BMP"):
        # RIFF: bytes 4..8 hold the size after the first 8; BMP: bytes 2..6 the file size
        offset, extra = (4, 8) if fmt == "WEBP" else (2, 0)
        f.seek(offset)
        declared = int.from_bytes(f.read(4), "little") + extra
        return declared > extra and size >= declared
    return False
