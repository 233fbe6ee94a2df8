"""The base class: statistics as 0-d tensors, the cached parameter layout, the sync
resolved at each step."""

from __future__ import annotations

import torch
from strategy_reference import make_batch, make_model
from torch import nn

from balgrad._grad import GradientSync
from balgrad.names import Schema
from balgrad.strategies import Joint
from balgrad.strategies._base import Strategy


class _PlainNumbers(Joint):
    # returns more than Joint declares, so it declares its own (not registered: a test's)
    statistics = Schema(
        "plain numbers test", ("loss_task", "ratio", "flag"), Joint.statistics.per_modality
    )

    def compute(self, model, output, target, ctx):
        return {**super().compute(model, output, target, ctx), "ratio": 0.25, "flag": True}


def test_stats_are_zero_dim_tensors_even_from_python_numbers():
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    stats = _PlainNumbers().backward(model, model({"image": x_v, "text": x_l}), y)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in stats.values())
    assert float(stats["ratio"]) == 0.25 and float(stats["flag"]) == 1.0
    assert f"{stats['loss_task']:.3f}"  # f-string formats work on 0-d tensors


def test_layout_is_cached_until_the_parameter_set_changes():
    model = make_model("concat", seed=0)
    strategy = Strategy()
    first = strategy.layout(model)
    assert strategy.layout(model) is first
    model.image_encoder.requires_grad_(False)
    second = strategy.layout(model)
    assert second is not first
    assert not any(p is q for p in second.groups["image"] for q in model.image_encoder.parameters())
    model.image_encoder.requires_grad_(True)
    model.text_embedding = nn.Sequential(nn.Linear(5, 6, dtype=torch.float64), nn.GELU())
    third = strategy.layout(model)
    assert any(p is model.text_embedding[0].weight for p in third.groups["text"])


def test_sync_is_resolved_per_step_unless_set():
    strategy = Strategy()
    assert type(strategy.sync) is GradientSync  # no process group: the identity
    mine = GradientSync()
    strategy.sync = mine
    assert strategy.sync is mine
    strategy.sync = None
    assert strategy.sync is not mine
