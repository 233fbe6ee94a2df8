"""Modality kinds (SPEC section 6): each kind's blank input and noise, and the conditions
of any named modality (missing_<m>, noisy_<m>, only_<m>)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._impairments import Condition
from balgrad.data._kinds import KINDS, feature_std, noise_salt, register_kind
from balgrad.errors import ConfigError


def test_audio_noise_has_the_requested_snr_and_is_seeded_per_sample():
    t = torch.arange(8000) / 8000
    wave = 0.3 * torch.sin(2 * math.pi * 440 * t)
    kind = KINDS["audio"]
    for snr in (0.0, 10.0, 20.0):
        noisy = kind.noise(wave, snr, 0, 5, noise_salt("audio"))
        noise = noisy - wave
        measured = 10 * math.log10(float(wave.pow(2).mean() / noise.pow(2).mean()))
        assert measured == pytest.approx(snr, abs=0.2)
    a = kind.noise(wave, 10.0, 0, 5, noise_salt("audio"))
    assert torch.equal(a, kind.noise(wave, 10.0, 0, 5, noise_salt("audio")))
    assert not torch.equal(a, kind.noise(wave, 10.0, 0, 6, noise_salt("audio")))
    assert not torch.equal(a, kind.noise(wave, 10.0, 0, 5, noise_salt("speech")))
    silent = torch.zeros(100)
    assert torch.equal(kind.noise(silent, 0.0, 0, 1, 3), silent)  # no signal sets no level


def test_feature_noise_is_relative_to_each_features_std():
    std = torch.tensor([1.0, 10.0, 0.1])
    x = torch.zeros(4000, 3)
    noisy = KINDS["features"].noise(x, 0.5, 0, 0, 7, std=std)
    assert noisy.std(0).numpy() == pytest.approx((0.5 * std).numpy(), rel=0.05)
    mapped = KINDS["features"].noise({"features": x, "lengths": 9}, 0.5, 0, 0, 7, std=std)
    assert torch.equal(mapped["features"], noisy) and mapped["lengths"] == 9


def test_blanks_per_kind():
    assert KINDS["text"].blank("a caption") == ""
    img = torch.rand(3, 4, 4)
    assert torch.equal(KINDS["image"].blank(img), torch.zeros_like(img))
    seq = {"features": torch.rand(5, 2), "lengths": 3}
    blank = KINDS["features"].blank(seq)
    assert torch.equal(blank["features"], torch.zeros(5, 2)) and blank["lengths"] == 3


@pytest.mark.parametrize(
    ("kind", "level", "message"),
    [("text", 1.5, "p"), ("image", -0.1, "σ"), ("audio", math.inf, "finite"), ("video", -1, "σ")],
)
def test_each_kind_checks_its_noise_level(kind, level, message):
    with pytest.raises(ConfigError, match=message):
        KINDS[kind].check_noise(level)


def test_image_and_text_keep_their_old_noise_streams():
    assert noise_salt("image") == 1 and noise_salt("text") == 2
    salts = {noise_salt(m) for m in ("audio", "visual", "video", "depth", "flow")}
    assert len(salts) == 5 and not salts & {1, 2}


class Seq(MultimodalDataset):
    def __init__(self):
        self.info = DatasetInfo(
            "seq", "single_label", ["a", "b"], modalities={"x": "features", "y": "features"}
        )
        self.split = "test"
        g = torch.Generator().manual_seed(0)
        self.data = torch.randn(6, 4, 3, generator=g) * torch.tensor([1.0, 5.0, 0.2])

    def __len__(self):
        return 6

    def get(self, i):
        lengths = 2 + i % 3
        return Example(
            inputs={"x": {"features": self.data[i], "lengths": lengths}, "y": self.data[i]},
            label=torch.tensor(i % 2),
            index=i,
        )


def test_feature_std_over_the_real_steps_against_numpy():
    ds = Seq()
    real = np.concatenate([ds.data[i, : 2 + i % 3].numpy() for i in range(6)])
    assert feature_std(ds, "x").numpy() == pytest.approx(real.std(0), rel=1e-6)
    every = ds.data.reshape(-1, 3).numpy()
    assert feature_std(ds, "y").numpy() == pytest.approx(every.std(0), rel=1e-6)


def test_conditions_of_any_modality():
    c = Condition.parse("missing_audio@0.25")
    assert (c.action, c.modality, c.ratio, c.name) == (
        "missing",
        "audio",
        0.25,
        "missing_audio@0.25",
    )
    n = Condition.parse("noisy_visual@3")
    assert n.noisy_for("visual") and not n.hits("audio") and n.name == "noisy_visual@3"
    only = Condition.parse("only_text")
    assert only.name == "only_text" and only.mask(9).all()
    assert only.missing_for("audio") and only.missing_for("visual") and not only.hits("text")
    assert only.part("audio") == "only_text#seed0" and only.part("text") == "full"
    with pytest.raises(ConfigError, match="takes no"):
        Condition.parse("only_text@0.5")
    with pytest.raises(ConfigError, match="unknown"):
        Condition("missing-audio")
    # new modalities draw their hit samples independently of image/text and of each other
    masks = [Condition(f"missing_{m}", ratio=0.5).mask(400) for m in ("image", "audio", "visual")]
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])


def test_the_image_text_conditions_hit_the_samples_they_always_hit():
    # the salts of the image-text protocol are the indices of its five conditions
    for salt, kind in enumerate(("missing_image", "missing_text"), start=1):
        rng = np.random.default_rng([4, salt])
        expected = np.zeros(50, dtype=bool)
        expected[rng.permutation(50)[:20]] = True
        assert np.array_equal(Condition(kind, ratio=0.4, seed=4).mask(50), expected)


def test_a_kind_can_be_registered():
    from balgrad.data._kinds import ModalityKind

    depth = ModalityKind("depth_test", torch.zeros_like, None, 0.0, lambda level: None, "σ", "")
    register_kind(depth)
    try:
        assert KINDS["depth_test"] is depth
        with pytest.raises(ConfigError, match="already"):
            register_kind(depth)
    finally:
        KINDS.pop("depth_test")
