"""The framework-free pieces of the integrations: the statistics meter (floats and 0-d
tensors), batch unpacking, the scaler hand-over and the epoch-end hook."""

from __future__ import annotations

import pytest
import torch

from balgrad.errors import ConfigError, DataError
from balgrad.integrations._common import (
    StatsMeter,
    epoch_end,
    reduces_own_gradients,
    strategy_backward,
    unpack_batch,
)
from balgrad.strategies import Strategy, create_strategy


def test_the_meter_averages_floats_and_tensors_over_the_interval():
    meter = StatsMeter()
    meter.add({"a": 1.0, "b": torch.tensor(2.0)})
    meter.add({"a": 3.0, "b": torch.tensor(4.0)})
    meter.add({"a": 5.0, "b": torch.tensor(9.0), "c": torch.tensor(7.0)})  # a new statistic
    meter.add({"a": torch.tensor(7.0), "b": torch.tensor(1.0)})  # a float turned tensor
    names, means = meter.flush("cpu")
    got = dict(zip(names, means.tolist()))
    assert got == pytest.approx({"a": 16 / 4, "b": 16 / 4, "c": 7.0})
    assert not meter  # a new interval starts empty
    meter.add({"a": 2.0})
    assert dict(zip(*meter.flush("cpu"))) == {"a": pytest.approx(2.0)}


def test_batches_unpack_from_dicts_tuples_and_balgrad_batches():
    x, t, y = torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([0, 1])
    drop = torch.tensor([True, False])
    assert unpack_batch({"image": x, "text": t, "labels": y})[2] is y
    assert unpack_batch({"image": x, "text": t, "labels": y, "drop_text": drop})[3] == {
        "drop_text": drop
    }
    assert unpack_batch((x, t, y))[0] is x

    class Batch:  # the attributes of balgrad.data.pipeline.Batch
        image, text, target, drop_image, drop_text = x, t, y, drop, None

    assert unpack_batch(Batch())[3] == {"drop_image": drop}
    with pytest.raises(DataError, match="labels"):
        unpack_batch({"image": x, "text": t})
    with pytest.raises(DataError, match="expected a dict"):
        unpack_batch([x, t])


class _Fixed(Strategy):
    """Writes nothing; records how backward was called."""

    def backward(self, model, output, target, *, scaler=None):
        self.scaler = scaler
        return {}


class _NoScaler(Strategy):
    def backward(self, model, output, target):
        return {}


def test_the_scaler_goes_to_strategies_that_take_one_and_fp16_is_refused_otherwise():
    scaler = torch.amp.GradScaler("cpu")
    strategy = _Fixed()
    strategy_backward(strategy, None, None, None, scaler)
    assert strategy.scaler is scaler
    strategy_backward(_NoScaler(), None, None, None, torch.amp.GradScaler("cpu", enabled=False))
    with pytest.raises(ConfigError, match="fp16"):
        strategy_backward(_NoScaler(), None, None, None, scaler)


def test_strategies_reduce_their_own_gradients_unless_they_say_otherwise():
    assert reduces_own_gradients(create_strategy("balgrad"))
    fast = _Fixed()
    fast.reduces_own_gradients = False
    assert not reduces_own_gradients(fast)


def test_an_lr_change_at_epoch_end_survives_the_next_scheduler_step():
    strategy = create_strategy("mslr", mode="dynamic")
    params = {m: torch.nn.Parameter(torch.zeros(1)) for m in ("image", "text", "head")}
    groups = [{"params": [p], "lr": 0.1, "name": m} for m, p in params.items()]
    optimizer = torch.optim.SGD(groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    scores = {"accuracy": 50.0, "image_accuracy": 40.0, "text_accuracy": 80.0}
    epoch_end(strategy, 0, optimizer, scores, scheduler, how_to_validate="-")
    scores = {"accuracy": 50.0, "image_accuracy": 60.0, "text_accuracy": 40.0}
    epoch_end(strategy, 1, optimizer, scores, scheduler, how_to_validate="-")
    scheduler.step()  # LambdaLR recomputes every rate from base_lrs
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"image": 0.1 * 1.5 * 0.5, "text": 0.1 * 0.5 * 0.5, "head": 0.05})


def test_a_strategy_that_needs_validation_scores_says_how_to_give_them():
    strategy = create_strategy("mslr", mode="dynamic")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match="pass eval_dataset"):
        epoch_end(strategy, 0, optimizer, None, how_to_validate="pass eval_dataset")
    assert epoch_end(create_strategy("joint"), 0, optimizer, None, how_to_validate="-") == {}
