"""The image decoder every reader uses (the image-text disk datasets, CREMA-D's and
Kinetics-Sounds' frames): every PIL mode scaled to [0, 1] by its real range, or refused;
decoding a file to find out whether it is readable; checking one without decoding
(``validate``).

How each mode reaches [0, 1] (docs/datasets.md, "Image modes"): 8 bits a channel ("1",
"L", "P" with its palette expanded, "LA", "RGB", "RGBA", "CMYK" by PIL's conversion, ...):
PIL's conversion to RGB, alpha dropped, then / 255. Unsigned 16-bit grey ("I;16",
"I;16B", ...): / 65535. "I" (32-bit integer grey, how PIL opens 16-bit PGM and some
TIFFs): / 65535 when every value lies in [0, 65535], else refused. "F" (32-bit float
grey): kept when every value is finite and lies in [0, 1], else refused (no rule maps
an arbitrary float range to [0, 1] faithfully). Any other mode is refused. Grey images are
repeated over three channels. A frame resized to a fixed size is resized after this
scaling (8-bit images as 8-bit RGB, the others as float), so 16-bit frames keep their
values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from balgrad.errors import DataError


class ImageModeError(ValueError):
    """An image whose pixel mode has no faithful mapping to ``[0, 1]``."""


IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

# what a complete file of each format ends with
_TRAILERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b";"}

# How each PIL mode reaches [0, 1] (docs/datasets.md, "Image modes"):
# 8 bits per channel: PIL's own conversion to RGB, then / 255 (alpha is dropped)
EIGHT_BIT_MODES = frozenset(
    {"1", "L", "P", "PA", "LA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)
# unsigned 16-bit grey (16-bit PNG and TIFF): / 65535
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# "I" (32-bit signed grey) is how PIL opens 16-bit PGM and some TIFFs: / 65535 when every
# value lies in [0, 65535], else refused (no known range). "F" (32-bit float grey): kept
# when every value lies in [0, 1], else refused. Any other mode is refused.
SUPPORTED_MODES = EIGHT_BIT_MODES | SIXTEEN_BIT_MODES | {"I", "F"}


def load_image(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Open ``path`` with PIL, return float32 ``[3, H, W]`` in ``[0, 1]``, each mode scaled
    by its real range (:data:`SUPPORTED_MODES`); grey images are repeated over 3 channels.
    ``size`` (H, W) resizes it (PIL bilinear, antialiased as torchvision's ``Resize``).

    Raises :class:`ImageModeError` for a mode without a faithful mapping, and PIL's
    ``OSError``/``ValueError``-like exceptions unchanged; :func:`decode_image` wraps them
    in :class:`DataError` naming the file.

    Args:
        path: The image file.
        size: (H, W), or None to keep the image's size.

    Returns:
        ``[3, H, W]`` float32 in [0, 1].
    """
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode in EIGHT_BIT_MODES:
            if mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")  # avoids PIL's palette-transparency warning
            rgb = im.convert("RGB")
            if size is not None:
                rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.array(rgb, dtype=np.uint8)  # [H, W, 3], writable copy
            return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)
        check_mode_range(im)
        grey = torch.from_numpy(np.array(im, dtype=np.float32))  # [H, W], writable copy
    if mode != "F":
        grey.div_(65535.0)
    if size is not None:
        resized = Image.fromarray(grey.numpy(), mode="F").resize(
            (size[1], size[0]), Image.Resampling.BILINEAR
        )
        # bilinear weights are non-negative and sum to one: only rounding can leave [0, 1]
        grey = torch.from_numpy(np.array(resized, dtype=np.float32)).clamp_(0.0, 1.0)
    return grey.unsqueeze(0).expand(3, -1, -1).contiguous()


def decode_image(
    path: Path, source: str | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """:func:`load_image`, with every failure (missing, truncated, corrupt, a refused
    mode, a decompression bomb) a :class:`DataError` naming the file and ``source``.

    Args:
        path: The image file.
        source: Where the path comes from (a CSV line), for the message.
        size: (H, W) to resize to, or None.

    Returns:
        ``[3, H, W]`` float32 in [0, 1].

    Raises:
        DataError: The file is missing, damaged or refused.
    """
    try:
        return load_image(path, size)
    except IMAGE_ERRORS as e:
        raise DataError(image_error(path, source, e)) from None


def check_mode_range(im: Image.Image) -> None:
    """Raise :class:`ImageModeError` unless ``im``'s mode and (for "I" and "F") its
    decoded values have a faithful mapping to [0, 1].

    Args:
        im: An opened (for "I" and "F": decoded) image.

    Raises:
        ImageModeError: The mode or its values do not map to [0, 1].
    """
    mode = im.mode
    check_mode(mode)
    if mode not in ("I", "F"):
        return
    arr = np.asarray(im)
    lo, hi = (np.nanmin(arr), np.nanmax(arr)) if arr.size else (0, 0)
    if mode == "I" and not (lo >= 0 and hi <= 65535):
        raise ImageModeError(
            f"mode 'I' (32-bit integer) holds values in [{lo}, {hi}]; only [0, 65535] "
            "(16-bit data) has a known range: save it as an 8- or 16-bit image"
        )
    if mode == "F" and not (np.isfinite(arr).all() and lo >= 0.0 and hi <= 1.0):
        raise ImageModeError(
            f"mode 'F' (32-bit float) holds values in [{lo}, {hi}]"
            f"{' and NaN or infinity' if not np.isfinite(arr).all() else ''}, outside [0, 1]: "
            "save it as an 8- or 16-bit image, or scaled to [0, 1]"
        )


def check_mode(mode: str) -> None:
    """Refuse a PIL mode without a faithful mapping to [0, 1].

    Args:
        mode: The image's PIL mode.

    Raises:
        ImageModeError: The mode is not in ``SUPPORTED_MODES``.
    """
    if mode not in SUPPORTED_MODES:
        raise ImageModeError(
            f"mode {mode!r} is not supported (supported: {', '.join(sorted(SUPPORTED_MODES))}): "
            "convert it to RGB"
        )


def image_error(path: Path, source: str | None, err: BaseException) -> str:
    """The message for an image that failed to load.

    Args:
        path: The file.
        source: Where the path comes from, or None.
        err: The error.

    Returns:
        The message, naming the file.
    """
    where = f"{source}: " if source else ""
    if isinstance(err, FileNotFoundError):
        return f"{where}image file {path} is missing"
    if isinstance(err, ImageModeError):
        return f"{where}image file {path} is refused: {err}"
    return f"{where}image file {path} cannot be read ({type(err).__name__}: {err})"


def decode_error(path: Path) -> BaseException | None:
    """Open and fully decode ``path``; return the exception (a refused mode included),
    or None if it is fine.

    Args:
        path: The image file.

    Returns:
        The exception, or None.
    """
    try:
        with Image.open(path) as im:
            im.load()
            check_mode_range(im)
    except IMAGE_ERRORS as e:
        return e
    return None


def header_error(path: Path) -> BaseException | None:
    """Check ``path`` without decoding its pixels; return the exception, or None.

    PIL reads the header (format, mode and size: an unknown format, a damaged header, an
    unsupported mode or an empty image fail here). Then the file must end as a complete
    file of its format ends (JPEG's end-of-image marker, PNG's IEND chunk, GIF's trailer,
    the size a WebP or BMP header declares), which catches truncated files. A file whose
    end does not match (truncated, or valid with trailing bytes, or a format without such
    a check), and an "I" or "F" image (its range is in its pixels), is fully decoded to
    decide, so a valid file never fails. Damage inside the compressed data of
    a file that ends properly is only found by decoding (``DiskDataset.get``).

    Args:
        path: The image file.

    Returns:
        The exception, or None.
    """
    try:
        with open(path, "rb") as f:
            with Image.open(f) as im:
                fmt, mode, (width, height) = im.format, im.mode, im.size
            check_mode(mode)
            if width < 1 or height < 1:
                return ValueError(f"the {fmt} header gives an empty image ({width}x{height})")
            complete = _ends_complete(f, fmt)
    except IMAGE_ERRORS as e:
        return e
    return None if complete and mode not in ("I", "F") else decode_error(path)


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
