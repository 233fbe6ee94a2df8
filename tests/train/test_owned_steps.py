"""The Trainer drives a strategy that takes its own optimizer steps (MLA: one per modality
per batch, ``Strategy.train_step``), and a run scores its test-time fusion
(``Strategy.fuse``): at the end of training and again under ``balgrad evaluate``, which
rebuilds the method and its options from the run's config."""

from __future__ import annotations

import json

import pytest
from cli_children import TINY
from toy_components import toy_trainer

from balgrad.cli import main
from balgrad.config import build_config, load_run_config
from balgrad.evaluate._metrics import compute_scores
from balgrad.experiment import Experiment
from balgrad.strategies import create_strategy
from balgrad.train._trainer import TrainSettings


def test_the_trainer_lets_mla_take_one_step_per_modality_per_batch(tmp_path):
    trainer = toy_trainer(
        tmp_path, create_strategy("mla"), TrainSettings(epochs=1, batch_size=48, progress=False)
    )
    steps = []
    step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: (steps.append(1), step(*a, **k))[1]
    result = trainer.fit()
    assert trainer.strategy.step == 2  # 96 samples in batches of 48
    assert len(steps) == 2 * 2  # two modalities: two optimizer steps per batch
    assert all("train_loss_fused" in row and "train_loss_image" in row for row in result.history)


@pytest.mark.slow
def test_compare_and_evaluate_score_the_fusion_not_the_fused_head(tmp_path):
    """Fixed weights (1, 0): MLA's prediction is the image logits, so eval.json's full
    accuracy is the image tower's, after training and after ``balgrad evaluate``."""
    config = tmp_path / "mla.yaml"
    config.write_text(
        "method_options:\n  mla: {fusion: fixed, fusion_weights: [1.0, 0.0]}\n", encoding="utf-8"
    )
    base = ["--out", str(tmp_path), "--name", "c", "--cache-dir", str(tmp_path / "cache")]
    argv = ["compare", "--config", str(config), *TINY, "--methods", "mla", "--epochs", "1"]
    assert main([*argv, *base]) == 0
    run = tmp_path / "c"
    cfg = build_config(load_run_config(run / "config.yaml").model_dump(), "config.yaml")
    with Experiment(cfg, run, write_config=False) as exp:
        model, pipeline = exp.load_trained("mla", 0)
        ev = exp.evaluator(pipeline, exp.data.test)
        pred = ev.predict(model.eval(), None)
    image = compute_scores(pred.unimodal["image"], pred.target, model.task, ["accuracy"])
    scored = json.loads((run / "mla" / "seed0" / "eval.json").read_text())
    assert scored["conditions"]["full"]["accuracy"] == pytest.approx(image["accuracy"])
    assert main(["evaluate", str(run), "--no-sweep"]) == 0
    again = json.loads((run / "mla" / "seed0" / "eval.json").read_text())
    assert again["conditions"]["full"]["accuracy"] == pytest.approx(image["accuracy"])
