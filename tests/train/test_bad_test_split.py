"""A corrupt test-split record stops `balgrad compare` with a clear error (exit 2, the
file and record named, no traceback); with the data layer's test-split validation, it
does so before any training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from balgrad.cli import main
from balgrad.data._io import DiskDataset

FIXTURE = Path(__file__).parents[1] / "fixtures" / "generic"


def run_on_corrupt_test_image(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    (data / "images" / "test_1.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    argv = [
        "compare", "--dataset", "generic", "--data-dir", str(data),
        "--methods", "joint", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.3",
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


@pytest.mark.skipif(
    not hasattr(DiskDataset, "validate"),
    reason="needs the data layer's test-split validation (DiskDataset.validate, `dataio`)",
)
def test_a_corrupt_test_image_stops_the_run_before_training(tmp_path, capsys):
    code, err, run = run_on_corrupt_test_image(tmp_path, capsys)
    assert code == 2 and "test_1.png" in err
    assert not list(run.glob("*/seed0/checkpoint*.pt"))  # nothing was trained
    assert not (run / "run.lock").exists()
