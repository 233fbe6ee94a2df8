"""The Trainer drives G-Blend's estimate (``Strategy.held_out_fraction``,
``trains_copies``): the held-out part is split off once, by seed, and never trained on;
the estimate gets it, the training part and an optimizer like the run's, at the epochs
the strategy asks for; ``balgrad compare`` trains G-Blend at three modalities."""

from __future__ import annotations

import json

import torch
from cli_children import TINY
from toy_components import toy_trainer

from balgrad.cli import main
from balgrad.strategies._gblend import GBlend
from balgrad.train._trainer import TrainSettings


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


def test_the_trainer_holds_out_a_seeded_part_never_trained_on_and_estimates_on_it(tmp_path):
    settings = TrainSettings(epochs=2, batch_size=16, lr=1e-2, progress=False, seed=3)
    strategy = RecordingGBlend(super_epoch=2, estimate_epochs=1, held_out_fraction=0.25)
    trainer = toy_trainer(tmp_path, strategy, settings)
    train, held = trainer.train_set, trainer.held_out_set
    # 96 samples, a quarter of each class held out; the two parts cover them once
    assert len(held) == 24 and len(train) == 72
    assert sorted([*train.indices, *held.indices]) == list(range(96))
    stepped: list[int] = []
    original = trainer._train_step

    def step(batch):
        stepped.append(len(batch.target))
        return original(batch)

    trainer._train_step = step
    result = trainer.fit()
    # the epochs' steps saw the training part only, 72 samples an epoch
    assert sum(stepped) == 2 * 72
    # one estimate in two epochs (S = 2), on 72 training and 24 held-out samples, with the
    # run's optimizer (Adam, the TrainSettings default)
    assert strategy.estimates == [(0, 72, 24, torch.optim.Adam)]
    assert all("train_weight_fused" in row for row in result.history)
    again = toy_trainer(tmp_path / "again", GBlend(held_out_fraction=0.25), settings)
    assert list(again.held_out_set.indices) == list(held.indices)  # by seed


#: keypad: three modalities (image, audio, text), 60 training samples
KEYPAD = ["--dataset", "keypad", "--dataset-option", "n_train=60", "--dataset-option", "n_test=20"]


def test_compare_trains_gblend_at_three_modalities(tmp_path):
    """(Two modalities: the Trainer above.)"""
    argv = ["compare", *TINY, *KEYPAD, "--methods", "gblend"]
    argv += ["--epochs", "1", "--method-option", "gblend.estimate_epochs=1"]
    argv += ["--out", str(tmp_path), "--name", "c", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    rows = [json.loads(r) for r in (tmp_path / "c" / "gblend" / "seed0" / "epochs.jsonl").open()]
    assert [r["epoch"] for r in rows] == [0]
    assert "G-Blend" in (tmp_path / "c" / "table.md").read_text()
    weights = [k for k in rows[0] if k.startswith("train_weight_")]
    assert len(weights) == 4  # image, audio, text and the fused head
