"""CREMA-D registered as the dataset "cremad" (balgrad.data.readers._registry_av): the dataset
contract over the OGM-GE layout, on fixtures written by test_cremad's writers (CSV lines,
16-bit PCM WAVs, JPEG frames)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_cremad import CLIPS, RATE, make, sine, write_frame, write_wav

import balgrad.data.readers._registry_av  # noqa: F401 - registers cremad, mosei, mosi
from balgrad.backbones._factory import BACKBONES, create_backbone
from balgrad.data._catalog import DATASETS
from balgrad.data._kinds import KINDS
from balgrad.data.disk._records import DataWarning, MissingSplitError
from balgrad.data.readers._cremad import IMAGENET_MEAN, IMAGENET_STD, CremaDDataset, spread_indices
from balgrad.errors import ConfigError, DataError

SMALL = {"image_size": [8, 10], "seconds": 0.5, "sample_rate": 16000}


def build(root, split="train", skip_bad=False, **options):
    return DATASETS.build("cremad", (root, split), {"skip_bad": skip_bad}, {**SMALL, **options})


@pytest.fixture
def root(tmp_path):
    make(tmp_path, split="train", frames=5)
    make(tmp_path, clips=CLIPS[:2], split="test", frames=5)
    return tmp_path


def test_registration_declares_modalities_and_their_backbones():
    assert DATASETS.get("cremad").load() is CremaDDataset
    meta = DATASETS.metadata("cremad")
    assert meta["kind"] == "disk"
    assert meta["modalities"] == {"audio": "audio", "visual": "video"}
    assert meta["modality_backbones"] == {"audio": "resnet18", "visual": "resnet18"}
    for modality, kind in meta["modalities"].items():
        assert meta["modality_backbones"][modality] in BACKBONES[kind]
    assert DATASETS.canonical("crema-d") == "cremad"
    defaults = DATASETS.defaults("cremad")  # the OGM-GE setting
    assert (defaults["num_frames"], defaults["image_size"], defaults["seconds"]) == (1, 224, 3.0)
    assert defaults["sample_rate"] == 22050


def test_each_split_builds_and_val_is_carved_by_balgrad(root):
    train, test = build(root, "train"), build(root, "test")
    assert (len(train), len(test)) == (3, 2) and (train.split, test.split) == ("train", "test")
    assert train.info.classes == ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
    assert train.info.task == "single_label" and train.info.primary_metric == "accuracy"
    assert train.info.modalities == {"audio": "audio", "visual": "video"}
    for split in ("val", "dev", "validation"):
        with pytest.raises(MissingSplitError, match="carve one from 'train'"):
            build(root, split)


def test_examples_hold_each_kind_s_raw_form(root):
    ds = build(root, "train", num_frames=2)
    assert ds.labels == [0, 2, 5]
    for i in range(len(ds)):
        ex = ds[i]
        assert list(ex.inputs) == ["audio", "visual"] and ex.index == i
        assert ex.label.dtype == torch.int64 and int(ex.label) == ds.labels[i]
        assert ex.inputs["audio"].shape == (8000,) and ex.inputs["audio"].dtype == torch.float32
        assert ex.inputs["visual"].shape == (3, 2, 8, 10)
        assert ex.inputs["visual"].dtype == torch.float32
    # the kinds' blank and noise apply to them as they are
    ex = ds[0]
    assert torch.equal(KINDS["audio"].blank(ex.inputs["audio"]), torch.zeros(8000))
    noisy = KINDS["video"].noise(ex.inputs["visual"], 1.0, 0, 0, 5)
    assert noisy.shape == ex.inputs["visual"].shape


def test_audio_is_resampled_then_looped_to_the_length(root):
    ds = build(root, "train", seconds=0.5, sample_rate=16000)
    n = RATE * 300 // 1000  # the fixture's clips: 300 ms at 8 kHz, clip k at 220 (k + 1) Hz
    got = ds[1].inputs["audio"].numpy()
    assert got.shape == (8000,) and got.min() >= -1.0 and got.max() <= 1.0
    # away from the ends of the resampled clip, it is the same sine sampled at 16 kHz
    t = np.arange(2 * n) / 16000
    expected = 0.5 * np.sin(2 * math.pi * 440.0 * t)
    np.testing.assert_allclose(got[200 : 2 * n - 200], expected[200:-200], atol=2e-3)
    # then it loops: the resampled clip (2n samples) repeats
    np.testing.assert_array_equal(got[2 * n :], got[: 8000 - 2 * n])
    kept = build(root, "train", sample_rate=None)  # the files' own rate
    assert kept.sample_rate == RATE and kept[0].inputs["audio"].shape == (RATE // 2,)


def test_without_resampling_every_clip_must_share_the_rate(root):
    write_wav(root / "AudioWAV" / f"{CLIPS[2][0]}.wav", sine(1000), rate=16000)
    ds = build(root, "train", sample_rate=None)
    assert ds[0].inputs["audio"].shape == (RATE // 2,)
    with pytest.raises(DataError, match=r"train\.csv line 3: audio file .*16000 Hz.*8000 Hz"):
        ds[2]
    assert build(root, "train", sample_rate=8000)[2].inputs["audio"].shape == (4000,)


def test_frames_are_a_pure_function_of_the_index(root):
    # frame j of every clip is the grey level 40 j + 20 (test_cremad's writer)
    assert spread_indices(5, 2) == [1, 3] and spread_indices(5, 1) == [2]
    assert spread_indices(4, 4) == [0, 1, 2, 3]
    ds = build(root, "train", num_frames=2, normalize=False)
    assert ds.frame_indices(0) == [1, 3]
    grey = [round(float(ds[0].inputs["visual"][:, t].mean()) * 255) for t in range(2)]
    assert grey == [60, 140]
    again = build(root, "train", num_frames=2, normalize=False)
    for i in range(len(ds)):
        assert torch.equal(ds[i].inputs["visual"], again[i].inputs["visual"])
        assert torch.equal(ds[i].inputs["visual"], ds[i].inputs["visual"])
    first = build(root, "test", num_frames=2, frame_choice="first", normalize=False)
    assert first.frame_indices(0) == [0, 1]
    # normalised: the ImageNet statistics, per channel
    norm = build(root, "train", num_frames=2)[0].inputs["visual"]
    raw = ds[0].inputs["visual"]
    for c in range(3):
        np.testing.assert_allclose(
            norm[c].numpy(), (raw[c].numpy() - IMAGENET_MEAN[c]) / IMAGENET_STD[c], atol=1e-6
        )


def test_fingerprint_and_content_files(root):
    ds = build(root, "train", num_frames=2)
    files = ds.content_files_by_example()
    assert [p.name for p in files[0]] == [
        f"{CLIPS[0][0]}.wav",
        "frame_00001.jpg",
        "frame_00003.jpg",
    ]
    assert ds.content_files() == [p for per in files for p in per]
    assert ds.content_files_per_example is False  # several files per example
    assert build(root, "train", num_frames=2).fingerprint == ds.fingerprint
    assert build(root, "train", num_frames=1).fingerprint != ds.fingerprint
    assert build(root, "train", num_frames=2, normalize=False).fingerprint != ds.fingerprint
    assert build(root, "test", num_frames=2).fingerprint != ds.fingerprint
    # a frame it reads, rewritten at another size, changes it; one it does not read, not
    write_frame(root / "Image-01-FPS" / CLIPS[0][0] / "frame_00000.jpg", 77, size=(30, 30))
    assert build(root, "train", num_frames=2).fingerprint == ds.fingerprint
    write_frame(root / "Image-01-FPS" / CLIPS[0][0] / "frame_00001.jpg", 77, size=(30, 30))
    assert build(root, "train", num_frames=2).fingerprint != ds.fingerprint


def test_validate_names_the_csv_line_of_a_bad_clip(root):
    frame = root / "Image-01-FPS" / CLIPS[1][0] / "frame_00002.jpg"  # the one num_frames=1 reads
    frame.write_bytes(frame.read_bytes()[:40])
    ds = build(root, "train")
    with pytest.raises(DataError, match=r"train\.csv line 2: image file .*frame_00002\.jpg"):
        ds.validate()
    (root / "AudioWAV" / f"{CLIPS[2][0]}.wav").write_bytes(b"not a wav file at all")
    lenient = build(root, "train", skip_bad=True)
    with pytest.warns(DataWarning, match="skipped 2 bad record"):
        reasons = lenient.validate()
    assert len(reasons) == 2 and "line 3: audio file" in reasons[1]
    assert len(lenient) == 1 and lenient.labels == [0] and lenient[0].index == 0


def test_a_wrong_option_is_named(root):
    with pytest.raises(ConfigError, match="'frame_choice'"):
        build(root, "train", frame_choice="random")
    with pytest.raises(ConfigError, match="unknown option 'frames'"):
        build(root, "train", frames=2)
    with pytest.raises(ConfigError, match="'sample_rate'"):
        build(root, "train", sample_rate=0)


def test_the_registered_backbones_encode_collated_items(root):
    meta = DATASETS.metadata("cremad")
    encoders = {
        m: create_backbone(meta["modalities"][m], meta["modality_backbones"][m], width=4)
        for m in ("audio", "visual")
    }
    ogm_ge = build(root, "train", sample_rate=22050, seconds=3.0)  # the official clip length
    spec = encoders["audio"].frontend(torch.stack([ogm_ge[i].inputs["audio"] for i in range(2)]))
    assert spec.shape == (2, 1, 257, 188)  # the OGM-GE CREMA-D spectrogram
    ds = build(root, "train", num_frames=2, sample_rate=22050, seconds=0.5)
    audio = torch.stack([ds[i].inputs["audio"] for i in range(3)])  # [B, T]
    visual = torch.stack([ds[i].inputs["visual"] for i in range(3)])  # [B, C, T, H, W]
    for m, x in (("audio", audio), ("visual", visual)):
        out = encoders[m].eval()(x)
        assert out.shape == (3, encoders[m].out_dim) and torch.isfinite(out).all()
