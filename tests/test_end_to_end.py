"""`balgrad compare` / `evaluate` / `train --resume` on a very small built-in configuration."""

import json
import shutil

import pytest

from balgrad.cli import main

TINY = [
    "--image-backbone",  # the small scratch towers keep this test fast
    "cnn",
    "--text-backbone",
    "small",
    "--dataset-option",
    "n_train=240",
    "--dataset-option",
    "n_test=120",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--no-progress",
    "--backbone-option",
    "image.width=4",
    "--embed-dim",
    "16",
]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    argv = [
        "compare",
        *TINY,
        "--methods",
        "joint",
        "balgrad",
        "--seeds",
        "0",
        "1",
        "--out",
        str(out),
        "--name",
        "e2e",
        "--cache-dir",
        str(out / "cache"),
    ]
    assert main(argv) == 0
    return out / "e2e"


def test_compare_writes_the_table_in_three_formats_and_the_gap_plot(compared):
    for name in (
        "table.md",
        "table.csv",
        "table.json",
        "gap_vs_ratio.png",
        "results.json",
        "config.yaml",
    ):
        assert (compared / name).stat().st_size > 0, name
    md = (compared / "table.md").read_text()
    assert "| Condition | Baseline | BalGrad |" in md and "Missing ΔGap" in md and "±" in md


def test_table_cells_are_the_mean_of_the_seeds_eval_files(compared):
    table = json.loads((compared / "table.json").read_text())["table"]
    for method in ("joint", "balgrad"):
        evals = [
            json.loads((compared / method / f"seed{s}" / "eval.json").read_text()) for s in (0, 1)
        ]
        full = [e["conditions"]["full"]["accuracy"] for e in evals]
        gap = [
            abs(
                e["conditions"]["missing_image"]["accuracy"]
                - e["conditions"]["missing_text"]["accuracy"]
            )
            for e in evals
        ]
        assert table[method]["full"]["mean"] == pytest.approx(sum(full) / 2)
        assert table[method]["missing_gap"]["mean"] == pytest.approx(sum(gap) / 2)
        assert len(evals[0]["sweep"]) == 11


def test_evaluate_reproduces_the_saved_models_scores(compared, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(compared, run)
    config_before = (run / "config.yaml").read_text()
    before = json.loads((run / "balgrad" / "seed1" / "eval.json").read_text())["conditions"]
    assert main(["evaluate", str(run), "--methods", "balgrad", "--no-sweep", "--no-progress"]) == 0
    after = json.loads((run / "balgrad" / "seed1" / "eval.json").read_text())
    for cond in before:
        assert after["conditions"][cond]["accuracy"] == pytest.approx(before[cond]["accuracy"]), (
            cond
        )
    assert "sweep" not in after and after["protocol"]["missing"] == "input"

    # another protocol setting is recorded with the scores; config.yaml stays the training record
    argv = [
        "evaluate",
        str(run),
        "--methods",
        "balgrad",
        "--missing",
        "embedding",
        "--no-sweep",
        "--no-progress",
    ]
    assert main(argv) == 0
    again = json.loads((run / "balgrad" / "seed1" / "eval.json").read_text())
    assert again["protocol"]["missing"] == "embedding"
    assert (run / "config.yaml").read_text() == config_before


def test_train_resumes_an_interrupted_run(tmp_path):
    common = [
        "train",
        "--method",
        "agm",
        *TINY,
        "--out",
        str(tmp_path),
        "--name",
        "r",
        "--no-sweep",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main([*common, "--epochs", "2"]) == 0
    seed_dir = tmp_path / "r" / "agm" / "seed0"
    (seed_dir / "eval.json").unlink()  # as if it stopped in epoch 2: only epoch 1's
    (seed_dir / "checkpoint.pt").unlink()  # checkpoint (now checkpoint.prev.pt) is left
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    rows = (seed_dir / "epochs.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1]


def test_resume_without_a_run_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--name", "nothing", "--resume"]) == 2
    assert "nothing" in capsys.readouterr().err
