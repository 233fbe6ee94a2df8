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


@pytest.mark.parametrize(
    "example, package, extra, train_prefix, eval_prefix",
    [
        ("lightning_balgrad", "lightning", "lightning", "train/", "val/"),
        ("hf_trainer_balgrad", "accelerate", "hf", "", "eval_"),
    ],
)
def test_the_example_trains_and_prints_the_statistics(
    capsys, example, package, extra, train_prefix, eval_prefix
):
    pytest.importorskip(package, reason=f"needs the {extra} extra: pip install balgrad[{extra}]")
    out = run_example(example)
    names = {f"{train_prefix}cos_task_kl", f"{train_prefix}weight_image"}
    assert names | {f"{eval_prefix}text_accuracy"} <= set(out)
    assert 0 <= out[f"{eval_prefix}image_accuracy"] <= 100
    assert f"{train_prefix}cos_task_kl" in capsys.readouterr().out
