"""A backbone that depends on the data's sample rate declares it, and a run checks it
against the dataset's before training (issue 23, item 4 / measured item 8):
``efficientnet-lite0-mel`` laid its mel filters out for 8 kHz on 22,050 Hz CREMA-D
audio without a word."""

from __future__ import annotations

import pytest
from test_av_end_to_end import cremad_folder

from balgrad.backbones._factory import check_sample_rate
from balgrad.cli import main
from balgrad.data._catalog import DATASETS
from balgrad.data._kinds import declared_sample_rate
from balgrad.data._splits import train_val_split
from balgrad.errors import ConfigError

MEL = "efficientnet-lite0-mel"


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_mel_tower_on_22050_hz_cremad_is_refused_before_training(tmp_path, capsys):
    root = cremad_folder(tmp_path / "cremad")
    argv = [
        "compare", "--dataset", "cremad", "--data-dir", str(root),
        "--out", str(tmp_path / "runs"), "--name", "r", "--cache-dir", str(tmp_path / "c"),
        "--dataset-option", "image_size=24", "--dataset-option", "seconds=0.2",
        "--backbone", f"audio={MEL}", "--backbone-option", "visual.width=4",
        "--methods", "joint", "--epochs", "1", "--seeds", "0", "--no-progress",
    ]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("balgrad: error: ")
    for words in ("'audio'", MEL, "8000 Hz", "22050 Hz", "audio.sample_rate=22050"):
        assert words in lines[0], words
    assert not list((tmp_path / "runs").rglob("metrics.jsonl"))


def test_the_declared_rates_are_compared():
    check_sample_rate("audio", "audio", MEL, {"sample_rate": 22050}, 22050)  # agrees
    check_sample_rate("audio", "audio", MEL, {}, 8000)  # its default, keypad's rate
    check_sample_rate("audio", "audio", MEL, {}, None)  # the data declares no rate
    with pytest.raises(ConfigError, match=r"16000 Hz.*'sample_rate'.*8000 Hz"):
        check_sample_rate("sound", "audio", MEL, {"sample_rate": 16000}, 8000)
    # resnet18's default STFT front end is the same at any rate; a mel front end is not
    check_sample_rate("audio", "audio", "resnet18", {}, 8000)
    mel = {"frontend": {"kind": "mel", "n_fft": 512, "sample_rate": 16000}}
    with pytest.raises(ConfigError, match=r"'frontend.sample_rate'.*22050 Hz"):
        check_sample_rate("audio", "audio", "resnet18", mel, 22050)
    mel["frontend"]["sample_rate"] = 22050
    check_sample_rate("audio", "audio", "resnet18", mel, 22050)


def test_datasets_declare_their_rate_and_a_carved_split_keeps_it(tmp_path):
    from balgrad.data.readers._cremad import CremaDDataset
    from balgrad.data.readers._keypad import KeypadConfig, KeypadDataset

    cremad = CremaDDataset(cremad_folder(tmp_path / "c"), "train", seconds=0.2, image_size=24)
    train, val = train_val_split(cremad, 0.2, 0)
    assert declared_sample_rate(cremad) == declared_sample_rate(train) == 22050
    assert declared_sample_rate(val) == 22050
    assert declared_sample_rate(object()) is None
    # keypad generated at 16 kHz: its registered mel-tower options (8 kHz) no longer fit
    keypad = KeypadDataset("test", config=KeypadConfig(n_train=20, n_test=20, sample_rate=16000))
    assert declared_sample_rate(keypad) == 16000
    options = DATASETS.metadata("keypad")["backbone_defaults"][MEL]
    check_sample_rate("audio", "audio", MEL, options, 8000)
    with pytest.raises(ConfigError, match="audio.sample_rate=16000"):
        check_sample_rate("audio", "audio", MEL, options, declared_sample_rate(keypad))
