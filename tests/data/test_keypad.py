"""The ``keypad`` built-in dataset: digits with the phone keypad's DTMF tones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from balgrad.data._cache_files import CacheWarning
from balgrad.data._catalog import DATASETS
from balgrad.data.readers import _keypad as keypad
from balgrad.data.readers._builtin import load_builtin
from balgrad.data.readers._digits import DigitsConfig, DigitsDataset
from balgrad.data.readers._keypad import KeypadConfig, KeypadDataset, dtmf_frequencies
from balgrad.errors import ConfigError

SMALL = {"n_train": 60, "n_test": 30}
# the nominal DTMF pairs, written out from the keypad (ITU-T Q.23), not from the module
KEYPAD_TABLE = {
    1: (697, 1209), 2: (697, 1336), 3: (697, 1477),
    4: (770, 1209), 5: (770, 1336), 6: (770, 1477),
    7: (852, 1209), 8: (852, 1336), 9: (852, 1477),
    0: (941, 1336),
}  # fmt: skip


def make(split="train", seed=0, **options) -> KeypadDataset:
    return KeypadDataset(split, seed=seed, config=KeypadConfig(**{**SMALL, **options}))


@pytest.fixture(autouse=True)
def _fresh_memory():
    keypad._KEYPAD_MEMORY.clear()
    yield
    keypad._KEYPAD_MEMORY.clear()


def test_examples_hold_three_modalities_of_three_kinds():
    ds = make()
    assert ds.info.modalities == {"image": "image", "audio": "audio", "text": "text"}
    assert ds.info.num_classes == 10 and len(ds) == 60
    ex = ds[7]
    assert list(ex.inputs) == ["image", "audio", "text"] and ex.index == 7
    image, audio = ex.inputs["image"], ex.inputs["audio"]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert audio.shape == (4000,) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all()
    assert isinstance(ex.inputs["text"], str) and ex.inputs["text"] == ds.texts[7]
    assert int(ex.label) == int(ds.labels[7]) and ex.label.dtype == torch.int64
    assert all(len(v) == 60 for v in ds.tones.values())


def test_image_and_caption_are_the_digits_generators():
    ds = make(seed=3, strength=0.6)
    digits = DigitsDataset("train", seed=3, config=DigitsConfig(**SMALL, strength=0.6))
    assert np.array_equal(ds.images, digits.images)
    assert ds.texts == digits.texts
    assert np.array_equal(ds.labels, digits.labels)
    assert torch.equal(ds[5].inputs["image"], digits[5].inputs["image"])


def test_generation_is_deterministic_per_seed_and_differs_across_seeds():
    a, b = make(seed=1), make(seed=1)
    keypad._KEYPAD_MEMORY.clear()
    c = make(seed=1)  # generated again, not the memory's copy
    other = make(seed=2)
    for i in (0, 11, 59):
        assert torch.equal(a[i].inputs["audio"], b[i].inputs["audio"])
        assert torch.equal(a[i].inputs["audio"], c[i].inputs["audio"])
    assert not np.array_equal(a.tones["low_hz"], other.tones["low_hz"])
    assert not torch.equal(a[0].inputs["audio"], other[0].inputs["audio"])
    assert a.fingerprint == c.fingerprint != other.fingerprint
    # reading a sample twice gives the same waveform (the noise is seeded per sample)
    assert torch.equal(a.waveform(4), a.waveform(4))
    # the test split has its own tones
    assert not np.array_equal(
        make("test", seed=1).tones["noise_seed"][:30], a.tones["noise_seed"][:30]
    )


def test_the_nominal_pairs_are_the_keypads():
    assert {d: dtmf_frequencies(d) for d in range(10)} == KEYPAD_TABLE
    with pytest.raises(ConfigError, match="digit"):
        dtmf_frequencies(10)


def _peak(wave: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """The frequency of the largest |FFT| bin in [lo, hi] Hz (zero-padded 8x)."""
    n = 8 * len(wave)
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave)), n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][np.argmax(spectrum[band])])


def test_each_digit_sounds_at_its_dtmf_frequencies():
    ds = make(n_train=100, detune=0.0, snr_db=30.0, min_tone=1.0)
    for digit in range(10):
        i = int(np.flatnonzero(ds.labels == digit)[0])
        wave = ds[i].inputs["audio"].numpy().astype(np.float64)
        low, high = KEYPAD_TABLE[digit]
        # the row tone is the peak of the low group, the column tone of the high group
        assert abs(_peak(wave, 8000, 600, 1050) - low) < 4, digit
        assert abs(_peak(wave, 8000, 1100, 1600) - high) < 4, digit


def test_detune_shifts_each_tone_by_its_relative_std():
    exact = make(n_train=400, detune=0.0)
    nominal = np.array([KEYPAD_TABLE[int(y)] for y in exact.labels], dtype=float)
    assert np.array_equal(exact.tones["low_hz"], nominal[:, 0])
    assert np.array_equal(exact.tones["high_hz"], nominal[:, 1])
    detuned = make(n_train=400, detune=0.03)
    rel = np.concatenate(
        [detuned.tones["low_hz"] / nominal[:, 0] - 1, detuned.tones["high_hz"] / nominal[:, 1] - 1]
    )
    assert abs(rel.std() - 0.03) < 0.004 and abs(rel.mean()) < 0.004
    assert np.abs(rel).max() <= 0.09 + 1e-12  # clipped at 3 std
    # and the sound follows the parameters: the spectral peak is the detuned frequency
    quiet = make(n_train=20, detune=0.05, snr_db=30.0, min_tone=1.0)
    wave = quiet[0].inputs["audio"].numpy().astype(np.float64)
    assert abs(_peak(wave, 8000, 550, 1100) - quiet.tones["low_hz"][0]) < 4


def test_snr_sets_the_noise_power_below_the_tone_pair():
    for snr in (10.0, -10.0):
        ds = make(n_train=40, snr_db=snr, min_tone=0.3)
        ratios = []
        for i in range(40):
            wave = ds[i].inputs["audio"].numpy().astype(np.float64)
            onset, length = int(ds.tones["onset"][i]), int(ds.tones["length"][i])
            outside = np.concatenate([wave[:onset], wave[onset + length :]])
            if len(outside) < 500:
                continue
            a = 0.35 * np.array([ds.tones["gain_low"][i], ds.tones["gain_high"][i]])
            ratios.append((a**2).sum() / 2 / outside.var())  # tone power / noise power
        assert len(ratios) > 10
        assert abs(10 * np.log10(np.mean(ratios)) - snr) < 0.6, snr


def test_duration_onset_and_gain_knobs():
    t = 4000
    ds = make(n_train=300, min_tone=0.6, gain_jitter=0.0)
    onset, length = ds.tones["onset"], ds.tones["length"]
    assert length.min() >= round(0.6 * t) - 1 and (onset + length).max() <= t
    assert onset.min() >= 0 and length.max() > 0.95 * t and onset.max() > 0.15 * t
    assert np.all(ds.tones["gain_low"] == 1.0) and np.all(ds.tones["gain_high"] == 1.0)
    jittered = make(n_train=300, gain_jitter=0.5)
    g = jittered.tones["gain_low"]
    assert g.min() >= 0.5 and g.max() <= 1.0 and g.std() > 0.1
    # the clip's length is sample_rate x duration
    long = make(n_train=10, sample_rate=16000, duration=0.25)
    assert long[0].inputs["audio"].shape == (4000,)


def test_bad_options_name_the_field():
    for options, field in (
        ({"snr_db": float("nan")}, "snr_db"),
        ({"detune": 0.5}, "detune"),
        ({"min_tone": 0.0}, "min_tone"),
        ({"gain_jitter": 1.5}, "gain_jitter"),
        ({"duration": 0.0}, "duration"),
        ({"sample_rate": 3000}, "sample_rate"),
        ({"strength": 2.0}, "strength"),  # a digits option, checked by DigitsConfig
    ):
        with pytest.raises(ConfigError, match=field):
            KeypadConfig(**options)


def test_cache_round_trips_and_a_damaged_file_is_regenerated_with_a_warning(tmp_path):
    first = make(cache_dir=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    key = first.config.content_key(0)
    assert f"keypad-{key}.npz" in files and any(f.startswith("digits-") for f in files)
    keypad._KEYPAD_MEMORY.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = make(cache_dir=str(tmp_path))  # read back: no warning
    for k, v in first.tones.items():
        assert np.array_equal(again.tones[k], v) and again.tones[k].dtype == v.dtype, k
    assert torch.equal(again[3].inputs["audio"], first[3].inputs["audio"])

    path = tmp_path / f"keypad-{key}.npz"
    path.write_bytes(b"not a zip file")
    keypad._KEYPAD_MEMORY.clear()
    with pytest.warns(CacheWarning, match="keypad cache .* is unusable"):
        repaired = make(cache_dir=str(tmp_path))
    assert torch.equal(repaired[3].inputs["audio"], first[3].inputs["audio"])
    keypad._KEYPAD_MEMORY.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        make(cache_dir=str(tmp_path))  # overwritten with a good file


def test_a_cache_file_of_other_options_is_a_miss(tmp_path):
    a = make(cache_dir=str(tmp_path))
    b_cfg = KeypadConfig(**SMALL, snr_db=5.0, cache_dir=str(tmp_path))
    # a file under b's name holding a's content
    src = tmp_path / f"keypad-{a.config.content_key(0)}.npz"
    (tmp_path / f"keypad-{b_cfg.content_key(0)}.npz").write_bytes(src.read_bytes())
    keypad._KEYPAD_MEMORY.clear()
    with pytest.warns(CacheWarning, match="generated for"):
        b = KeypadDataset("train", config=b_cfg)
    assert b.config.snr_db == 5.0 and a.fingerprint != b.fingerprint


def test_registered_as_a_builtin_with_its_modalities_and_audio_backbone():
    entry, _ = DATASETS.resolve("keypad")
    assert entry.metadata["kind"] == "builtin"
    assert entry.metadata["modalities"] == {"image": "image", "audio": "audio", "text": "text"}
    assert entry.metadata["modality_backbones"] == {"audio": "efficientnet-lite0-mel"}
    assert entry.metadata["cache_option"] == "cache_dir"
    audio_tower = entry.metadata["backbone_defaults"]["efficientnet-lite0-mel"]
    # the tower reads the dataset's sample rate, and its band holds every detuned DTMF tone
    assert audio_tower["sample_rate"] == KeypadConfig().sample_rate
    low, high = min(KEYPAD_TABLE.values())[0], max(f for _, f in KEYPAD_TABLE.values())
    assert audio_tower["f_min"] < low * (1 - 3 * 0.02) and audio_tower["f_max"] > high * (
        1 + 3 * 0.02
    )
    # both EfficientNet towers fused (the first run's time); digits keeps the plain form
    assert entry.metadata["backbone_defaults"]["efficientnet-lite0"] == {
        "image_size": 112,
        "fused": True,
    }
    assert audio_tower["fused"] is True
    assert DATASETS.metadata("digits")["backbone_defaults"]["efficientnet-lite0"] == {
        "image_size": 112
    }
    ds = load_builtin("keypad", "test", seed=4, snr_db=0.0, **SMALL)
    assert isinstance(ds, KeypadDataset) and ds.split == "test" and len(ds) == 30
    assert ds.config.snr_db == 0.0 and ds.seed == 4
    with pytest.raises(ConfigError, match="snr"):
        load_builtin("keypad", "train", snr="loud")
