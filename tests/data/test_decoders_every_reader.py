"""Every registered reader that reads images, frames or WAVs goes through the same checked
decoder (issue 23, "one decoder per format, used by every reader"): each family below is
fed the same odd files (16-bit, palette, CMYK, float, 1-bit images; 8/16/24/32-bit, float,
extensible, stereo, odd-rate WAVs) and its decoded values are compared with values
computed from the raw numbers written (tests/data/odd_files.py); the same hostile files
are a DataError naming the file in every family. Through the CLI, a damaged CREMA-D test
WAV is one ``balgrad: error:`` line and exit 2, before any method trains."""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from odd_files import N, bad_images, bad_wavs, odd_images, odd_wavs
from test_cremad import make as make_cremad
from test_kinetics_sounds import make as make_ks

from balgrad.cli import main
from balgrad.data._catalog import DATASETS
from balgrad.data.readers._cremad import CremaD, CremaDDataset
from balgrad.data.readers._registry_disk import load_dataset_from_disk
from balgrad.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
H, W = 5, 7
CLIP = ("1041_TIE_NEU_XX", "NEU")
KS_CLIP = ("-1IlT", 3)
# float32 keeps 24 bits: a value in [-1, 1] computed in float64 agrees to 2**-24 ~ 6e-8
F32 = 1e-7


def _ks():
    DATASETS.get("kinetics_sounds")  # a built-in registration: the registry imports it
    return importlib.import_module("balgrad.data.readers._kinetics_sounds")


# --------------------------------------------------------------------- image families
# each: (tmp folder, image bytes) -> (the file written, a function reading it back as
# [3, H, W] in [0, 1] after building the dataset and validating it as a run does)


def _cremad_image(tmp: Path, data: bytes):
    root = make_cremad(tmp / "cremad", [CLIP], frames=1)
    path = root / "Image-01-FPS" / CLIP[0] / "frame_00000.jpg"
    path.write_bytes(data)

    def read():
        ds = CremaDDataset(root, "train", image_size=(H, W), normalize=False, sample_rate=None)
        ds.validate()
        return ds.frames(0)[:, 0]

    return path, read


def _cremad_reader_image(tmp: Path, data: bytes):
    root = make_cremad(tmp / "cremad", [CLIP], frames=1)
    path = root / "Image-01-FPS" / CLIP[0] / "frame_00000.jpg"
    path.write_bytes(data)
    return path, lambda: CremaD(root, "train", image_size=(H, W))[0]["visual"][:, 0]


def _ks_image(tmp: Path, data: bytes):
    ks = _ks()
    root = make_ks(tmp / "ks", clips=[KS_CLIP], frames=3)
    folder = root / "visual" / "train" / KS_CLIP[0]
    for frame in folder.iterdir():
        frame.write_bytes(data)

    def read():
        ds = ks.KineticsSounds(root, "train", image_size=(H, W), normalize=False, num_frames=1)
        ds.validate()
        return ds[0].inputs["visual"][:, 0]

    return folder / "frame_00001.jpg", read


def _disk_image(name: str, split: str, relative: str):
    def family(tmp: Path, data: bytes):
        root = tmp / name
        shutil.copytree(FIXTURES / name, root)
        path = root / relative
        path.write_bytes(data)

        def read():
            ds = load_dataset_from_disk(name, root, split)
            ds.validate()
            i = [r.image.name for r in ds.records].index(path.name)
            return ds.get(i).inputs["image"]

        return path, read

    return family


IMAGE_FAMILIES = {
    "cremad": _cremad_image,
    "cremad_reader": _cremad_reader_image,
    "kinetics_sounds": _ks_image,
    "generic": _disk_image("generic", "train", "images/train_0.png"),
    "food101": _disk_image("food101", "test", "images/test/baklava/baklava_100.jpg"),
}
ODD_IMAGES = odd_images()
BAD_IMAGES = bad_images()


@pytest.mark.parametrize("image", sorted(ODD_IMAGES))
@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_every_reader_decodes_odd_images_to_their_values(tmp_path, family, image):
    data, expected, tol = ODD_IMAGES[image]
    _, read = IMAGE_FAMILIES[family](tmp_path, data)
    x = read()
    assert x.shape == (3, H, W) and x.dtype == torch.float32
    # the frame readers resize to (H, W): the image's own size, so no pixel is resampled
    err = np.abs(x.double().numpy() - expected).max()
    assert err <= tol, f"{family} {image}: max error {err} > {tol}"


@pytest.mark.parametrize("image", sorted(BAD_IMAGES))
@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_every_reader_refuses_bad_images_naming_the_file(tmp_path, family, image):
    path, read = IMAGE_FAMILIES[family](tmp_path, BAD_IMAGES[image])
    with pytest.raises(DataError, match=re.escape(str(path))):
        read()


@pytest.mark.parametrize("family", ["cremad", "kinetics_sounds"])
def test_a_16_bit_frame_resized_keeps_its_level(tmp_path, family):
    """The reported case: 16-bit PNG frames read as pure white. A flat frame stays flat
    at its level through the resize."""
    from PIL import Image

    flat = Image.frombytes("I;16", (20, 16), np.full((16, 20), 1000, "<u2").tobytes())
    path = tmp_path / "flat.png"
    flat.save(path)
    _, read = IMAGE_FAMILIES[family](tmp_path, path.read_bytes())
    x = read()  # resized from 20x16 to W x H
    np.testing.assert_allclose(x.numpy(), 1000 / 65535, atol=F32)


# --------------------------------------------------------------------- WAV families
# each: (tmp folder, wav bytes, rate) -> (the file written, a function reading the
# waveform at the file's own rate after building and validating the dataset)


def _cremad_wav(tmp: Path, data: bytes, rate: int):
    root = make_cremad(tmp / "cremad", [CLIP], frames=1)
    path = root / "AudioWAV" / f"{CLIP[0]}.wav"
    path.write_bytes(data)

    def read():
        ds = CremaDDataset(root, "train", image_size=4, sample_rate=None, seconds=N / rate)
        ds.validate()
        return ds.audio(0)

    return path, read


def _cremad_reader_wav(tmp: Path, data: bytes, rate: int):
    root = make_cremad(tmp / "cremad", [CLIP], frames=1)
    path = root / "AudioWAV" / f"{CLIP[0]}.wav"
    path.write_bytes(data)
    return path, lambda: CremaD(root, "train", image_size=4, seconds=N / rate)[0]["audio"]


def _ks_wav(tmp: Path, data: bytes, rate: int):
    ks = _ks()
    root = make_ks(tmp / "ks", clips=[KS_CLIP], frames=3)
    path = root / "audio" / "train" / f"{KS_CLIP[0]}.wav"
    path.write_bytes(data)

    def read():
        ds = ks.KineticsSounds(
            root, "train", audio_format="wav", seconds=N / rate, image_size=4, num_frames=1
        )
        ds.validate()
        return ds[0].inputs["audio"]

    return path, read


WAV_FAMILIES = {
    "cremad": _cremad_wav,
    "cremad_reader": _cremad_reader_wav,
    "kinetics_sounds": _ks_wav,
}
ODD_WAVS = odd_wavs()
BAD_WAVS = bad_wavs()


@pytest.mark.parametrize("wav", sorted(ODD_WAVS))
@pytest.mark.parametrize("family", sorted(WAV_FAMILIES))
def test_every_reader_decodes_odd_wavs_to_their_values(tmp_path, family, wav):
    data, rate, expected = ODD_WAVS[wav]
    _, read = WAV_FAMILIES[family](tmp_path, data, rate)
    x = read()
    assert x.shape == (N,) and x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=F32)


def test_cremad_resamples_an_odd_rate_as_scipy_does(tmp_path):
    from scipy.signal import resample_poly

    data, rate, expected = ODD_WAVS["odd_rate_11025"]
    root = make_cremad(tmp_path / "cremad", [CLIP], frames=1)
    (root / "AudioWAV" / f"{CLIP[0]}.wav").write_bytes(data)
    ds = CremaDDataset(root, "train", image_size=4, sample_rate=22050, seconds=2 * N / 22050)
    want = np.clip(resample_poly(expected, 2, 1), -1, 1)  # 11025 -> 22050: up 2, down 1
    # float32 input and output around a float64 filter: agreement to float32 precision
    np.testing.assert_allclose(ds.audio(0).numpy(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("wav", sorted(BAD_WAVS))
@pytest.mark.parametrize("family", sorted(WAV_FAMILIES))
def test_every_reader_refuses_hostile_wavs_naming_the_file(tmp_path, family, wav):
    data, why = BAD_WAVS[wav]
    path, read = WAV_FAMILIES[family](tmp_path, data, 16000)
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + why):
        read()


@pytest.mark.parametrize("wav", sorted(set(BAD_WAVS) - {"float_nan"}))
def test_cremad_validate_parses_every_wav_header_at_load(tmp_path, wav):
    """Header problems are found by validate() (what a run calls at load) without reading
    the samples; a NaN sample is only found by decoding."""
    data, why = BAD_WAVS[wav]
    path, _ = _cremad_wav(tmp_path, data, 16000)
    ds = CremaDDataset(path.parents[1], "train", image_size=4)
    with pytest.raises(DataError, match=r"train\.csv line 1: audio file .*" + why):
        ds.validate()


# --------------------------------------------------------------------- the CLI


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:  # as tests/test_bad_inputs.py
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


EMOTIONS = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]


@pytest.mark.parametrize("wav", ["broken_chunks", "rate_2e31", "zero_channels", "no_chunks"])
def test_a_damaged_test_wav_fails_the_cli_before_training(tmp_path, capsys, wav):
    root = tmp_path / "data"
    make_cremad(root, [(f"10{k:02d}_TIE_{e}_XX", e) for k in range(2) for e in EMOTIONS], ms=100)
    test = [(f"11{k:02d}_TIE_{e}_XX", e) for k in range(1) for e in EMOTIONS]
    make_cremad(root, test, "test", ms=100)
    bad = root / "AudioWAV" / f"{test[3][0]}.wav"
    bad.write_bytes(BAD_WAVS[wav][0])
    argv = ["compare", "--dataset", "cremad", "--data-dir", str(root), "--methods", "joint"]
    argv += ["--epochs", "1", "--batch-size", "4", "--no-progress", "--seeds", "0"]
    argv += ["--embed-dim", "8", "--no-sweep", "--out", str(tmp_path), "--name", "run"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    argv += ["--dataset-option", "image_size=16", "--dataset-option", "seconds=0.1"]
    argv += ["--dataset-option", "sample_rate=8000"]
    argv += ["--backbone-option", "audio.width=4", "--backbone-option", "visual.width=4"]
    code, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("balgrad: error:"), err
    assert "test.csv line 4" in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in out + err
    trained = [p for p in tmp_path.rglob("*") if p.name in ("metrics.jsonl", "model.safetensors")]
    assert not trained, f"it trained before failing: {trained}"


def test_a_wav_without_chunks_in_the_training_split_is_one_error_line(tmp_path, capsys):
    """It was an UnboundLocalError traceback from scipy (issue 23, item 11), and came only
    when training read the clip: every split is validated at load now."""
    root = tmp_path / "data"
    train = [(f"10{k:02d}_TIE_{e}_XX", e) for k in range(2) for e in EMOTIONS]
    make_cremad(root, train, ms=100)
    make_cremad(root, [(f"11{k:02d}_TIE_{e}_XX", e) for e in EMOTIONS for k in range(1)], "test")
    bad = root / "AudioWAV" / f"{train[2][0]}.wav"
    bad.write_bytes(BAD_WAVS["no_chunks"][0])
    argv = ["compare", "--dataset", "cremad", "--data-dir", str(root), "--methods", "joint"]
    argv += ["--epochs", "1", "--batch-size", "4", "--no-progress", "--seeds", "0"]
    argv += ["--embed-dim", "8", "--no-sweep", "--out", str(tmp_path), "--name", "run"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--dataset-option", "image_size=16"]
    argv += ["--dataset-option", "seconds=0.1", "--dataset-option", "sample_rate=8000"]
    argv += ["--backbone-option", "audio.width=4", "--backbone-option", "visual.width=4"]
    code, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("balgrad: error:") and str(bad) in lines[0]
    assert "holds no chunks" in lines[0] and "Traceback" not in out + err
    assert "train.csv line 3" in lines[0]  # named by validate(), before any training
    trained = [p for p in tmp_path.rglob("*") if p.name in ("metrics.jsonl", "model.safetensors")]
    assert not trained, f"it trained before failing: {trained}"
