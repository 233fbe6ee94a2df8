"""The example scripts run as a user would run them (a few steps here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


FEW_STEPS = ("--steps", "2", "--logging-steps", "2", "--batch-size", "16", "--eval-examples", "64")


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "example, package, extra, train_prefix, eval_prefix, full_marks",
    [
        ("lightning_balgrad", "lightning", "lightning", "train/", "val/", 100),  # percent
        ("hf_trainer_balgrad", "accelerate", "hf", "", "eval_", 1),  # the Trainer's fractions
    ],
)
def test_the_example_trains_and_prints_the_statistics(
    capsys, example, package, extra, train_prefix, eval_prefix, full_marks
):
    pytest.importorskip(package, reason=f"needs the {extra} extra: pip install balgrad[{extra}]")
    out = load_example(example).main(list(FEW_STEPS))
    names = {f"{train_prefix}cos_task_kl", f"{train_prefix}weight_image"}
    assert names | {f"{eval_prefix}text_accuracy"} <= set(out)
    for key in ("accuracy", "image_accuracy", "text_accuracy"):
        assert 0 <= out[f"{eval_prefix}{key}"] <= full_marks
    assert f"{train_prefix}cos_task_kl" in capsys.readouterr().out


def test_the_own_loop_example_trains_an_audio_visual_model(capsys):
    example = load_example("own_loop_torchrun")
    inputs, target = example.synthetic_batch(6, torch.Generator().manual_seed(0), torch.float32)
    assert {m: x.shape for m, x in inputs.items()} == {
        "audio": (6, 1, example.MELS, example.TIME),
        "visual": (6, example.FRAMES, 3, example.SIZE, example.SIZE),
    }
    torch.manual_seed(0)
    start = [
        p.detach().clone()
        for p in example.MultimodalModel(
            {"audio": example.AudioNet(), "visual": example.VisualNet()},
            num_classes=example.CLASSES,
            embed_dim=32,
        ).parameters()
    ]
    params = example.main(["--steps", "2"])
    assert len(params) == len(start)
    assert all(not torch.equal(p, q) for p, q in zip(params, start))  # every tensor trained
    printed = capsys.readouterr().out
    assert "balgrad: 1 process(es)" in printed
    assert "audio: L = " in printed and "visual: L = " in printed
