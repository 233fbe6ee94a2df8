"""The framework-free pieces of the integrations: the statistics meter (floats and 0-d
tensors), batch unpacking by modality name, the scaler hand-over and the epoch-end hook."""

from __future__ import annotations

import pytest
import torch

from balgrad.data import Batch
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


AV = ("audio", "visual")
AVT = ("audio", "visual", "text")


def test_batches_unpack_from_dicts_tuples_and_balgrad_batches():
    a, v, t, y = torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 5), torch.tensor([0, 1])
    drop = torch.tensor([True, False])
    inputs, target, drops = unpack_batch({"visual": v, "audio": a, "labels": y}, AV)
    assert list(inputs) == ["audio", "visual"]  # the model's order, not the batch's
    assert inputs["audio"] is a and target is y and drops == {}
    named = {"audio": a, "visual": v, "text": t, "label": y, "drop_text": drop}
    assert unpack_batch(named, AVT)[2] == {"text": drop}
    nested = {"inputs": {"audio": a, "visual": v}, "labels": y, "drop": {"visual": drop}}
    assert unpack_batch(nested, AV)[2] == {"visual": drop}
    assert unpack_batch(({"audio": a, "visual": v}, y), AV)[0]["visual"] is v
    assert unpack_batch((a, v, y), AV)[0] == {"audio": a, "visual": v}
    batch = Batch({"audio": a, "visual": v}, y, torch.arange(2), drop={"audio": drop})
    assert unpack_batch(batch, AV)[2] == {"audio": drop}


def test_a_batch_that_does_not_fit_the_model_names_its_modalities_and_what_is_missing():
    a, y = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(DataError, match=r"missing key\(s\) \['visual', 'text'\]") as err:
        unpack_batch({"audio": a, "labels": y}, AVT)
    assert "modalities ['audio', 'visual', 'text']" in str(err.value)
    assert "got keys ['audio', 'labels']" in str(err.value)
    with pytest.raises(DataError, match=r"missing key\(s\) \['labels'\]"):
        unpack_batch({"audio": a, "visual": a}, AV)
    with pytest.raises(
        DataError, match=r"inputs for modalities \['image'\].*\['audio', 'visual'\]"
    ):
        unpack_batch({"inputs": {"image": a}, "labels": y}, AV)
    with pytest.raises(DataError, match=r"unknown modalities \['text'\]"):
        unpack_batch({"inputs": {"audio": a, "visual": a}, "labels": y, "drop": {"text": y}}, AV)
    with pytest.raises(DataError, match="expected a dict"):  # (x_1, x_2, labels): M = 2 only
        unpack_batch((a, a, y), AVT)


class _Fixed(Strategy):
    """Writes nothing; records how backward was called."""

    def backward(self, model, output, target, *, scaler=None):
        self.scaler = scaler
        return {}


class _NoScaler(Strategy):
    supports_grad_scaler = False

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


def test_mslr_applies_each_modality_factor_once_to_every_group_of_that_modality():
    """The Hugging Face Trainer splits each modality's group into decayed and not-decayed
    parameters: both get the factor, once."""
    strategy = create_strategy("mslr", mode="dynamic")
    groups = [
        {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1, "name": m}
        for m in ("audio", "audio", "visual", "text", "text", "head")
    ]
    optimizer = torch.optim.SGD(groups)
    epoch_end(strategy, 0, optimizer, {f"{m}_accuracy": 0.5 for m in AVT}, how_to_validate="-")
    scores = {"audio_accuracy": 0.75, "visual_accuracy": 0.25, "text_accuracy": 0.5}
    extra = epoch_end(strategy, 1, optimizer, scores, how_to_validate="-")
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
        [0.15, 0.15, 0.05, 0.1, 0.1, 0.1]
    )
    assert {k: v for k, v in extra.items() if "factor" in k} == pytest.approx(
        {"lr_factor_audio": 1.5, "lr_factor_visual": 0.5, "lr_factor_text": 1.0}
    )


def test_a_strategy_that_needs_validation_scores_says_how_to_give_them():
    strategy = create_strategy("mslr", mode="dynamic")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match="pass eval_dataset"):
        epoch_end(strategy, 0, optimizer, None, how_to_validate="pass eval_dataset")
    assert epoch_end(create_strategy("joint"), 0, optimizer, None, how_to_validate="-") == {}


def test_example_collator_stacks_any_named_modalities():
    import torch

    from balgrad.data import Example
    from balgrad.integrations import ExampleCollator

    class Doubling:
        def preprocess(self, x):
            return 2 * x

    examples = [
        Example(
            inputs={
                "audio": torch.full((4,), float(i)),
                "motion": {"features": torch.full((3, 2), float(i)), "lengths": i + 1},
            },
            label=torch.tensor(i),
            index=i,
        )
        for i in range(3)
    ]
    out = ExampleCollator(encoders={"audio": Doubling(), "motion": object()})(examples)
    assert torch.equal(out["audio"], 2 * torch.arange(3.0)[:, None].expand(3, 4))
    assert out["motion"]["features"].shape == (3, 3, 2)
    assert out["motion"]["lengths"].tolist() == [1, 2, 3]
    assert out["labels"].tolist() == [0, 1, 2]
