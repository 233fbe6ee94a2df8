"""The ResNet-18 audio and visual streams: size, shapes, pooling as the official code, blanks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from balgrad.backbones._audio import LogSpectrogram
from balgrad.backbones._resnet import (
    AudioResNet18,
    ResNet18Trunk,
    VisualResNet18,
    resnet18_parameter_count,
)
from balgrad.errors import ConfigError


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_width_streams_have_the_known_resnet18_parameter_count():
    visual, audio = VisualResNet18(), AudioResNet18()
    # torchvision's resnet18 has 11,689,512 parameters, 513,000 of them in its 512->1000 fc
    assert n_params(visual) == 11_689_512 - 513_000 == 11_176_512
    # the audio stream's first conv sees 1 channel: 64 * 7 * 7 * 2 fewer weights
    assert n_params(audio) == 11_176_512 - 2 * 64 * 49
    assert audio.out_dim == visual.out_dim == 512


@pytest.mark.parametrize("channels,width", [(1, 2), (3, 4), (2, 5)])
def test_parameter_count_follows_the_architecture_formula(channels, width):
    assert n_params(ResNet18Trunk(channels, width)) == resnet18_parameter_count(channels, width)


def test_audio_stream_takes_a_spectrogram_with_or_without_its_channel_axis():
    torch.manual_seed(0)
    enc = AudioResNet18(width=4).eval()
    spec = torch.randn(2, 32, 24)
    out = enc(spec)
    assert out.shape == (2, 32)
    assert torch.equal(out, enc(spec.unsqueeze(1)))
    # two channels are averaged down to the one the stream takes
    stereo = torch.stack([spec, spec + 1.0], dim=1)
    assert torch.allclose(enc(stereo), enc(spec + 0.5), atol=1e-6)


def test_audio_stream_pools_the_trunk_map_over_frequency_and_time():
    torch.manual_seed(0)
    enc = AudioResNet18(width=2).eval()
    spec = torch.randn(3, 1, 32, 32)
    official = torch.flatten(F.adaptive_avg_pool2d(enc.trunk(spec), 1), 1)
    assert torch.allclose(enc(spec), official, atol=1e-6)


def test_audio_stream_with_a_front_end_takes_waveforms():
    torch.manual_seed(0)
    enc = AudioResNet18(width=2, frontend={"sample_rate": 8000, "n_fft": 128, "n_mels": 32})
    wave = torch.randn(2, 1000)
    out = enc(wave)
    assert out.shape == (2, 16)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    enc.eval()
    stereo = torch.stack([wave, -wave + 0.2], dim=1)  # down-mixed to 0.1 everywhere
    assert torch.allclose(enc(stereo), enc(torch.full_like(wave, 0.1)), atol=1e-6)


def test_a_four_dimensional_input_is_a_spectrogram_even_with_a_front_end():
    # Kinetics-Sounds ships precomputed spectrograms [B, 1, F, N]: the front end is skipped
    torch.manual_seed(0)
    with_front = AudioResNet18(width=2, frontend={"sample_rate": 8000, "n_fft": 128})
    without = AudioResNet18(width=2)
    without.load_state_dict(with_front.state_dict(), strict=False)
    with_front.eval(), without.eval()
    spec = torch.randn(3, 1, 20, 12)
    assert torch.equal(with_front(spec), without(spec))


def test_visual_stream_shapes_gradients_and_official_pooling():
    torch.manual_seed(0)
    enc = VisualResNet18(width=2)
    clip = torch.randn(2, 3, 4, 16, 16)  # [B, C, T, H, W]
    out = enc(clip)
    assert out.shape == (2, 16)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    enc.eval()
    # models/basic_model.py: frames through the trunk, maps back to [B, C, T, h, w], 3-D pool
    b, c, t, h, w = clip.shape
    maps = enc.trunk(clip.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    v = maps.view(b, -1, *maps.shape[1:]).permute(0, 2, 1, 3, 4)
    official = torch.flatten(F.adaptive_avg_pool3d(v, 1), 1)
    assert torch.allclose(enc(clip), official, atol=1e-6)


def test_visual_feature_does_not_depend_on_the_frames_order():
    torch.manual_seed(0)
    enc = VisualResNet18(width=2).eval()
    clip = torch.randn(2, 3, 5, 16, 16)
    shuffled = clip[:, :, torch.tensor([3, 0, 4, 2, 1])]
    assert torch.allclose(enc(clip), enc(shuffled), atol=1e-6)
    # and it is the mean of the one-frame features
    single = torch.stack([enc(clip[:, :, i : i + 1]) for i in range(5)]).mean(0)
    assert torch.allclose(enc(clip), single, atol=1e-6)


def test_visual_layouts_give_the_same_feature():
    torch.manual_seed(0)
    first = VisualResNet18(width=2).eval()
    second = VisualResNet18(width=2, layout="btchw").eval()
    second.load_state_dict(first.state_dict())
    clip = torch.randn(2, 3, 3, 16, 16)
    assert torch.allclose(first(clip), second(clip.transpose(1, 2)), atol=1e-6)


def test_blank_inputs_are_silence_and_zero_frames():
    spec = torch.randn(4, 1, 40, 30)
    blank = AudioResNet18(width=2).blank_input(spec)
    assert blank.shape == (1, 1, 40, 30)
    assert torch.all(blank == math.log(1e-7))  # the official log(|STFT| + 1e-7) of silence

    front = LogSpectrogram(8000, n_fft=64, n_mels=16)
    enc = AudioResNet18(width=2, frontend=front)
    wave = torch.randn(3, 800)
    blank = enc.blank_input(wave)
    assert blank.shape == (1, 800) and torch.all(blank == 0)
    assert torch.allclose(front(blank), torch.full((1, 1, 16, 51), front.floor))

    clip = torch.randn(2, 3, 4, 16, 16)
    blank = VisualResNet18(width=2).blank_input(clip)
    assert blank.shape == (1, 3, 4, 16, 16) and torch.all(blank == 0)


def test_bad_options_and_inputs_name_the_option():
    with pytest.raises(ConfigError, match="layout"):
        VisualResNet18(layout="tchw")
    with pytest.raises(ConfigError, match="channels"):
        VisualResNet18(width=2)(torch.randn(1, 1, 2, 32, 32))
    with pytest.raises(ConfigError, match=r"\[B, C, T, H, W\]"):
        VisualResNet18(width=2)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="channels"):
        AudioResNet18(channels=2, width=2)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="frontend"):
        AudioResNet18(frontend="mel")
    with pytest.raises(ConfigError, match="width"):
        ResNet18Trunk(3, 0)
