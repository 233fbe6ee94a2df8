"""The Trainer drives InfoReg's epoch-start hook (the snapshot θ̃, the closed trace, k):
once per epoch; a run resumed from its checkpoint continues as the uninterrupted one."""

from __future__ import annotations

import torch
from toy_components import toy_trainer

from balgrad.strategies import create_strategy
from balgrad.train._trainer import TrainSettings


def settings(epochs: int) -> TrainSettings:
    return TrainSettings(epochs=epochs, batch_size=16, lr=1e-2, progress=False)


def test_the_trainer_prepares_inforeg_every_epoch(tmp_path):
    trainer = toy_trainer(tmp_path, create_strategy("inforeg"), settings(2))
    result = trainer.fit()
    s = trainer.strategy
    assert s.prepared_epoch == 1 and s.traces.shape == (1, 2)  # epoch 0 closed
    assert (s.traces > 0).all() and s.trace_steps == 6  # 96 samples / 16: epoch 1 open
    assert all("train_coef_image" in row and "train_rate_text" in row for row in result.history)
    assert any(row["train_regulated"] > 0 for row in result.history)


def test_a_resumed_inforeg_run_continues_as_the_uninterrupted_one(tmp_path):
    def trainer(folder, epochs):
        return toy_trainer(folder, create_strategy("inforeg", semantics="paper"), settings(epochs))

    straight = trainer(tmp_path / "a", 2)
    straight.fit()
    trainer(tmp_path / "b", 1).fit()
    resumed = trainer(tmp_path / "b", 2)
    assert len(resumed.fit(resume=True).history) == 2
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    s, r = straight.strategy, resumed.strategy
    assert (r.prepared_epoch, r.step, r.trace_steps) == (s.prepared_epoch, s.step, s.trace_steps)
    assert torch.equal(s.traces, r.traces) and torch.equal(s.rates, r.rates)
    for m in ("image", "text"):
        for x, y in zip(s.snapshot[m], r.snapshot[m]):
            assert torch.equal(x, y)
