"""The torch audio front end against numpy, librosa's values and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from balgrad.backbones._audio import (
    LogSpectrogram,
    hz_to_mel,
    loop_to_length,
    mel_center_frequencies,
    mel_filterbank,
    mel_to_hz,
)
from balgrad.errors import ConfigError


def np_hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f = np.asarray(f, dtype=np.float64)
    return np.where(
        f < 1000.0,
        3.0 * f / 200.0,
        15.0 + 27.0 * np.log(np.maximum(f, 1e-9) / 1000.0) / np.log(6.4),
    )


def np_mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * 6.4 ** ((m - 15.0) / 27.0))


def np_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    """Textbook triangles, one bin at a time."""
    edges = np_mel_to_hz(
        np.linspace(
            np_hz_to_mel(np.array(fmin), htk), np_hz_to_mel(np.array(fmax), htk), n_mels + 2
        ),
        htk,
    )
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    out = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        for k, f in enumerate(freqs):
            if lo < f <= c:
                out[i, k] = (f - lo) / (c - lo)
            elif c < f < hi:
                out[i, k] = (hi - f) / (hi - c)
        if norm:
            out[i] *= 2.0 / (hi - lo)
    return out


def test_mel_scales_hit_their_anchor_points_and_invert():
    # Slaney: 1 kHz is mel 15 (linear part 200/3 Hz per mel); HTK: 700 Hz is 2595 log10 2
    assert float(hz_to_mel(torch.tensor(1000.0))) == pytest.approx(15.0)
    assert float(hz_to_mel(torch.tensor(500.0))) == pytest.approx(7.5)
    assert float(hz_to_mel(torch.tensor(6400.0))) == pytest.approx(15.0 + 27.0)
    assert float(hz_to_mel(torch.tensor(700.0), "htk")) == pytest.approx(2595 * math.log10(2))
    f = torch.tensor([0.0, 55.0, 999.0, 1000.0, 4321.0, 11025.0], dtype=torch.float64)
    for scale in ("slaney", "htk"):
        assert torch.allclose(mel_to_hz(hz_to_mel(f, scale), scale), f, atol=1e-9)


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax,htk,norm",
    [
        (16000, 512, 40, 0.0, 8000.0, False, True),
        (22050, 256, 24, 20.0, 8000.0, True, False),
        (8000, 128, 16, 0.0, 4000.0, True, True),
    ],
)
def test_filterbank_matches_the_numpy_formula(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    ours = mel_filterbank(
        sr,
        n_fft,
        n_mels,
        fmin,
        fmax,
        "htk" if htk else "slaney",
        "slaney" if norm else None,
        dtype=torch.float64,
    )
    ref = np_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12 * ref.max())


# librosa 0.11.0, librosa.filters.mel(sr=16000, n_fft=64, n_mels=6, ...), rounded to 1e-10:
# (row, first nonzero column, values)
LIBROSA_SLANEY = [
    (0, 1, [0.0013463722, 0.0019485868, 0.0006022146]),
    (2, 4, [0.0004516249, 0.0012687304, 0.0012907157, 0.0007609802, 0.0002312448]),
]
LIBROSA_HTK_NONORM = [
    (1, 2, [0.4523512307, 0.9809080049, 0.5797343176, 0.1785606303]),
    (
        4,
        10,
        [
            0.1917701845,
            0.3870424951,
            0.5823148057,
            0.7775871163,
            0.9728594269,
            0.8826984331,
            0.7464615253,
            0.6102246176,
            0.4739877098,
            0.337750802,
            0.2015138943,
            0.0652769865,
        ],
    ),
]


@pytest.mark.parametrize(
    "scale,norm,rows", [("slaney", "slaney", LIBROSA_SLANEY), ("htk", None, LIBROSA_HTK_NONORM)]
)
def test_filterbank_matches_librosa_values(scale, norm, rows):
    fb = mel_filterbank(16000, 64, 6, scale=scale, norm=norm, dtype=torch.float64)
    for row, start, values in rows:
        expected = np.zeros(33)
        expected[start : start + len(values)] = values
        np.testing.assert_allclose(fb[row].numpy(), expected, atol=1e-10)


def test_stft_kind_matches_a_numpy_framed_rfft():
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(1000)
    n_fft, hop = 64, 20
    front = LogSpectrogram(8000, kind="stft", n_fft=n_fft, hop_length=hop, power=1.0, eps=1e-7)
    ours = front(torch.from_numpy(wave)[None])[0, 0].numpy()
    padded = np.pad(wave, n_fft // 2)  # center=True, zero padding
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = [padded[s : s + n_fft] * window for s in range(0, len(padded) - n_fft + 1, hop)]
    ref = np.log(np.abs(np.fft.rfft(np.array(frames), axis=1)).T + 1e-7)
    assert ours.shape == ref.shape == (n_fft // 2 + 1, 1 + len(wave) // hop)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


@pytest.mark.parametrize("freq", [300.0, 1250.0, 3000.0])
def test_a_pure_tone_peaks_in_the_mel_band_centred_nearest_it(freq):
    sr, n_mels = 8000, 24
    t = torch.arange(sr // 2, dtype=torch.float64) / sr
    front = LogSpectrogram(sr, n_fft=512, hop_length=128, n_mels=n_mels)
    spec = front(torch.sin(2 * math.pi * freq * t)[None])[0, 0]  # [n_mels, frames]
    centres = mel_center_frequencies(n_mels, 0.0, sr / 2)[1:-1]
    expected = int(torch.argmin((centres - freq).abs()))
    assert int(spec[:, 4:-4].mean(1).argmax()) == expected


def test_silence_gives_the_finite_floor_and_shapes_follow_the_input():
    front = LogSpectrogram(16000, n_fft=128, hop_length=32, n_mels=20, eps=1e-6)
    out = front(torch.zeros(2, 3, 640))
    assert out.shape == (2, 3, 20, 1 + 640 // 32)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.full_like(out, math.log(1e-6)))
    assert front.floor == pytest.approx(math.log(1e-6))
    assert front(torch.zeros(4, 640)).shape == (4, 1, 20, 21)
    stft = LogSpectrogram(16000, kind="stft", n_fft=128, hop_length=32)
    assert stft(torch.zeros(1, 640)).shape == (1, 1, 65, 21)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_front_end_keeps_the_input_dtype_and_is_differentiable(dtype):
    front = LogSpectrogram(8000, n_fft=64, hop_length=16, n_mels=8)
    wave = torch.randn(2, 256, dtype=dtype, requires_grad=True)
    out = front(wave)
    assert out.dtype == dtype
    out.sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all()


def test_bad_options_and_shapes_name_the_option():
    with pytest.raises(ConfigError, match=r"'scale' expects 'slaney' \| 'htk'"):
        mel_filterbank(16000, 512, scale="mel")
    with pytest.raises(ConfigError, match="f_max"):
        mel_filterbank(16000, 512, f_max=9000.0)
    with pytest.raises(ConfigError, match="kind"):
        LogSpectrogram(kind="mfcc")
    with pytest.raises(ConfigError, match="eps"):
        LogSpectrogram(eps=0.0)
    with pytest.raises(ConfigError, match=r"\[B, T\]"):
        LogSpectrogram()(torch.zeros(100))


def test_loop_to_length_tiles_crops_and_clips_like_the_official_loader():
    wave = np.array([0.5, -2.0, 0.25, 1.5, 0.0], dtype=np.float32)
    ours = loop_to_length(torch.from_numpy(wave), 12)
    np.testing.assert_array_equal(ours.numpy(), np.clip(np.tile(wave, 3)[:12], -1.0, 1.0))
    assert loop_to_length(torch.from_numpy(wave), 3, clip=False).tolist() == [0.5, -2.0, 0.25]
    batch = loop_to_length(torch.ones(2, 3, 4), 10)
    assert batch.shape == (2, 3, 10)
    assert torch.equal(loop_to_length(torch.zeros(2, 0), 6), torch.zeros(2, 6))
    with pytest.raises(ConfigError, match="num_samples"):
        loop_to_length(torch.ones(4), 0)
