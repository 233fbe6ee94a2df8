"""An undefined score (AUROC of a split with one class, any score of an empty split) is
NaN, null in the run folder's files and "n/a" in the tables, with a warning; model
selection falls back to a defined metric and says which."""

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch

from balgrad.cli import main
from balgrad.evaluate._metrics import compute_scores
from balgrad.train._trainer import selection_metric

FIXTURE = Path(__file__).parents[1] / "fixtures" / "generic"


def test_auroc_of_one_class_and_scores_of_an_empty_split_are_nan():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.2, 0.1]])
    one_class = compute_scores(
        logits, torch.zeros(3, dtype=torch.long), "single_label", ["auroc", "accuracy"]
    )
    assert math.isnan(one_class["auroc"])
    assert one_class["accuracy"] == pytest.approx(200 / 3)
    both = compute_scores(logits, torch.tensor([1, 0, 0]), "single_label", ["auroc"])
    assert both["auroc"] == pytest.approx(100.0)
    empty = compute_scores(
        torch.zeros(0, 3), torch.zeros(0, 3), "multi_label", ["f1_macro", "f1_micro"]
    )
    assert all(math.isnan(v) for v in empty.values())


def test_selection_falls_back_to_the_first_defined_fused_metric(caplog):
    row = {"val_auroc": math.nan, "val_image_accuracy": 50.0, "val_accuracy": 60.0}
    with caplog.at_level(logging.WARNING, logger="balgrad.train"):
        assert selection_metric(row, "auroc", ("image", "text")) == "accuracy"
    assert (
        "validation auroc is undefined" in caplog.text and "by validation accuracy" in caplog.text
    )
    pair = ("image", "text")
    assert selection_metric({"val_auroc": 70.0, "val_accuracy": 60.0}, "auroc", pair) == "auroc"


def one_class_dataset(root: Path) -> Path:
    """The generic fixture with validation and test records of the class cat only."""
    shutil.copytree(FIXTURE / "images", root / "images")
    shutil.copy(FIXTURE / "train.jsonl", root / "train.jsonl")
    for split in ("val", "test"):
        rows = [
            {"image": f"images/train_{i}.png", "text": f"a photo #{i}", "label": "cat"}
            for i in range(4)
        ]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_a_run_on_one_class_splits_reports_na_and_selects_by_accuracy(tmp_path, caplog):
    data = one_class_dataset(tmp_path / "data")
    argv = [
        "compare", "--dataset", "generic", "--data-dir", str(data),
        "--dataset-option", "primary_metric=auroc", "--dataset-option", "metrics=[auroc, accuracy]",
        "--methods", "joint", "--epochs", "2", "--batch-size", "4",
        "--image-backbone", "cnn", "--text-backbone", "small",
        "--backbone-option", "image.width=4", "--backbone-option", "image.image_size=16",
        "--embed-dim", "8", "--no-sweep", "--no-progress",
        "--out", str(tmp_path), "--name", "run", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    run = tmp_path / "run"
    ev = json.loads((run / "joint" / "seed0" / "eval.json").read_text())  # strict JSON: no NaN
    assert ev["primary_metric"] == "auroc" and ev["selected_by"] == "accuracy"
    assert ev["conditions"]["full"]["auroc"] is None
    assert math.isfinite(ev["best_val"])
    epochs = [json.loads(line) for line in (run / "joint" / "seed0" / "epochs.jsonl").open()]
    assert [e["val_auroc"] for e in epochs] == [None, None]
    assert ev["best_val"] == max(e["val_accuracy"] for e in epochs)
    assert "| Full | n/a |" in (run / "table.md").read_text()
    full = next(r for r in csv.reader((run / "table.csv").open()) if r[0] == "full")
    assert full[1] == "n/a"
    assert json.loads((run / "table.json").read_text())["table"]["joint"]["full"]["mean"] is None
    assert "NaN" not in (run / "results.json").read_text()
    assert "picked by validation accuracy" in caplog.text
    assert "auroc of joint seed 0 is undefined on the test split" in caplog.text
    assert main(["report", str(run)]) == 0  # and the report reads the nulls back
