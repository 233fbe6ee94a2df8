"""Kinetics-Sounds in the BalanceBenchmark/OGM-GE layout, on tiny fixtures written in the
real format: split lists (OGM-GE's "<clip>,<seconds>,<label>" and BalanceBenchmark's
space-separated lines), ``.npy`` spectrograms written with numpy, 16-bit PCM WAVs written
with ``wave``, and ``frame_0000k.jpg`` frames written with PIL."""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import pickle
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from balgrad.data._catalog import DATASETS, dataset_kind, lookup
from balgrad.data._splits import train_val_split
from balgrad.data.disk._records import DataWarning, MissingSplitError
from balgrad.errors import ConfigError, DataError

MODULE = "balgrad.data.readers._kinetics_sounds"
# torchvision's ImageNet statistics (transforms.Normalize in the official loaders)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def ks():
    """The module (a built-in registration: the registry imports it)."""
    DATASETS.get("kinetics_sounds")
    return importlib.import_module(MODULE)


RATE = 8000
SPEC = (16, 8)  # [frames, mel bins]; the real files are [1024, 128]
# (clip, label): names as in OGM-GE's my_train.txt
CLIPS = [("--4-0ihtnBU_000058_000068", 4), ("-00nar1nEPc_000033_000043", 13), ("-1IlT", 30)]


def spectrogram(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.standard_normal(SPEC).astype(np.float32)


def grey(k: int, j: int) -> int:
    """Grey level of frame j (1-based) of clip k: each frame identifiable after JPEG."""
    return 20 * j + 5 * k


def write_frame(path, value, size=(6, 8)):
    Image.new("RGB", (size[1], size[0]), (value, value, value)).save(path, "JPEG", quality=95)


def write_wav(path, samples, rate=RATE):
    pcm = np.round(np.asarray(samples) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def make(root, split="train", clips=CLIPS, frames=10, style="ogm"):
    """The layout with default folder names; ``style`` "ogm" writes OGM-GE's
    comma-separated list, "bb" BalanceBenchmark's space-separated one."""
    audio, visual = root / "audio" / split, root / "visual" / split
    audio.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (name, label) in enumerate(clips):
        lines.append(f"{name},10,{label}" if style == "ogm" else f"{name} {label}")
        np.save(audio / f"{name}.npy", spectrogram(k))
        folder = visual / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(1, frames + 1):
            write_frame(folder / f"frame_{j:05d}.jpg", grey(k, j))
    (root / f"my_{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def frame_values(visual, normalized=True):
    """Grey level (0-255) of each frame of a [3, T, H, W] tensor, un-normalising it."""
    if normalized:
        mean = torch.tensor(MEAN).view(3, 1, 1, 1)
        std = torch.tensor(STD).view(3, 1, 1, 1)
        visual = visual * std + mean
    return [round(float(visual[:, t].mean()) * 255) for t in range(visual.shape[1])]


def official_test_frames(file_num, pick_num=3):
    """The frame names BalanceBenchmark's KS_dataset reads at test time (its formula)."""
    seg = int(file_num / pick_num)
    names = []
    for i in range(pick_num):
        t = i * seg + max(int(seg / 2), 1) if file_num > 6 else 1
        names.append("frame_0000" + str(t) + ".jpg")
    return names


def test_items_shapes_labels_and_normalisation(ks, tmp_path):
    ds = ks.KineticsSounds(make(tmp_path), "train", image_size=(4, 5))
    assert len(ds) == 3
    assert ds.info.classes == [str(i) for i in range(31)] and ds.info.task == "single_label"
    assert ds.info.modalities == {"audio": "audio", "visual": "video"}
    assert ds.info.metrics == ["accuracy"]
    assert ds.labels.tolist() == [4, 13, 30] and ds.labels.dtype == np.int64
    ex = ds[1]
    assert ex.index == 1 and ex.label.dtype == torch.int64 and int(ex.label) == 13
    assert set(ex.inputs) == {"audio", "visual"}
    # the spectrogram as stored, with the official leading channel axis
    assert ex.inputs["audio"].shape == (1, *SPEC) and ex.inputs["audio"].dtype == torch.float32
    np.testing.assert_array_equal(ex.inputs["audio"][0].numpy(), spectrogram(1))
    visual = ex.inputs["visual"]
    assert visual.shape == (3, 3, 4, 5) and visual.dtype == torch.float32
    # a grey frame v normalises to (v / 255 - mean_c) / std_c in channel c
    k = ds.frame_indices(1)[0]
    v = grey(1, k + 1) / 255
    expected = [(v - m) / s for m, s in zip(MEAN, STD)]
    got = [float(visual[c, 0].mean()) for c in range(3)]
    np.testing.assert_allclose(got, expected, atol=3 / 255 / 0.224)
    raw = ks.KineticsSounds(tmp_path, "train", image_size=(4, 5), normalize=False)[1]
    want = [grey(1, k + 1) for k in ds.frame_indices(1)]
    assert frame_values(raw.inputs["visual"], normalized=False) == want
    with pytest.raises(IndexError):
        ds[3]


@pytest.mark.parametrize("file_num", [4, 6, 7, 8, 9])
def test_test_split_reads_the_official_frames(ks, tmp_path, file_num):
    make(tmp_path, "test", frames=file_num)
    ds = ks.KineticsSounds(tmp_path, "test", image_size=4)
    want = [int(n[len("frame_") : -len(".jpg")]) for n in official_test_frames(file_num)]
    assert ds.frame_indices(0) == [t - 1 for t in want]
    assert frame_values(ds[0].inputs["visual"]) == [grey(0, t) for t in want]
    ds.set_epoch(5)  # the test split never draws
    assert frame_values(ds[0].inputs["visual"]) == [grey(0, t) for t in want]


def test_frames_past_the_ninth_are_read_by_position(ks):
    # 10 frames: 1, 4, 7 as officially; 30 frames: one in the middle of each 10
    assert ks.frame_positions(10, 3, None) == [0, 3, 6]
    assert ks.frame_positions(30, 3, None) == [4, 14, 24]
    assert ks.frame_positions(12, 2, None) == [2, 8]
    assert ks.frame_positions(4, 2, None) == [0, 0]  # at most 2 * num_frames: the first


def test_train_split_draws_one_frame_per_segment_reproducibly(ks, tmp_path):
    make(tmp_path, frames=12)
    ds = ks.KineticsSounds(tmp_path, "train", image_size=4, seed=3)
    seg = 12 // 3
    draws = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        idx = ds.frame_indices(2)
        # the official random.randint(i * seg + 1, i * seg + seg), 1-based
        assert all(i * seg + 1 <= k + 1 <= i * seg + seg for i, k in enumerate(idx))
        assert frame_values(ds[2].inputs["visual"]) == [grey(2, k + 1) for k in idx]
        draws.add(tuple(idx))
    assert len(draws) > 1
    again = ks.KineticsSounds(tmp_path, "train", image_size=4, seed=3)
    again.set_epoch(7)
    assert again.frame_indices(2) == ds.frame_indices(2)


def test_no_validation_split_and_bad_split_names(ks, tmp_path):
    make(tmp_path)
    for split in ("val", "dev", "validation"):
        with pytest.raises(MissingSplitError, match="no official validation split"):
            ks.KineticsSounds(tmp_path, split)
    with pytest.raises(ConfigError, match="split must be one of"):
        ks.KineticsSounds(tmp_path, "holdout")
    with pytest.raises(DataError, match=r"split list .*my_test\.txt is missing"):
        ks.KineticsSounds(tmp_path, "test")


def test_balancebenchmark_lines_and_path_prefixes(ks, tmp_path):
    make(tmp_path, style="bb")
    ds = ks.KineticsSounds(tmp_path, "train")
    assert [(c.name, c.label) for c in ds.clips] == CLIPS
    # a path before the clip (other loaders of this layout take its last component),
    # a BOM, CRLF, blank lines and extra fields
    text = "\ufeffks/train/-1IlT 10 30\r\n\r\n--4-0ihtnBU_000058_000068 x 4\r\n"
    (tmp_path / "my_train.txt").write_text(text, encoding="utf-8")
    ds = ks.KineticsSounds(tmp_path, "train")
    assert [(c.name, c.label, c.source.rsplit(" ", 1)[1]) for c in ds.clips] == [
        ("-1IlT", 30, "1"),
        ("--4-0ihtnBU_000058_000068", 4, "3"),
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("-1IlT,10,31", r"line 2: label 31 is out of range \[0, 31\)"),
        ("-1IlT,10,-1", r"line 2: label -1 is out of range"),
        ("-1IlT,10,NEU", r"line 2: label 'NEU' is not an integer"),
        ("-1IlT", r"line 2: expected at least 2 fields .*got 1"),
        ("nosuchclip,10,3", r"line 2: audio file .*nosuchclip\.npy is missing"),
        ("..,10,3", r"line 2: clip name '\.\.' is not a file name"),
        ("a\\b 3", r"line 2: clip name .* is not a file name"),
    ],
)
def test_bad_list_lines_name_the_file_and_line(ks, tmp_path, line, message):
    make(tmp_path)
    (tmp_path / "my_train.txt").write_text(f"--4-0ihtnBU_000058_000068,10,4\n{line}\n")
    with pytest.raises(DataError, match=rf"my_train\.txt {message}"):
        ks.KineticsSounds(tmp_path, "train")
    with pytest.warns(DataWarning, match=r"skipped 1 bad record"):
        ds = ks.KineticsSounds(tmp_path, "train", skip_bad=True)
    assert [c.name for c in ds.clips] == ["--4-0ihtnBU_000058_000068"]
    assert ds.labels.tolist() == [4]


def test_missing_frame_folder_too_few_frames_and_no_usable_clip(ks, tmp_path):
    make(tmp_path, frames=4)
    folder = tmp_path / "visual" / "train" / "-1IlT"
    (folder / "frame_00004.jpg").unlink()  # 3 frames left: the official loader needs > 3
    with pytest.raises(DataError, match=r"my_train\.txt line 3: frame folder .* holds 3 frame"):
        ks.KineticsSounds(tmp_path, "train")
    assert len(ks.KineticsSounds(tmp_path, "train", num_frames=2)) == 3
    os.rename(folder, tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"my_train\.txt line 3: frame folder .*-1IlT is missing"):
        ks.KineticsSounds(tmp_path, "train")
    (tmp_path / "my_train.txt").write_text("-1IlT,10,30\n")
    with pytest.raises(DataError, match=r"names no usable clip \(1 bad: .*line 1: frame folder"):
        ks.KineticsSounds(tmp_path, "train", skip_bad=True)


def test_list_line_that_is_not_utf8(ks, tmp_path):
    make(tmp_path)
    (tmp_path / "my_train.txt").write_bytes(b"-1IlT,10,30\n-1Il\xe9,10,3\n")
    with pytest.raises(DataError, match=r"my_train\.txt line 2: not valid UTF-8 \(byte 0xE9"):
        ks.KineticsSounds(tmp_path, "train")


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:40]), r"cannot be read as a \.npy array"),
        (lambda p: p.write_bytes(b"not an npy file"), r"cannot be read as a \.npy array"),
        (lambda p: np.save(p, np.zeros((2, 3, 4))), r"shape \(2, 3, 4\); expected a 2-D"),
        (lambda p: np.save(p, np.array([[1.0, np.nan]])), r"holds NaN or infinite values"),
        (lambda p: np.save(p, np.array([["a"]])), r"expected a 2-D numeric"),
        (lambda p: np.save(p, np.array([[{}]], dtype=object)), r"cannot be read as a \.npy"),
        (lambda p: p.write_bytes(pickle.dumps(np.zeros(SPEC))), r"cannot be read as a \.npy"),
    ],
)
def test_bad_spectrogram_names_file_and_line(ks, tmp_path, content, message):
    make(tmp_path)
    path = tmp_path / "audio" / "train" / "-00nar1nEPc_000033_000043.npy"
    content(path)
    ds = ks.KineticsSounds(tmp_path, "train")
    ds[0]  # the others still read
    with pytest.raises(
        DataError, match=rf"my_train\.txt line 2: audio file .*043\.npy .*{message}"
    ):
        ds[1]
    with pytest.raises(DataError, match=rf"line 2: audio file .*{message}"):
        ks.KineticsSounds(tmp_path, "train").validate()
    ds = ks.KineticsSounds(tmp_path, "train", skip_bad=True)
    before = ds.fingerprint
    with pytest.warns(DataWarning, match=r"skipped 1 bad record"):
        reasons = ds.validate()
    assert len(reasons) == 1 and "line 2" in reasons[0]
    assert [c.label for c in ds.clips] == [4, 30] and ds.labels.tolist() == [4, 30]
    assert ds.fingerprint != before and len(ds.content_files()) == 2


def test_corrupt_frame_names_file_and_line(ks, tmp_path):
    make(tmp_path, "test")
    frame = tmp_path / "visual" / "test" / "-1IlT" / "frame_00001.jpg"
    frame.write_bytes(b"not a jpeg")
    ds = ks.KineticsSounds(tmp_path, "test")
    with pytest.raises(DataError, match=r"my_test\.txt line 3: image file .*frame_00001\.jpg"):
        ds[2]
    with pytest.raises(DataError, match=r"my_test\.txt line 3: image file .*frame_00001\.jpg"):
        ds.validate()


def test_wav_audio_is_looped_to_the_clip_length(ks, tmp_path):
    make(tmp_path)
    n = 300
    samples = 0.5 * np.sin(2 * math.pi * 440.0 * np.arange(n) / RATE)
    for name, _ in CLIPS:
        write_wav(tmp_path / "audio" / "train" / f"{name}.wav", samples)
    ds = ks.KineticsSounds(tmp_path, "train", audio_format="wav", seconds=0.1, image_size=4)
    got = ds[0].inputs["audio"].numpy()
    expected = np.round(samples * 32767) / 32768  # 16-bit PCM, read back
    assert got.shape == (800,)
    np.testing.assert_allclose(got, np.tile(expected, 3)[:800], atol=1e-6)
    write_wav(tmp_path / "audio" / "train" / f"{CLIPS[1][0]}.wav", samples, rate=16000)
    ds = ks.KineticsSounds(tmp_path, "train", audio_format="wav", sample_rate=RATE)
    assert ds[0].inputs["audio"].shape == (10 * RATE,)
    with pytest.raises(DataError, match=r"line 2: audio file .*\.wav is at 16000 Hz, not sample_"):
        ds[1]
    (tmp_path / "audio" / "train" / "-1IlT.wav").unlink()
    with pytest.raises(DataError, match=r"line 3: audio file .*-1IlT\.wav is missing"):
        ks.KineticsSounds(tmp_path, "train", audio_format="wav")
    with pytest.raises(ConfigError, match="audio_format"):
        ks.KineticsSounds(tmp_path, "train", audio_format="pkl")


def test_folder_options_classes_file_and_paths_outside(ks, tmp_path):
    root = tmp_path / "data"
    make(root)
    os.rename(root / "audio" / "train", root / "ks_audio")
    os.rename(root / "visual", root / "ks_visual")
    os.rename(root / "my_train.txt", root / "train_1fps_path.txt")
    (root / "classes.txt").write_text("\n".join(f"class {i}" for i in range(31)) + "\n")
    ds = ks.KineticsSounds(
        root,
        "train",
        list_file="{split}_1fps_path.txt",
        audio_dir="ks_audio",
        visual_dir="ks_visual/{split}",
        classes_file="classes.txt",
    )
    assert len(ds) == 3 and ds.info.classes[30] == "class 30"
    (root / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"line 1: label 4 is out of range \[0, 2\)"):
        ks.KineticsSounds(root, "train", list_file="train_1fps_path.txt", audio_dir="ks_audio",
                       visual_dir="ks_visual/train", classes_file="classes.txt")  # fmt: skip
    for bad in ("{spilt}.txt", "{0}.txt", "{split.x}.txt"):
        with pytest.raises(ConfigError, match=r"option 'list_file'"):
            ks.KineticsSounds(root, "train", list_file=bad)
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(DataError, match=r"audio folder .* outside the data folder"):
        ks.KineticsSounds(root, "train", audio_dir="../outside")
    np.save(outside / "x.npy", spectrogram(0))
    spec = root / "ks_audio" / "-1IlT.npy"
    spec.unlink()
    spec.symlink_to(outside / "x.npy")
    with pytest.raises(DataError, match=r"line 3: audio file .* outside the data folder"):
        ks.KineticsSounds(root, "train", list_file="train_1fps_path.txt", audio_dir="ks_audio",
                       visual_dir="ks_visual/train")  # fmt: skip


def test_fingerprint_content_files_and_carved_validation(ks, tmp_path):
    make(tmp_path)
    ds = ks.KineticsSounds(tmp_path, "train")
    assert ds.content_files_per_example
    assert [p.name for p in ds.content_files()] == [f"{n}.npy" for n, _ in CLIPS]
    same = ks.KineticsSounds(tmp_path, "train")
    assert same.fingerprint == ds.fingerprint
    assert ks.KineticsSounds(tmp_path, "train", num_frames=2).fingerprint != ds.fingerprint
    write_frame(tmp_path / "visual" / "train" / "-1IlT" / "frame_00003.jpg", 200, size=(40, 40))
    assert ks.KineticsSounds(tmp_path, "train").fingerprint != ds.fingerprint  # a frame's size
    (tmp_path / "my_train.txt").write_text("-1IlT,10,30\n--4-0ihtnBU_000058_000068,10,4\n")
    changed = ks.KineticsSounds(tmp_path, "train")
    assert changed.fingerprint != ds.fingerprint and changed.labels.tolist() == [30, 4]
    make(tmp_path, clips=[(f"c{i}", i % 2) for i in range(8)], frames=4)
    full = ks.KineticsSounds(tmp_path, "train", num_frames=1)
    train, val = train_val_split(full, 0.25, seed=0)
    assert len(train) + len(val) == 8 and len(val) == 2
    assert sorted(int(val[i].label) for i in range(2)) == [0, 1]  # stratified by labels
    assert val.content_files() == [full.content_files()[i] for i in val.indices]


def test_registration(ks, tmp_path):
    assert dataset_kind("kinetics_sounds") == "disk"
    assert lookup("Kinetics-Sounds", "disk") == lookup("ks", "disk") == "kinetics_sounds"
    meta = DATASETS.metadata("kinetics_sounds")
    assert meta["modalities"] == {"audio": "audio", "visual": "video"}
    assert meta["modality_backbones"] == {"audio": "resnet18", "visual": "resnet18"}
    assert "Kinetics-Sounds" in meta["description"]
    defaults = DATASETS.defaults("kinetics_sounds")
    assert defaults["num_frames"] == 3 and defaults["audio_format"] == "npy"
    assert "skip_bad" not in defaults and "data_dir" not in defaults
    make(tmp_path)
    ds = DATASETS.build("ks", (tmp_path, "train"), {"skip_bad": False}, {"num_frames": 2})
    assert isinstance(ds, ks.KineticsSounds) and ds[0].inputs["visual"].shape[1] == 2
    with pytest.raises(ConfigError, match="num_frames"):
        DATASETS.build("ks", (tmp_path, "train"), {"skip_bad": False}, {"num_frames": "many"})


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kinetics_sounds"


def fixture_writer():
    path = FIXTURE.parent / "make_kinetics_sounds.py"
    spec = importlib.util.spec_from_file_location("make_kinetics_sounds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("audio_format", ["npy", "wav"])
def test_committed_fixture_reads_in_both_audio_formats(ks, audio_format):
    writer = fixture_writer()
    opts = {"audio_format": audio_format, "seconds": writer.SECONDS, "image_size": 8}
    train, test = (ks.KineticsSounds(FIXTURE, s, **opts) for s in ("train", "test"))
    assert (len(train), len(test)) == (9, 6)
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    audio = test[0].inputs["audio"]
    want = (1, *writer.SPEC) if audio_format == "npy" else (round(writer.RATE * writer.SECONDS),)
    assert audio.shape == want
    assert test[0].inputs["visual"].shape == (3, 3, 8, 8)
    assert test.frame_indices(0) == [0, 2, 4]  # 7 frames: seg 2, frames 1, 3, 5


def test_the_protocol_impairments_apply_to_the_items(ks):
    from balgrad.data._kinds import KINDS

    ex = ks.KineticsSounds(FIXTURE, "test", image_size=8)[1]
    for name, x in ex.inputs.items():
        k = KINDS[ks.MODALITIES[name]]
        assert torch.equal(k.blank(x), torch.zeros_like(x))
        noisy = k.noise(x, k.default_noise, 0, ex.index, 7)
        assert noisy.shape == x.shape and not torch.equal(noisy, x)
        assert torch.equal(noisy, k.noise(x, k.default_noise, 0, ex.index, 7))  # seeded


def test_committed_fixture_is_what_the_writer_writes(ks, tmp_path):
    fresh = fixture_writer().write(tmp_path / "ks")
    names = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(FIXTURE) for p in FIXTURE.rglob("*") if p.is_file())
    for rel in names:  # JPEG bytes may differ between Pillow versions: not compared
        if rel.suffix != ".jpg":
            assert (fresh / rel).read_bytes() == (FIXTURE / rel).read_bytes(), rel
