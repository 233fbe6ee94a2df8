"""An audio front end in plain torch: waveform -> log-STFT or log-mel spectrogram.

torchaudio is not used: the PyPI wheels pin a torch version and do not import beside the
CPU torch this project runs on. The short-time Fourier transform is ``torch.stft`` with a
periodic Hann window and, by default, ``center=True`` with zero padding (librosa's defaults
since 0.10). The mel filterbank is built here on the Slaney scale (linear below 1 kHz,
logarithmic above; librosa's default, ``htk=False``) or the HTK scale
(``2595 log10(1 + f / 700)``), with optional Slaney area normalisation.

The log is ``log(x + eps)``: a zero input (silence) gives the finite floor ``log(eps)``
everywhere, which is what :attr:`LogSpectrogram.floor` reports.

``LogSpectrogram(kind="stft", power=1.0, eps=1e-7, n_fft=512, hop_length=353)`` at
22050 Hz is the CREMA-D input of the OGM-GE official code (``dataset/CramedDataset.py`` of
GeWu-Lab/OGM-GE_CVPR2022: ``log(|librosa.stft(x, n_fft=512, hop_length=353)| + 1e-7)``),
after :func:`loop_to_length` has made every clip 3 s long.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from balgrad.data._waveform import loop_to_length  # noqa: F401 - re-exported: the loaders use it too
from balgrad.errors import ConfigError
from balgrad.registry import validated

MelScale = Literal["slaney", "htk"]
#: the largest FFT, hop and window (in samples): 1.4 s at 48 kHz, far past any front end's
MAX_FFT = 65536
#: a sample rate in Hz: from telephone-band audio well below 8 kHz to 384 kHz studio audio
SampleRate = Annotated[int, Field(ge=1000, le=384_000)]

# Slaney's Auditory Toolbox: 200/3 Hz per mel below 1 kHz, log steps of 6.4^(1/27) above
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


@validated
def hz_to_mel(freq: torch.Tensor, scale: MelScale = "slaney") -> torch.Tensor:
    """Frequencies in Hz -> mels on the named scale.

    Args:
        freq: Frequencies in Hz.
        scale: ``"slaney"`` or ``"htk"``.

    Returns:
        Mels, float64.
    """
    freq = torch.as_tensor(freq, dtype=torch.float64)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    log_part = _MIN_LOG_MEL + torch.log(freq.clamp_min(_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(freq >= _MIN_LOG_HZ, log_part, freq / _F_SP)


@validated
def mel_to_hz(mel: torch.Tensor, scale: MelScale = "slaney") -> torch.Tensor:
    """Mels on the named scale -> Hz (the inverse of :func:`hz_to_mel`).

    Args:
        mel: Mels.
        scale: ``"slaney"`` or ``"htk"``.

    Returns:
        Hz, float64.
    """
    mel = torch.as_tensor(mel, dtype=torch.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log_part, mel * _F_SP)


def mel_center_frequencies(
    n_mels: int, f_min: float, f_max: float, scale: str = "slaney"
) -> torch.Tensor:
    """The ``n_mels + 2`` band edges in Hz, evenly spaced in mel; band i peaks at edge i+1.

    Args:
        n_mels: The number of bands.
        f_min: The lowest frequency in Hz.
        f_max: The highest.
        scale: ``"slaney"`` or ``"htk"``.

    Returns:
        ``[n_mels + 2]`` frequencies in Hz.
    """
    lo, hi = hz_to_mel(torch.tensor(f_min), scale), hz_to_mel(torch.tensor(f_max), scale)
    return mel_to_hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64), scale)


@validated
def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: Annotated[int, Field(ge=1)] = 64,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: MelScale = "slaney",
    norm: Literal["slaney"] | None = "slaney",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` over the rfft bins.

    Band i rises linearly from edge i to edge i+1 and falls to edge i+2 (edges from
    :func:`mel_center_frequencies`), evaluated at the bin frequencies. ``norm="slaney"``
    scales each band by ``2 / (edge[i+2] - edge[i])`` (constant energy per band);
    ``norm=None`` leaves peaks at 1. Same construction as ``librosa.filters.mel``.

    Args:
        sample_rate: The rate in Hz.
        n_fft: The FFT size.
        n_mels: The number of bands.
        f_min: The lowest frequency in Hz.
        f_max: The highest (default: Nyquist).
        scale: ``"slaney"`` or ``"htk"``.
        norm: ``"slaney"`` or None.
        dtype: The result's dtype.

    Returns:
        The filters ``[n_mels, n_fft // 2 + 1]``.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ConfigError(
            f"options 'f_min'/'f_max' need 0 <= f_min < f_max <= sample_rate / 2, "
            f"got f_min={f_min}, f_max={f_max}, sample_rate={sample_rate}"
        )
    edges = mel_center_frequencies(n_mels, f_min, f_max, scale)  # [n_mels + 2]
    bins = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    weights = torch.minimum(rising, falling).clamp_min(0.0)
    if norm == "slaney":
        weights = weights * (2.0 / (upper - lower))
    return weights.to(dtype)


class LogSpectrogram(nn.Module):
    """Waveform ``[B, T]`` or ``[B, C, T]`` -> ``[B, 1 or C, F, frames]``, log-scaled.

    Works in the dtype of the input (float32 or float64).

    Args:
        sample_rate: The waveforms' rate in Hz (16000).
        kind: ``"mel"`` (log-mel, F = ``n_mels``) or ``"stft"`` (log of the plain
            spectrogram, F = ``n_fft // 2 + 1``).
        n_fft: The FFT size (512).
        hop_length: The hop between frames (default ``n_fft // 4``).
        win_length: The window length (default ``n_fft``).
        n_mels: The mel bands (64).
        f_min: The lowest frequency in Hz (0).
        f_max: The highest (default: Nyquist).
        mel_scale: ``"slaney"`` or ``"htk"``.
        mel_norm: ``"slaney"`` (area-normalised bands) or None.
        power: 2 for the power spectrogram, 1 for the magnitude.
        eps: Added before the log (1e-6).
        center: Pad the waveform so that frames are centred (True).
        pad_mode: The padding's mode (``"constant"``).

    Raises:
        ConfigError: A bad option (an unknown ``kind``, ``n_fft < 2``...).
    """

    @validated
    def __init__(
        self,
        sample_rate: SampleRate = 16000,
        kind: Literal["mel", "stft"] = "mel",
        n_fft: Annotated[int, Field(ge=2, le=MAX_FFT)] = 512,
        hop_length: Annotated[int, Field(ge=1, le=MAX_FFT)] | None = None,
        win_length: Annotated[int, Field(ge=1, le=MAX_FFT)] | None = None,
        n_mels: Annotated[int, Field(ge=1, le=1024)] = 64,
        f_min: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        f_max: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None,
        mel_scale: MelScale = "slaney",
        mel_norm: Literal["slaney"] | None = "slaney",
        power: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2.0,
        eps: Annotated[float, Field(gt=0, le=1)] = 1e-6,
        center: bool = True,
        pad_mode: str = "constant",
    ) -> None:
        super().__init__()
        if win_length is not None and win_length > n_fft:
            raise ConfigError(
                f"option 'win_length' ({win_length}) must be <= n_fft ({n_fft}): the window "
                "lies inside one FFT frame"
            )
        self.sample_rate = int(sample_rate)
        self.kind = kind
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length or n_fft // 4)
        self.win_length = int(win_length or n_fft)
        self.power = float(power)
        self.eps = float(eps)
        self.center = bool(center)
        self.pad_mode = pad_mode
        if kind == "mel":
            # float64, cast to the input's dtype in forward: exact for float64 input
            fb = mel_filterbank(
                sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, mel_norm, torch.float64
            )
            self.register_buffer("filterbank", fb, persistent=False)
            self.n_bins = int(n_mels)
        else:
            self.filterbank = None
            self.n_bins = self.n_fft // 2 + 1
        mel = f",n_mels={n_mels},f_min={f_min},f_max={f_max},scale={mel_scale},norm={mel_norm}"
        self.identity = (
            f"logspec(kind={kind},sr={self.sample_rate},n_fft={self.n_fft},"
            f"hop={self.hop_length},win={self.win_length},power={self.power},eps={self.eps},"
            f"center={self.center},pad={pad_mode}{mel if kind == 'mel' else ''})"
        )

    @property
    def floor(self) -> float:
        """The output everywhere for an all-zero (silent) waveform: ``log(eps)``."""
        return math.log(self.eps)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """The log spectrogram of a batch of waveforms.

        Args:
            wave: ``[B, T]`` or ``[B, C, T]``, floating point.

        Returns:
            ``[B, 1 or C, F, frames]``.

        Raises:
            ConfigError: Another shape, or an integer waveform.
        """
        if wave.dim() not in (2, 3):
            raise ConfigError(
                f"LogSpectrogram: expected a waveform [B, T] or [B, C, T], got shape "
                f"{tuple(wave.shape)}"
            )
        if not wave.is_floating_point():
            wave = wave.float()
        lead = wave.shape[:-1]
        flat = wave.reshape(-1, wave.shape[-1])
        spec = torch.stft(
            flat,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=torch.hann_window(self.win_length, dtype=flat.dtype, device=flat.device),
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )  # [N, n_fft // 2 + 1, frames]
        x = spec.abs() ** self.power
        if self.filterbank is not None:
            x = torch.matmul(self.filterbank.to(x), x)
        x = torch.log(x + self.eps)
        x = x.reshape(*lead, *x.shape[-2:])
        return x.unsqueeze(1) if wave.dim() == 2 else x
