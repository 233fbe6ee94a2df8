"""`balgrad compare --dataset <name> --data-dir tests/fixtures/<name>` runs end to end
for each of the paper's datasets, in their released formats."""

import json
from pathlib import Path

import pytest

from balgrad.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
HEADLINE = {
    "food101": "accuracy",
    "hateful_memes": "auroc",
    "mmimdb": "f1_macro",
    "memotion": "accuracy",
    "cub": "accuracy",
    "generic": "accuracy",
}


@pytest.mark.parametrize("name", sorted(HEADLINE))
def test_compare_runs_on_the_fixture(tmp_path, name):
    argv = [
        "compare", "--dataset", name, "--data-dir", str(FIXTURES / name),
        "--methods", "joint", "balgrad", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.3",
        "--image-backbone", "cnn", "--text-backbone", "small",
        "--backbone-option", "image.width=4", "--backbone-option", "image.image_size=16",
        "--embed-dim", "8", "--no-sweep", "--no-progress",
        "--out", str(tmp_path), "--name", "run", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert main(argv) == 0
    run = tmp_path / "run"
    ev = json.loads((run / "balgrad" / "seed0" / "eval.json").read_text())
    assert ev["primary_metric"] == HEADLINE[name]
    assert set(ev["conditions"]) == {
        "full",
        "missing_image",
        "missing_text",
        "noisy_image",
        "noisy_text",
    }
    assert HEADLINE[name] in ev["conditions"]["full"]
    assert (run / "table.md").read_text().count("|") > 20
