"""Lazy validity checks: one host read every ``check_every`` steps, naming the quantity
and the step where it first went bad; no host read of a tensor value in between."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from owned import IDS, OWNED, make_strategy
from strategy_reference import make_batch, make_model

from balgrad.errors import DataError, NonFiniteLossError


def _nan_logits(out):
    z = out.logits.clone()
    z[0, 0] = float("nan")
    return dataclasses.replace(out, logits=z)


def _setup(case, check_every):
    _, name, options = case
    strategy = make_strategy(name, options)
    strategy.check_every = check_every
    return (make_model("concat", seed=0), *make_batch(seed=0), strategy)


@pytest.mark.parametrize("case", OWNED, ids=IDS)
def test_a_nan_is_reported_at_the_next_check_with_its_step(case):
    model, x_v, x_l, y, strategy = _setup(case, check_every=3)

    def step(out):
        model.zero_grad(set_to_none=True)
        strategy.backward(model, out, y)

    step(model({"image": x_v, "text": x_l}))  # step 0: a check step, clean
    step(_nan_logits(model({"image": x_v, "text": x_l})))  # step 1: bad, not read yet
    step(model({"image": x_v, "text": x_l}))  # step 2
    with pytest.raises(NonFiniteLossError, match=r"L_T is not finite at step 1"):
        step(model({"image": x_v, "text": x_l}))  # step 3: the check
    # the failed check consumed what it read: the next steps are clean again
    step(model({"image": x_v, "text": x_l}))
    strategy.verify()


@pytest.mark.parametrize("case", OWNED, ids=IDS)
def test_verify_reads_the_pending_checks_now(case):
    model, x_v, x_l, y, strategy = _setup(case, check_every=100)
    strategy.backward(model, model({"image": x_v, "text": x_l}), y)
    bad = y.clone()
    bad[2] = 7
    stats = strategy.backward(
        model, model({"image": x_v, "text": x_l}), bad
    )  # computed on a clamped label
    assert all(torch.isfinite(v) for v in stats.values())
    with pytest.raises(DataError, match=r"target: label 7 is out of range \[0, 4\) at step 1"):
        strategy.verify()


def test_multi_label_target_values_are_checked_lazily():
    model = make_model("concat", "multi_label", seed=0)
    x_v, x_l, y = make_batch("multi_label", seed=0)
    strategy = make_strategy("balgrad_fast", {})
    strategy.check_every = 2
    bad = y.clone()
    bad[1, 1] = 0.5
    strategy.backward(model, model({"image": x_v, "text": x_l}), y)
    strategy.backward(model, model({"image": x_v, "text": x_l}), bad)
    with pytest.raises(DataError, match=r"0/1, got 0.5 at step 1"):
        strategy.backward(model, model({"image": x_v, "text": x_l}), y)


@contextlib.contextmanager
def no_host_reads():
    """Make every Python-level read of a tensor value fail (syncs inside C++ ops are not
    seen; the benchmark's device runs cover those)."""
    names = ["item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"]
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def refuse(*_args, **_kwargs):
        raise AssertionError("a tensor value was read on the host between checks")

    try:
        for n in names:
            setattr(torch.Tensor, n, refuse)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("case", OWNED, ids=IDS)
def test_steps_between_checks_read_nothing_on_the_host(case, task):
    _, name, options = case
    model = make_model("attention", task, seed=2)
    x_v, x_l, y = make_batch(task, seed=2)
    strategy = make_strategy(name, options, head_every=1)  # the head diagnostic too
    strategy.check_every = 10
    strategy.backward(model, model({"image": x_v, "text": x_l}), y)  # step 0 checks
    observed = []
    strategy.add_observer(lambda step, stats: observed.append(stats))
    for _ in range(2):
        out = model({"image": x_v, "text": x_l})
        with no_host_reads():
            stats = strategy.backward(model, out, y)
    assert all(v.dim() == 0 for v in stats.values())
    assert observed[-1] is stats
    if name.startswith("balgrad"):
        assert "cos_head_unimodal" in stats
