"""A corrupt test-split record stops `balgrad compare` with a clear error (exit 2, the
file and record named, no traceback), before any training, and releases the run lock."""

from __future__ import annotations

import shutil
from pathlib import Path

from balgrad.cli import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "generic"


def run_on_corrupt_test_image(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    (data / "images" / "test_1.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    argv = [
        "compare", "--dataset", "generic", "--data-dir", str(data),
        "--methods", "joint", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.3",
        "--image-backbone", "cnn", "--text-backbone", "small",
        "--backbone-option", "image.width=4", "--backbone-option", "image.image_size=16",
        "--embed-dim", "8", "--no-sweep", "--no-progress",
        "--out", str(tmp_path), "--name", "run", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    code = main(argv)
    return code, capsys.readouterr().err, tmp_path / "run"


def test_a_corrupt_test_image_is_a_clear_error(tmp_path, capsys):
    code, err, _ = run_on_corrupt_test_image(tmp_path, capsys)
    assert code == 2
    assert "balgrad: error:" in err and "test_1.png" in err and "Traceback" not in err


def test_a_corrupt_test_image_stops_the_run_before_training(tmp_path, capsys):
    code, err, run = run_on_corrupt_test_image(tmp_path, capsys)
    assert code == 2 and "test_1.png" in err
    assert not list(run.glob("*/seed0/checkpoint*.pt"))  # nothing was trained
    assert not (run / "run.lock").exists()
