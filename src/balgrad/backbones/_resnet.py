"""ResNet-18 audio and visual streams, trained from scratch, as in the OGM-GE/AGM official code.

Followed: GeWu-Lab/OGM-GE_CVPR2022 ``models/backbone.py`` (a torchvision-style ResNet-18
without its pooling and fc, first conv taking 1 channel for audio and 3 for visual; convs
Kaiming-normal with ``fan_out``, batch-norm weights drawn from N(1, 0.02), biases 0) and
``models/basic_model.py`` (the audio map average-pooled over frequency and time; the visual
clip ``[B, C, T, H, W]`` run frame by frame, the maps put back as ``[B, C', T, h, w]`` and
average-pooled over time and space together). ``dataset/CramedDataset.py`` there feeds the
audio stream ``log(|STFT| + 1e-7)`` as a one-channel image and the visual stream ImageNet-
normalised frames.

The ResNet is written here (torchvision is not a dependency). ``width`` is the channel
count of the first stage (64 in ResNet-18; the stages use 1x, 2x, 4x, 8x), so tests can
build small copies; ``out_dim`` is ``8 * width`` (512).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from balgrad.backbones._audio import LogSpectrogram
from balgrad.backbones._frozen import KeepFrozen
from balgrad.errors import ConfigError
from balgrad.registry import validated


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1-conv) shortcut.

    Args:
        cin: Input channels.
        cout: Output channels.
        stride: The first conv's stride (a 1x1-conv shortcut when it is not 1 or the
            channels change).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(block(x) + shortcut(x))."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet18Trunk(nn.Module):
    """ResNet-18 up to its last stage: ``[N, in_channels, H, W] -> [N, 8 w, H/32, W/32]``.

    Args:
        in_channels: Input channels.
        width: w, the first stage's width.
    """

    @validated
    def __init__(
        self, in_channels: Annotated[int, Field(ge=1)] = 3, width: Annotated[int, Field(ge=1)] = 64
    ) -> None:
        super().__init__()
        w = int(width)
        self.conv1 = nn.Conv2d(in_channels, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, cin = [], w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = 8 * w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, mean=1.0, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map of ``x`` ``[N, in_channels, H, W]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18_parameter_count(in_channels: int = 3, width: int = 64) -> int:
    """Parameters of :class:`ResNet18Trunk`, counted from the architecture by hand.

    conv1 49 c w + bn 2w; stage 1: 4 convs 9 w^2 + 4 bns 2w; stages 2-4 (width k w, k = 2,
    4, 8): 3 convs 9 (kw)^2, one 9 (kw)^2 (k/2), a 1x1 shortcut (kw)^2 / 2 and 5 bns 2kw.
    Sum: 2724 w^2 + 150 w + 49 c w (11,176,512 for c = 3, w = 64: torchvision's resnet18
    without its 513,000-parameter fc).

    Args:
        in_channels: Input channels.
        width: w.

    Returns:
        The count.
    """
    w, c = int(width), int(in_channels)
    return 2724 * w * w + 150 * w + 49 * c * w


class _Stream(KeepFrozen, nn.Module):
    trainable = True

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.trunk = ResNet18Trunk(channels, width)
        self.out_dim = self.trunk.out_channels


class AudioResNet18(_Stream):
    """The OGM-GE/AGM audio stream: a spectrogram through ResNet-18, mean over freq and time.

    Input: a log spectrogram ``[B, F, N]`` or ``[B, C, F, N]`` (what the official code
    feeds), or, with ``frontend``, a waveform ``[B, T]`` or ``[B, C, T]``; with a front end
    a 4-D input is still read as a spectrogram (it cannot be a waveform).

    ``blank_input(like)`` is silence: zeros of the waveform when the front end is inside
    (so the blank passes through it, as a real silent clip would), else the spectrogram
    filled with ``silence``. A zero spectrogram would not be silence: log 0 is -inf, and a
    log-spectrogram of 0 means unit magnitude in every bin.

    Args:
        channels: Input channels (1: a multi-channel waveform or spectrogram is averaged
            down to mono).
        width: The first stage's width (64).
        frontend: A :class:`~balgrad.backbones._audio.LogSpectrogram`, or a dict of its
            options, to take waveforms; None for spectrograms.
        silence: The spectrogram value of silence when there is no front end (``log(1e-7)``,
            the official floor).
    """

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        frontend: LogSpectrogram | dict | None = None,
        silence: float = math.log(1e-7),
    ) -> None:
        if isinstance(frontend, dict):
            frontend = LogSpectrogram(**frontend)
        if frontend is not None and not isinstance(frontend, LogSpectrogram):
            raise ConfigError(
                f"AudioResNet18 option 'frontend' must be a LogSpectrogram, a dict of its "
                f"options or None, got {type(frontend).__name__}"
            )
        super().__init__(channels, width)
        self.channels = int(channels)
        self.frontend = frontend
        self.silence = float(silence)
        front = frontend.identity if frontend is not None else f"none,silence={self.silence:g}"
        self.identity = f"audio-resnet18(channels={self.channels},width={width},frontend={front})"

    def _spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        # a [B, C, F, N] input is a spectrogram already (a dataset that ships precomputed
        # ones, as Kinetics-Sounds' official preparation does): the front end is skipped
        if self.frontend is not None and x.dim() != 4:
            if x.dim() == 3 and self.channels == 1:
                x = x.mean(1)  # down-mix the waveform, not its log-spectrograms
            x = self.frontend(x)  # [B, C, F, N]
        elif x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4:  # only reached without a front end, which checks its own input
            raise ConfigError(
                f"AudioResNet18: expected a spectrogram [B, F, N] or [B, C, F, N], got shape "
                f"{tuple(x.shape)}"
            )
        if x.shape[1] != self.channels:
            if self.channels != 1:
                raise ConfigError(
                    f"AudioResNet18: option 'channels' is {self.channels} but the input has "
                    f"{x.shape[1]} channels"
                )
            x = x.mean(1, keepdim=True)
        return x

    def blank_input(self, like: torch.Tensor) -> torch.Tensor:
        """A silent input shaped as one sample of ``like``.

        Args:
            like: A batch of inputs.

        Returns:
            ``[1, ...]``.
        """
        if self.frontend is not None:
            return torch.zeros_like(like[:1])
        return torch.full_like(like[:1], self.silence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of spectrograms (or waveforms, with a front end).

        Args:
            x: The batch.

        Returns:
            ``[B, 8 width]``.
        """
        return self.trunk(self._spectrogram(x)).mean(dim=(2, 3))


class VisualResNet18(_Stream):
    """The OGM-GE/AGM visual stream: every frame through ResNet-18, mean over time and space.

    Input: a clip of frames, normalised as the frames were in training. The pooled feature
    is the mean over frames, so it does not depend on the frames' order.

    ``blank_input(like)`` is a clip of zero frames: what the official AGM code feeds for a
    missing input (on ImageNet-normalised frames, zero is the mean colour).

    Args:
        channels: Channels per frame (3).
        width: The first stage's width (64).
        layout: ``"bcthw"`` (``[B, C, T, H, W]``, the official layout) or ``"btchw"``.
    """

    @validated
    def __init__(
        self, channels: int = 3, width: int = 64, layout: Literal["bcthw", "btchw"] = "bcthw"
    ) -> None:
        super().__init__(channels, width)
        self.channels = int(channels)
        self.layout = layout
        self.identity = f"visual-resnet18(channels={self.channels},width={width},layout={layout})"

    def blank_input(self, like: torch.Tensor) -> torch.Tensor:
        """A clip of zero frames shaped as one sample of ``like``.

        Args:
            like: A batch of clips.

        Returns:
            ``[1, ...]``.
        """
        return torch.zeros_like(like[:1])

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """Embed a batch of clips.

        Args:
            clip: ``[B, C, T, H, W]`` or ``[B, T, C, H, W]`` (``layout``).

        Returns:
            ``[B, 8 width]``.

        Raises:
            ConfigError: The clip is not 5-D or its channels do not match.
        """
        if clip.dim() != 5:
            raise ConfigError(
                f"VisualResNet18: expected a clip [B, C, T, H, W] or [B, T, C, H, W] "
                f"(option 'layout'={self.layout!r}), got shape {tuple(clip.shape)}"
            )
        if self.layout == "bcthw":
            clip = clip.transpose(1, 2)  # [B, T, C, H, W]
        b, t, c = clip.shape[:3]
        if c != self.channels:
            raise ConfigError(
                f"VisualResNet18: option 'channels' is {self.channels} but the frames have {c} "
                f"(layout {self.layout!r}, shape {tuple(clip.shape)})"
            )
        maps = self.trunk(clip.reshape(b * t, *clip.shape[2:]))  # [B T, C', h, w]
        # every frame's map has the same size, so the mean over (T, h, w) of the official
        # 3-D average pool equals the mean over frames of each frame's spatial mean
        return maps.reshape(b, t, *maps.shape[1:]).mean(dim=(1, 3, 4))
