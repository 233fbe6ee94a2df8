"""The two example scripts run as a user would run them (a few steps here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


FEW_STEPS = ("--steps", "2", "--logging-steps", "2", "--batch-size", "16", "--eval-examples", "64")


def run_example(name: str) -> dict[str, float]:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(FEW_STEPS))


def test_the_lightning_example_trains_and_reports(capsys):
    pytest.importorskip("lightning", reason="needs the lightning extra")
    out = run_example("lightning_balgrad")
    assert {"train/cos_task_kl", "train/weight_image", "val/text_accuracy"} <= set(out)
    assert 0 <= out["val/image_accuracy"] <= 100
    assert "train/cos_task_kl" in capsys.readouterr().out


def test_the_hf_trainer_example_trains_and_reports(capsys):
    pytest.importorskip("accelerate", reason="needs the hf extra")
    out = run_example("hf_trainer_balgrad")
    assert {"cos_task_kl", "weight_image", "eval_text_accuracy"} <= set(out)
    assert 0 <= out["eval_image_accuracy"] <= 100
    assert "cos_task_kl" in capsys.readouterr().out
