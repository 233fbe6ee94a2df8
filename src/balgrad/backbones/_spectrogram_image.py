"""A pretrained image encoder over log-mel spectrograms: the audio tower of the built-in
``keypad`` job (``efficientnet-lite0-mel``).

Treating a spectrogram as an image and reusing an ImageNet-pretrained network is the
standard practice of AST (Gong et al., 2021) and PSLA (Gong et al., 2021): no pip
package ships pretrained audio weights that load offline (see README), but one ships
EfficientNet-Lite0's. Per clip:

1. waveform ``[T]`` (or ``[C, T]``, down-mixed to mono) -> power mel spectrogram
   (:class:`~balgrad.backbones._audio.LogSpectrogram`, Slaney mel scale and norm) in dB,
   ``10 log10(power + 1e-10)``;
2. scaled to [0, 1] by a **fixed** range: ``(dB - db_min) / (db_max - db_min)``, clipped
   (no per-clip or per-batch statistics, so a clip's image does not depend on which other
   clips it is batched or cached with, and a quiet clip stays dark);
3. resized to ``image_size`` x ``image_size`` (low frequencies at the bottom row, as a
   spectrogram is drawn), repeated to 3 channels, normalised with mean = std = 0.5 as
   EfficientNet-Lite0 was trained;
4. EfficientNet-Lite0 (frozen unless ``finetune``), global average pooling: 1280-d.

Silence (all zeros) is at the dB floor (-100 dB) in every bin, below ``db_min``: an
all-black image, exactly the blank image the image tower gets for a missing image.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from balgrad.backbones._audio import MAX_FFT, LogSpectrogram, SampleRate
from balgrad.backbones._base import freeze
from balgrad.backbones._frozen import KeepFrozen
from balgrad.backbones._pixels import resize
from balgrad.backbones._pretrained_pip import EfficientNetLite0Encoder
from balgrad.errors import BackboneError, ConfigError
from balgrad.registry import validated

NAME = "efficientnet-lite0-mel"
#: power added before the log: silence sits at 10 log10(1e-10) = -100 dB everywhere
POWER_EPS = 1e-10


class SpectrogramImageEncoder(KeepFrozen, nn.Module):
    """EfficientNet-Lite0 (ImageNet, from the pip packages) over log-mel spectrogram images.

    ``preprocess(wave)`` maps one waveform ``[T]`` / ``[C, T]`` to the network's input
    ``[3, image_size, image_size]`` (the pipeline applies it per item and caches the
    features of a frozen encoder); ``forward`` takes a batch of those, or a batch of
    waveforms ``[B, T]`` / ``[B, C, T]``. ``blank_input(like)`` is silence.

    Args:
        finetune: Keep the network trainable (False: frozen).
        image_size: The spectrogram image's side (64).
        sample_rate: The waveforms' rate in Hz (8000).
        n_fft: The FFT size (512).
        hop_length: The hop between frames (64).
        n_mels: The mel bands (64).
        f_min: The lowest frequency in Hz (0).
        f_max: The highest (None: Nyquist).
        db_min, db_max: The fixed dB range mapped to [0, 1] (-40 and 25).
        fused: The frozen network in its inference form, as ``efficientnet-lite0``'s option.
    """

    mean = 0.5
    std = 0.5
    identity_covers_weights = True  # the weights package's version pins them (see below)

    @validated
    def __init__(
        self,
        finetune: bool = False,
        image_size: Annotated[int, Field(ge=32, le=1024)] = 64,
        sample_rate: SampleRate = 8000,
        n_fft: Annotated[int, Field(ge=2, le=MAX_FFT)] = 512,
        hop_length: Annotated[int, Field(ge=1, le=MAX_FFT)] = 64,
        n_mels: Annotated[int, Field(ge=1, le=1024)] = 64,
        f_min: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        f_max: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None,
        db_min: Annotated[float, Field(allow_inf_nan=False)] = -40.0,
        db_max: Annotated[float, Field(allow_inf_nan=False)] = 25.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if finetune and fused:
            raise ConfigError(
                f"backbone {NAME!r}: options 'fused' and 'finetune' exclude each other (a "
                "fine-tuned network's BatchNorm cannot be folded)"
            )
        if not db_min < db_max:
            raise ConfigError(
                f"backbone {NAME!r}: options 'db_min' < 'db_max' (finite dB), got "
                f"db_min={db_min!r}, db_max={db_max!r}"
            )
        self.spectrogram = LogSpectrogram(
            sample_rate=sample_rate,
            kind="mel",
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            power=2.0,
            eps=POWER_EPS,
        )
        # the image network, its weights and their identity: the image tower's own loader
        image = EfficientNetLite0Encoder(finetune=not fused, image_size=image_size, fused=fused)
        self.net = image.net
        self.fused = bool(fused)
        self.image_size = int(image_size)
        self.db_min, self.db_max = float(db_min), float(db_max)
        self.out_dim = 1280
        self.identity = (
            f"{NAME}:{image.identity}|{self.spectrogram.identity}"
            f"|db=[{self.db_min:g},{self.db_max:g}]|flip=low-at-bottom"
        )
        if finetune:
            self.trainable = True
        else:
            freeze(self)

    # -- waveform -> image ------------------------------------------------------------------
    def _images(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms ``[B, T]`` or ``[B, C, T]`` -> normalised images ``[B, 3, S, S]``."""
        if not wave.is_floating_point():
            wave = wave.float()
        if wave.dim() == 3:
            wave = wave.mean(1)  # down-mix the waveform, not its spectrograms
        if wave.dim() != 2:
            raise BackboneError(
                f"backbone {NAME!r}: expected waveforms [B, T] or [B, C, T], got shape "
                f"{tuple(wave.shape)}"
            )
        log_power = self.spectrogram(wave.to(torch.float32))  # [B, 1, n_mels, frames], ln
        db = log_power * (10.0 / math.log(10.0))
        x = ((db - self.db_min) / (self.db_max - self.db_min)).clamp(0.0, 1.0)
        x = x.flip(-2)  # row 0 = the highest band: low frequencies at the bottom
        size = (self.image_size, self.image_size)
        x = torch.stack([resize(img, size) for img in x]).clamp(0.0, 1.0)
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std

    def preprocess(self, wave: torch.Tensor) -> torch.Tensor:
        """One waveform ``[T]`` or ``[C, T]`` -> one model input ``[3, S, S]``.

        Args:
            wave: The waveform.

        Returns:
            The image.

        Raises:
            BackboneError: Another shape.
        """
        wave = torch.as_tensor(wave)
        if wave.dim() not in (1, 2):
            raise BackboneError(
                f"backbone {NAME!r}: one waveform must be [T] or [C, T], got shape "
                f"{tuple(wave.shape)}"
            )
        return self._images(wave.unsqueeze(0))[0]

    def blank_input(self, like: torch.Tensor) -> torch.Tensor:
        """Silence shaped like one item of ``like``: a zero waveform, or (for a batch of
        preprocessed images) the image of silence, black (-1 after normalisation).

        Args:
            like: A batch of waveforms or of preprocessed images.

        Returns:
            One blank item.
        """
        if like.dim() == 4:
            return torch.full_like(like[:1], (0.0 - self.mean) / self.std)
        return torch.zeros_like(like[:1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of spectrogram images, or of raw waveforms.

        Args:
            x: ``[B, 3, S, S]`` (preprocessed) or ``[B, T]`` / ``[B, C, T]`` (waveforms).

        Returns:
            ``[B, 1280]``.
        """
        if x.dim() in (2, 3):
            x = self._images(x)  # raw waveforms
        if self.fused:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net.extract_features(x).mean(dim=(2, 3))
