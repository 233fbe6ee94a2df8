"""A run folder written by balgrad 0.1 (tests/fixtures/legacy_run: flat image/text keys in
config.yaml, no protocol.modalities in eval.json, weights of TwoTowerModel) still reports,
re-scores to the scores it recorded, and resumes, with the current code."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from balgrad.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_run"
#: the command that wrote the fixture (its README), less the folders
COMMAND = [
    "compare", "--config", "digits-scratch", "--epochs", "3", "--lr", "0.01",
    "--batch-size", "32", "--methods", "joint", "--no-sweep", "--no-progress",
    "--embed-dim", "16", "--backbone-option", "image.width=4",
    "--backbone-option", "image.out_dim=8", "--backbone-option", "text.out_dim=16",
    "--backbone-option", "text.embed_dim=16", "--backbone-option", "text.hidden=16",
    "--dataset-option", "n_train=500", "--dataset-option", "n_test=100",
    "--image-noise", "0.4", "--text-noise", "0.3",
]  # fmt: skip


@pytest.fixture
def old_run(tmp_path):
    """The fixture copied, its cache folder moved to tmp_path (a resume-neutral field)."""
    run = tmp_path / "legacy_run"
    shutil.copytree(FIXTURE, run)
    config = run / "config.yaml"
    text = config.read_text()
    assert "image_noise: 0.4" in text and "modalities: {}" in text  # the 0.1 spelling
    lines = [
        f"cache_dir: {tmp_path / 'cache'}" if line.startswith("cache_dir:") else line
        for line in text.splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")
    return run


def conditions(run: Path) -> dict:
    return json.loads((run / "joint" / "seed0" / "eval.json").read_text())["conditions"]


def test_an_old_run_folder_reports_rescores_and_resumes(old_run, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # its own files: read silently
        assert main(["report", str(old_run)]) == 0
        assert (old_run / "table.md").read_text() == (FIXTURE / "table.md").read_text()

        recorded = conditions(old_run)
        assert main(["evaluate", str(old_run)]) == 0
    rescored = json.loads((old_run / "joint" / "seed0" / "eval.json").read_text())
    # the one schema now; the noise levels are those of the flat keys it was trained with
    assert rescored["protocol"]["modalities"] == {"image": "image", "text": "text"}
    assert rescored["protocol"]["noise"] == {"image": 0.4, "text": 0.3}
    assert "image_noise" not in rescored["protocol"]
    assert rescored["conditions"].keys() == recorded.keys()
    for role, scores in recorded.items():
        assert scores["condition"] == rescored["conditions"][role]["condition"]
        assert rescored["conditions"][role]["accuracy"] == pytest.approx(
            scores["accuracy"], abs=1e-6
        ), role
    assert recorded["full"]["accuracy"] > 30  # a trained model, not a constant guess
    assert (old_run / "table.md").read_text() == (FIXTURE / "table.md").read_text()

    # the original command resumes it (the finished run is skipped); config.yaml is
    # rewritten with the resolved modalities
    folder = ["--out", str(old_run.parent), "--name", old_run.name]
    folder += ["--cache-dir", str(old_run.parent / "cache")]
    capsys.readouterr()
    assert main([*COMMAND, *folder, "--resume"]) == 0, capsys.readouterr().err
    written = (old_run / "config.yaml").read_text()
    assert "image_noise" not in written and "modalities:\n  image:\n    kind: image" in written
    # and a changed setting is refused by its current name
    assert main([*COMMAND[:-1], "0.5", *folder, "--resume"]) == 2
    assert "modalities.text.noise: 0.3 → 0.5" in capsys.readouterr().err
