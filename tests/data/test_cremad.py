"""CREMA-D in the OGM-GE layout, on tiny fixtures written in the real format:
"<clip>,<emotion>" CSVs, 16-bit PCM WAVs written with ``wave``, JPEG frames written with PIL."""

from __future__ import annotations

import math
import os
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from balgrad.data.disk._records import DataWarning
from balgrad.data.readers._cremad import CLASSES, CremaD
from balgrad.errors import DataError

RATE = 8000
CLIPS = [("1041_TIE_NEU_XX", "NEU"), ("1071_MTI_SAD_XX", "SAD"), ("1011_IWL_ANG_XX", "ANG")]


def write_wav(path, samples, rate=RATE, channels=1):
    pcm = np.round(np.asarray(samples) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def sine(n, freq=440.0, amp=0.5):
    return amp * np.sin(2 * math.pi * freq * np.arange(n) / RATE)


def write_frame(path, value, size=(12, 16)):
    # a flat grey frame: JPEG keeps it (nearly) exact, so each frame is identifiable
    Image.new("RGB", (size[1], size[0]), (value, value, value)).save(path, "JPEG", quality=95)


def make(root, clips=CLIPS, split="train", frames=4, ms=300):
    (root / "AudioWAV").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (name, emotion) in enumerate(clips):
        lines.append(f"{name},{emotion}")
        write_wav(root / "AudioWAV" / f"{name}.wav", sine(RATE * ms // 1000, 220.0 * (k + 1)))
        folder = root / "Image-01-FPS" / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(frames):
            write_frame(folder / f"frame_{j:05d}.jpg", 40 * j + 20)
    (root / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def frame_values(visual):
    """Grey level (0-255) of each frame of a [3, T, H, W] tensor."""
    return [round(float(visual[:, t].mean()) * 255) for t in range(visual.shape[1])]


def test_shapes_labels_and_official_mapping(tmp_path):
    ds = CremaD(make(tmp_path), "train", num_frames=2, image_size=(8, 10))
    assert CLASSES == ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
    assert len(ds) == 3
    assert [ds[i]["label"] for i in range(3)] == [0, 2, 5]
    item = ds[0]
    assert item["visual"].shape == (3, 2, 8, 10) and item["visual"].dtype == torch.float32
    assert float(item["visual"].min()) >= 0.0 and float(item["visual"].max()) <= 1.0
    assert item["sample_rate"] == RATE
    assert item["audio"].shape == (3 * RATE,)


def test_audio_is_looped_to_three_seconds_and_clipped(tmp_path):
    make(tmp_path, ms=300)
    n = RATE * 300 // 1000
    ds = CremaD(tmp_path, "train")
    expected = np.round(sine(n, 220.0) * 32767) / 32768  # 16-bit PCM, read back
    got = ds[0]["audio"].numpy()
    np.testing.assert_allclose(got, np.tile(expected, 10)[: 3 * RATE], atol=1e-6)
    # a stereo file is averaged to mono; a full-scale negative sample stays in [-1, 1]
    left, right = sine(n, 220.0), np.full(n, -1.0)
    write_wav(tmp_path / "AudioWAV" / "1041_TIE_NEU_XX.wav", np.stack([left, right], 1), channels=2)
    got = ds[0]["audio"].numpy()
    mono = (np.round(left * 32767) + np.round(right * 32767)) / 2 / 32768
    np.testing.assert_allclose(got[:n], mono, atol=1e-6)
    assert got.min() >= -1.0 and got.max() <= 1.0
    # another length and sample rate
    write_wav(tmp_path / "AudioWAV" / "1041_TIE_NEU_XX.wav", sine(500), rate=16000)
    item = CremaD(tmp_path, "train", seconds=0.1)[0]
    assert item["sample_rate"] == 16000 and item["audio"].shape == (1600,)


def test_test_split_reads_the_first_frames_in_name_order(tmp_path):
    make(tmp_path, split="test", frames=5)
    ds = CremaD(tmp_path, "test", num_frames=3)
    assert ds.frame_indices(0) == [0, 1, 2]
    assert frame_values(ds[0]["visual"]) == [20, 60, 100]
    ds.set_epoch(7)
    assert frame_values(ds[0]["visual"]) == [20, 60, 100]


def test_train_split_draws_sorted_distinct_frames_reproducibly(tmp_path):
    make(tmp_path, frames=6)
    ds = CremaD(tmp_path, "train", num_frames=3, seed=1)
    draws = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        idx = ds.frame_indices(0)
        assert idx == sorted(set(idx)) and len(idx) == 3 and all(0 <= k < 6 for k in idx)
        assert frame_values(ds[0]["visual"]) == [40 * k + 20 for k in idx]
        draws.add(tuple(idx))
    assert len(draws) > 1  # the epochs draw differently
    ds.set_epoch(3)
    again = CremaD(tmp_path, "train", num_frames=3, seed=1)
    again.set_epoch(3)
    assert again.frame_indices(0) == ds.frame_indices(0)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match=r"split file .*test\.csv is missing"):
        CremaD(make(tmp_path), "test")


@pytest.mark.parametrize(
    "line, message",
    [
        ("1041_TIE_NEU_XX,XXX", r"line 2: unknown emotion 'XXX'"),
        ("1041_TIE_NEU_XX", r"line 2: expected 2 fields .*got 1"),
        ("1041_TIE_NEU_XX,NEU,extra", r"line 2: expected 2 fields .*got 3"),
        ("1099_XXX_NEU_XX,NEU", r"line 2: audio file .*1099_XXX_NEU_XX\.wav is missing"),
        ("../AudioWAV/1041_TIE_NEU_XX,NEU", r"line 2: clip name .* is not a file name"),
    ],
)
def test_bad_csv_lines_name_the_file_and_line(tmp_path, line, message):
    make(tmp_path)
    csv = tmp_path / "train.csv"
    csv.write_text(f"1071_MTI_SAD_XX,SAD\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"train\.csv {message}"):
        CremaD(tmp_path, "train")
    with pytest.warns(DataWarning, match=r"skipped 1 bad record"):
        ds = CremaD(tmp_path, "train", skip_bad=True)
    assert [c.name for c in ds.clips] == ["1071_MTI_SAD_XX"]


def test_missing_frame_folder_and_too_few_frames(tmp_path):
    make(tmp_path, frames=2)
    (tmp_path / "Image-01-FPS" / "1071_MTI_SAD_XX" / "frame_00000.jpg").unlink()
    with pytest.raises(DataError, match=r"train\.csv line 2: frame folder .* holds 1 frame"):
        CremaD(tmp_path, "train", num_frames=2)
    os.rename(tmp_path / "Image-01-FPS" / "1071_MTI_SAD_XX", tmp_path / "elsewhere")
    with pytest.raises(
        DataError, match=r"train\.csv line 2: frame folder .*1071_MTI_SAD_XX is missing"
    ):
        CremaD(tmp_path, "train")


def test_corrupt_wav_and_jpeg_name_file_and_line(tmp_path):
    make(tmp_path)
    wav = tmp_path / "AudioWAV" / "1071_MTI_SAD_XX.wav"
    wav.write_bytes(wav.read_bytes()[:30])  # a truncated header
    ds = CremaD(tmp_path, "train")
    with pytest.raises(
        DataError, match=r"train\.csv line 2: audio file .*1071_MTI_SAD_XX\.wav cannot be read"
    ):
        ds[1]
    frame = tmp_path / "Image-01-FPS" / "1011_IWL_ANG_XX" / "frame_00000.jpg"
    frame.write_bytes(b"not a jpeg")
    with pytest.raises(
        DataError, match=r"train\.csv line 3: image file .*frame_00000\.jpg cannot be read"
    ):
        CremaD(tmp_path, "train")[2]


def test_paths_outside_the_data_folder_are_refused(tmp_path):
    root = make(tmp_path / "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    write_wav(outside / "x.wav", sine(100))
    wav = root / "AudioWAV" / "1071_MTI_SAD_XX.wav"
    wav.unlink()
    wav.symlink_to(outside / "x.wav")
    with pytest.raises(
        DataError, match=r"train\.csv line 2: audio file .* outside the data folder"
    ):
        CremaD(root, "train")
    wav.unlink()
    write_wav(wav, sine(100))
    folder = root / "Image-01-FPS" / "1011_IWL_ANG_XX"
    os.rename(folder, outside / "frames")
    folder.symlink_to(outside / "frames")
    with pytest.raises(
        DataError, match=r"train\.csv line 3: frame folder .* outside the data folder"
    ):
        CremaD(root, "train")
    with pytest.raises(DataError, match=r"audio folder .* outside the data folder"):
        CremaD(root, "train", audio_dir="../outside")


def test_csv_with_bom_crlf_and_blank_lines_and_csv_dir(tmp_path):
    make(tmp_path)
    (tmp_path / "CREMAD").mkdir()
    text = "1071_MTI_SAD_XX,SAD\r\n\r\n1041_TIE_NEU_XX,NEU\r\n"
    (tmp_path / "CREMAD" / "test.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    ds = CremaD(tmp_path, "test", csv_dir="CREMAD")
    assert [(c.name, c.label, c.source.rsplit(" ", 1)[1]) for c in ds.clips] == [
        ("1071_MTI_SAD_XX", 2, "1"),
        ("1041_TIE_NEU_XX", 0, "3"),
    ]
    with pytest.raises(DataError, match=r"split file .* outside the data folder"):
        CremaD(tmp_path / "CREMAD", "test", csv_dir="..")


def test_csv_line_that_is_not_utf8(tmp_path):
    make(tmp_path)
    (tmp_path / "train.csv").write_bytes(b"1071_MTI_SAD_XX,SAD\n1041_TIE_NEU_X\xe9,NEU\n")
    with pytest.raises(DataError, match=r"train\.csv line 2: not valid UTF-8 \(byte 0xE9"):
        CremaD(tmp_path, "train")


def test_8_bit_and_float_wavs_are_scaled_to_unit_range(tmp_path):
    import scipy.io.wavfile

    make(tmp_path)
    wav = tmp_path / "AudioWAV" / "1041_TIE_NEU_XX.wav"
    scipy.io.wavfile.write(wav, RATE, np.array([0, 64, 128, 192, 255], dtype=np.uint8))
    got = CremaD(tmp_path, "train", seconds=5 / RATE)[0]["audio"].numpy()
    np.testing.assert_allclose(got, [-1.0, -0.5, 0.0, 0.5, 127 / 128])
    scipy.io.wavfile.write(wav, RATE, np.array([0.25, -2.0], dtype=np.float32))
    got = CremaD(tmp_path, "train", seconds=4 / RATE)[0]["audio"].numpy()
    np.testing.assert_allclose(got, [0.25, -1.0, 0.25, -1.0])  # tiled, then clipped
    pcm24 = b"".join(v.to_bytes(3, "little", signed=True) for v in (2**22, -(2**23)))
    with wave.open(str(wav), "wb") as f:  # 24-bit PCM, which scipy reads as int32
        f.setnchannels(1)
        f.setsampwidth(3)
        f.setframerate(RATE)
        f.writeframes(pcm24)
    got = CremaD(tmp_path, "train", seconds=2 / RATE)[0]["audio"].numpy()
    np.testing.assert_allclose(got, [0.5, -1.0])
    wav.write_bytes(b"not a wav file at all")
    with pytest.raises(DataError, match=r"line 1: audio file .* cannot be read as WAV"):
        CremaD(tmp_path, "train")[0]


def test_batches_through_a_dataloader_and_warns_at_the_caller(tmp_path):
    make(tmp_path)
    ds = CremaD(tmp_path, "train", num_frames=2, image_size=4)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["audio"].shape == (3, 3 * RATE) and batch["visual"].shape == (3, 3, 2, 4, 4)
    assert batch["label"].tolist() == [0, 2, 5] and batch["sample_rate"].tolist() == [RATE] * 3
    (tmp_path / "AudioWAV" / "1071_MTI_SAD_XX.wav").unlink()
    with pytest.warns(DataWarning) as record:
        CremaD(tmp_path, "train", skip_bad=True)
    assert record[0].filename == __file__
