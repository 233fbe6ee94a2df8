"""The Trainer drives the epoch-start pass (``Strategy.needs_epoch_pass``, PMR's class
prototypes): once per epoch, over its own seeded shuffle of the training data, leaving the
epoch's data order and the global RNG as they are; a resumed run continues as the
uninterrupted one; ``balgrad compare`` trains PMR."""

from __future__ import annotations

import json

import torch
from cli_children import TINY
from toy_components import toy_trainer

from balgrad.cli import main
from balgrad.strategies import create_strategy
from balgrad.strategies._joint import Joint
from balgrad.train._trainer import TrainSettings


def settings(epochs: int) -> TrainSettings:
    return TrainSettings(epochs=epochs, batch_size=16, lr=1e-2, progress=False)


class PassJoint(Joint):
    """Joint training with an epoch-start pass that reads every batch it is given and
    draws from the global RNG: what a careless pass could disturb."""

    name = "pass_joint"
    needs_epoch_pass = True

    def __init__(self):
        super().__init__()
        self.passes: list[tuple[int, int, bool]] = []

    def epoch_pass(self, model, batches):
        seen = sum(len(target) for _, target in batches)
        torch.rand(100)
        self.passes.append((self.epoch, seen, model.training))
        return {}


def test_the_pass_leaves_the_epochs_data_order_and_the_rng_as_they_are(tmp_path):
    plain = toy_trainer(tmp_path / "plain", Joint(), settings(2))
    plain.fit()
    rng_plain = torch.get_rng_state()
    passing = toy_trainer(tmp_path / "pass", PassJoint(), settings(2))
    passing.fit()
    rng_passing = torch.get_rng_state()
    # the same operations on the same batches in the same order: the same weights
    for (k, a), b in zip(plain.model.state_dict().items(), passing.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(rng_plain, rng_passing)
    # once per epoch, over the whole training set (96 samples), the model in eval mode
    assert passing.strategy.passes == [(0, 96, False), (1, 96, False)]


def test_the_trainer_prepares_pmr_every_epoch(tmp_path):
    trainer = toy_trainer(tmp_path, create_strategy("pmr"), settings(3))
    result = trainer.fit()
    assert trainer.strategy.computations == 3 and trainer.strategy.prepared_epoch == 2
    assert all(row["train_modulated"] == 1.0 for row in result.history)
    assert all("train_loss_proto_image" in row for row in result.history)


def test_a_resumed_pmr_run_continues_as_the_uninterrupted_one(tmp_path):
    def trainer(folder, epochs):
        return toy_trainer(folder, create_strategy("pmr", momentum_coef=0.3), settings(epochs))

    straight = trainer(tmp_path / "a", 3)
    straight.fit()
    trainer(tmp_path / "b", 1).fit()
    resumed = trainer(tmp_path / "b", 3)
    result = resumed.fit(resume=True)
    assert len(result.history) == 3
    # the same operations on the same numbers in this process (the checkpoint is exact)
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    s, r = straight.strategy, resumed.strategy
    assert (r.computations, r.prepared_epoch, r.step) == (s.computations, s.prepared_epoch, s.step)
    for m in ("image", "text"):
        assert torch.equal(s.prototypes[m], r.prototypes[m])


def test_compare_trains_pmr(tmp_path):
    argv = ["compare", *TINY, "--methods", "joint", "pmr", "--epochs", "2"]
    argv += ["--out", str(tmp_path), "--name", "c", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    rows = [json.loads(r) for r in (tmp_path / "c" / "pmr" / "seed0" / "epochs.jsonl").open()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(r["train_modulated"] == 1.0 for r in rows)
    assert "PMR" in (tmp_path / "c" / "table.md").read_text()
