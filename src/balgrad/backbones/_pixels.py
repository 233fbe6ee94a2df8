"""Tensor operations on one raw image ``[C, H, W]``, shared by the image encoders'
``preprocess`` (no PIL round trip)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from balgrad.errors import BackboneError

_LUMA = (0.299, 0.587, 0.114)


def to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """``[C, H, W]`` (or ``[H, W]``) with C in {1, 3, 4} -> ``[channels, H, W]``.

    Grayscale is repeated to RGB, an alpha channel is dropped, and RGB becomes grayscale
    with the ITU-R 601 luma weights when ``channels == 1``.

    Args:
        image: The image.
        channels: 1 or 3.

    Returns:
        ``[channels, H, W]``.

    Raises:
        BackboneError: Not a 2-D or 3-D tensor, or an unsupported channel count.
    """
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3:
        raise BackboneError(f"an image must be a [C, H, W] tensor, got shape {tuple(image.shape)}")
    c = image.shape[0]
    if c == 4:
        image, c = image[:3], 3
    if c not in (1, 3):
        raise BackboneError(f"an image must have 1, 3 or 4 channels, got {c}")
    if c == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1)
    if channels == 1:
        w = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
        return (image * w).sum(0, keepdim=True)
    raise BackboneError(f"cannot convert a {c}-channel image to {channels} channels")


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of one ``[C, H, W]`` image (antialiased when shrinking).

    Args:
        image: ``[C, H, W]``.
        size: (h, w).

    Returns:
        ``[C, h, w]``, float.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(
        image.unsqueeze(0).float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return out.squeeze(0)


def resize_shortest(image: torch.Tensor, shortest: int) -> torch.Tensor:
    """Resize so that the shorter side is ``shortest`` (aspect kept).

    Args:
        image: ``[C, H, W]``.
        shortest: The shorter side's new length.

    Returns:
        The resized image.
    """
    h, w = image.shape[-2:]
    scale = shortest / min(h, w)
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def center_crop(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Center crop ``[C, H, W]`` to ``size``, zero-padding where the image is smaller.

    Args:
        image: ``[C, H, W]``.
        size: (h, w).

    Returns:
        ``[C, h, w]``.
    """
    th, tw = size
    h, w = image.shape[-2:]
    if h < th or w < tw:
        ph, pw = max(0, th - h), max(0, tw - w)
        image = F.pad(image, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = image.shape[-2:]
    top, left = (h - th) // 2, (w - tw) // 2
    return image[..., top : top + th, left : left + tw]
