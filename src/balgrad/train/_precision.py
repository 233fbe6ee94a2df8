"""Mixed precision for the training loop and evaluation: ``--precision``.

``auto`` is resolved once per run (bf16 on a CUDA device that supports it, fp32
elsewhere) and the resolved name is what config.yaml and eval.json record. Forward
passes run under ``torch.autocast``; fp16 also needs a ``torch.amp.GradScaler``, which
the strategy applies to every loss it differentiates (``backward(..., scaler=...)``).
fp16 and bf16 are allowed on the CPU too, where torch's CPU autocast supports them: slow,
but it lets the scaled path be tested without a GPU.
"""

from __future__ import annotations

import contextlib

import torch

from balgrad.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")  # resolved names; "auto" resolves to one of them
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
__all__ = ["PRECISIONS", "autocast_region", "make_scaler", "resolve_precision"]


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for ``device``; other names are checked and kept.

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: The device.

    Returns:
        The precision.

    Raises:
        ConfigError: An unknown name, or a precision the device cannot autocast to.
    """
    dev = torch.device(_concrete(device))
    if precision == "auto":
        cuda_bf16 = dev.type == "cuda" and torch.cuda.is_available()
        return "bf16" if cuda_bf16 and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected auto, fp32, bf16 or fp16, got {precision!r}")
    if precision != "fp32" and not torch.amp.is_autocast_available(dev.type):
        raise ConfigError(
            f"precision: {precision} needs torch.autocast, which torch {torch.__version__} "
            f"does not offer on device {dev.type!r}; use --precision fp32"
        )
    return precision


def _concrete(device: str | torch.device) -> str | torch.device:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (bf16 has fp32's exponent range and needs none).

    Args:
        precision: The resolved precision.
        device: The device.

    Returns:
        A ``GradScaler``, or None.
    """
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def autocast_region(precision: str, device) -> contextlib.AbstractContextManager:
    """The forward passes' autocast for a resolved ``--precision`` (none for fp32).

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: The device.

    Returns:
        A context manager.
    """
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
