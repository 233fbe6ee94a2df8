"""Waveform helpers the audio loaders and the audio towers share (plain tensor arithmetic,
so the data layer can use them without importing a backbone)."""

from __future__ import annotations

import torch

from balgrad.errors import ConfigError


def loop_to_length(wave: torch.Tensor, num_samples: int, clip: bool = True) -> torch.Tensor:
    """Repeat a waveform along its last axis until it fills ``num_samples``, then crop.

    As the OGM-GE official CREMA-D loader fits clips to 3 s (``np.tile(x, 3)[:3 * sr]``,
    then values clipped to [-1, 1]; ``clip`` does that last step). It tiles exactly 3
    times, which only differs from this for clips shorter than a third of the target.
    An empty waveform gives silence.

    Args:
        wave: The waveform ``[..., T]``.
        num_samples: The length wanted.
        clip: Clip the values to [-1, 1].

    Returns:
        ``[..., num_samples]``.

    Raises:
        ConfigError: ``num_samples < 1``.
    """
    if num_samples < 1:
        raise ConfigError(f"option 'num_samples' must be >= 1, got {num_samples}")
    n = wave.shape[-1]
    if n == 0:
        return wave.new_zeros(*wave.shape[:-1], num_samples)
    reps = -(-num_samples // n)  # ceil
    out = wave.repeat(*([1] * (wave.dim() - 1)), reps)[..., :num_samples]
    return out.clamp(-1.0, 1.0) if clip else out
