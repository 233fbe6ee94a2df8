"""The Trainer drives G-Blend's estimate (``Strategy.held_out_fraction``,
``trains_copies``): the held-out part is split off once, by seed, and never trained on;
the estimate gets it, the training part and an optimizer like the run's, at the epochs
the strategy asks for; ``balgrad compare`` trains G-Blend at two and three modalities."""

from __future__ import annotations

import json

import pytest
import torch
from cli_children import TINY
from toy_components import toy_trainer

from balgrad.cli import main
from balgrad.strategies.gblend import GBlend
from balgrad.train.trainer import TrainSettings


class RecordingGBlend(GBlend):
    """G-Blend that records what every estimate was handed."""

    def __init__(self, **options):
        super().__init__(**options)
        self.estimates: list[tuple[int, int, int, type]] = []

    def estimate(self, model, train, held_out, make_optimizer):
        n_train = sum(len(y) for _, y in train)
        n_held = sum(len(y) for _, y in held_out)
        kind = type(make_optimizer([torch.nn.Parameter(torch.zeros(1))]))
        self.estimates.append((self.epoch, n_train, n_held, kind))
        return super().estimate(model, train, held_out, make_optimizer)


def test_the_trainer_holds_out_a_seeded_part_and_estimates_every_super_epoch(tmp_path):
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, progress=False, seed=3)
    strategy = RecordingGBlend(super_epoch=2, estimate_epochs=1, held_out_fraction=0.25)
    trainer = toy_trainer(tmp_path, strategy, settings)
    train, held = trainer.train_set, trainer.held_out_set
    # 96 samples, a quarter of each class held out; the two parts cover them once
    assert len(held) == 24 and len(train) == 72
    assert sorted([*train.indices, *held.indices]) == list(range(96))
    result = trainer.fit()
    # estimates at epochs 0 and 2 (S = 2), on 72 training and 24 held-out samples, with
    # the run's optimizer (Adam, the TrainSettings default)
    assert strategy.estimates == [(0, 72, 24, torch.optim.Adam), (2, 72, 24, torch.optim.Adam)]
    assert len(result.history) == 3
    assert all("train_weight_fused" in row for row in result.history)
    again = toy_trainer(tmp_path / "again", GBlend(held_out_fraction=0.25), settings)
    assert list(again.held_out_set.indices) == list(held.indices)  # by seed


def test_the_held_out_part_is_never_trained_on(tmp_path):
    settings = TrainSettings(epochs=1, batch_size=16, lr=1e-2, progress=False)
    strategy = GBlend(estimate_epochs=1, held_out_fraction=0.25)
    trainer = toy_trainer(tmp_path, strategy, settings)
    held = set(int(i) for i in trainer.held_out_set.indices)
    stepped: list[torch.Tensor] = []
    original = trainer._train_step

    def step(batch):
        stepped.append(batch.target.clone())
        return original(batch)

    trainer._train_step = step
    trainer.fit()
    assert sum(len(t) for t in stepped) == 72  # the training part only
    assert held and len(held) == 24


#: keypad: three modalities (image, audio, text), 60 training samples
KEYPAD = ["--dataset", "keypad", "--dataset-option", "n_train=60", "--dataset-option", "n_test=20"]


@pytest.mark.parametrize("three", [False, True], ids=["M2", "M3"])
def test_compare_trains_gblend(tmp_path, three):
    argv = ["compare", *TINY, *(KEYPAD if three else []), "--methods", "gblend"]
    argv += ["--epochs", "2", "--method-option", "gblend.estimate_epochs=1"]
    argv += ["--method-option", "gblend.super_epoch=1"]
    argv += ["--out", str(tmp_path), "--name", "c", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    rows = [json.loads(r) for r in (tmp_path / "c" / "gblend" / "seed0" / "epochs.jsonl").open()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert "G-Blend" in (tmp_path / "c" / "table.md").read_text()
    weights = [k for k in rows[0] if k.startswith("train_weight_")]
    assert len(weights) == (4 if three else 3)
