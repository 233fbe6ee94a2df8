"""The model-strategy contract, for every registered strategy (plug-ins included, as
timm tests every registered model): a model whose parameter groups are not exactly its
modalities plus "head" is refused by name, never trained as joint training in disguise.
"""

from __future__ import annotations

import pytest
import torch
from lifecycle import prepared, run_backward
from reference_m import make_batch_m, make_model_m
from torch import nn

from balgrad.errors import ConfigError, DataError
from balgrad.models import ModelOutput
from balgrad.strategies import create_strategy, list_strategies
from balgrad.strategies._base import BalancedModel

STRATEGIES = list_strategies()
THREE = ("audio", "visual", "text")


class Renamed(nn.Module):
    """The official OGM-GE client's adapter, done wrong: its towers are called audio and
    visual, its model still says (image, text)."""

    def __init__(self, groups_fn=None):
        super().__init__()
        self.net = make_model_m(("audio", "visual"), seed=0)
        self.task = "single_label"
        self.modalities = ("image", "text")
        self._groups_fn = groups_fn

    def forward(self, inputs):
        out = self.net({"audio": inputs["image"], "visual": inputs["text"]})
        return ModelOutput(
            out.logits,
            {"image": out.unimodal["audio"], "text": out.unimodal["visual"]},
            {"image": out.embeddings["audio"], "text": out.embeddings["visual"]},
        )

    def classify(self, h, detach_head=False):
        return self.net.classify({"audio": h["image"], "visual": h["text"]}, detach_head)

    def parameter_groups(self):
        groups = self.net.parameter_groups()
        return self._groups_fn(groups) if self._groups_fn else groups


def _batch():
    inputs, y = make_batch_m(("audio", "visual"), seed=0)
    return {"image": inputs["audio"], "text": inputs["visual"]}, y


@pytest.mark.parametrize("name", STRATEGIES)
def test_groups_named_after_other_modalities_are_refused_not_trained_as_joint(name):
    model = Renamed()
    inputs, y = _batch()
    with pytest.raises(ConfigError) as err:
        run_backward(create_strategy(name), model, model(inputs), y)
    message = str(err.value)
    assert "audio" in message and "image" in message and "head" in message


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_trainable_parameter_in_no_group_is_refused(name):
    model = Renamed(lambda g: {"image": g["audio"], "text": g["visual"], "head": []})
    inputs, y = _batch()
    with pytest.raises(ConfigError, match=r"net\.head\.classifier\.1\.weight.*no group"):
        run_backward(create_strategy(name), model, model(inputs), y)


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_parameter_in_two_groups_is_refused(name):
    def twice(g):
        return {"image": g["audio"], "text": g["visual"] + g["audio"][:1], "head": g["head"]}

    model = Renamed(twice)
    inputs, y = _batch()
    with pytest.raises(ConfigError, match="two groups, 'image' and 'text'"):
        run_backward(create_strategy(name), model, model(inputs), y)


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_model_without_named_modalities_is_refused(name):
    model = Renamed(lambda g: {"image": g["audio"], "text": g["visual"], "head": g["head"]})
    del model.modalities
    inputs, y = _batch()
    out = ModelOutput(torch.zeros(8, 4), {}, {})
    with pytest.raises(ConfigError, match="no 'modalities' attribute"):
        run_backward(create_strategy(name), model, out, y)


@pytest.mark.parametrize("name", STRATEGIES)
def test_an_unknown_task_is_refused(name):
    model = make_model_m(THREE, seed=0)
    model.task = "single-label"
    inputs, y = make_batch_m(THREE, seed=0)
    with pytest.raises(ConfigError, match="single-label"):
        run_backward(create_strategy(name), model, model(inputs), y)


@pytest.mark.parametrize("name", STRATEGIES)
def test_an_empty_batch_is_refused_by_name(name):
    model = make_model_m(THREE, seed=0)
    inputs, y = make_batch_m(THREE, seed=0)
    empty = {m: x[:0] for m, x in inputs.items()}
    with pytest.raises(DataError, match="empty"):
        run_backward(create_strategy(name), model, model(empty), y[:0])


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_trains_every_tower_at_three_modalities(name):
    model = make_model_m(THREE, seed=1)
    inputs, y = make_batch_m(THREE, seed=1)
    strategy = create_strategy(name)
    strategy.on_epoch_start(0, 4)
    prepared(strategy, model, inputs, y)
    stats = run_backward(strategy, model, model(inputs), y)
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
    for m in THREE:  # tower parameters moved: no modality is silently left out
        assert float(model.get_submodule(f"{m}_embedding")[0].weight.grad.abs().sum()) > 0, m
    assert all(torch.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("name", STRATEGIES)
def test_data_parallel_is_unwrapped(name):
    """The official OGM-GE code wraps its model in nn.DataParallel (on the CPU it runs
    the module itself): the strategy works on the wrapped module."""
    model = make_model_m(THREE, seed=2)
    inputs, y = make_batch_m(THREE, seed=2)
    seeded = {"noise": False} if name == "ogm_ge" else {}
    plain = prepared(create_strategy(name, **seeded), model, inputs, y)
    run_backward(plain, model, model(inputs), y)
    want = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    wrapped = nn.DataParallel(model)
    strategy = prepared(create_strategy(name, **seeded), wrapped, inputs, y)
    run_backward(strategy, wrapped, wrapped(inputs), y)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[k], msg=k)


def test_the_models_have_the_contract_shape():
    assert isinstance(make_model_m(THREE), BalancedModel)
    assert not isinstance(object(), BalancedModel)


class OwnConcatModel(nn.Module):
    """A user's own concat + linear head, not a balgrad model: it declares its readout."""

    def __init__(self, declare: bool):
        super().__init__()
        torch.manual_seed(0)
        self.modalities, self.task, self.declare = ("audio", "visual"), "single_label", declare
        self.towers = nn.ModuleDict({"audio": nn.Linear(5, 3), "visual": nn.Linear(7, 3)})
        self.out = nn.Linear(6, 4)
        self.double()

    def classify(self, h, detach_head=False):
        return self.out(torch.cat([h["audio"], h["visual"]], -1))

    def forward(self, inputs):
        h = {m: self.towers[m](inputs[m]) for m in self.modalities}
        z = {
            m: self.classify({k: v if k == m else torch.zeros_like(v) for k, v in h.items()})
            for m in h
        }
        return ModelOutput(self.classify(h), z, h, inputs)

    def parameter_groups(self):
        return {m: list(self.towers[m].parameters()) for m in self.modalities} | {
            "head": list(self.out.parameters())
        }

    def readout(self):
        from balgrad.models import Readout

        if not self.declare:
            return None
        return Readout(
            self.out.weight, self.out.bias, {"audio": slice(0, 3), "visual": slice(3, 6)}
        )


def test_ogm_half_bias_works_for_any_head_that_declares_its_readout():
    from balgrad.strategies._ogm_ge import official_unimodal_logits

    model = OwnConcatModel(declare=True)
    inputs, y = make_batch_m(("audio", "visual"), seed=3)
    out = model(inputs)
    z = official_unimodal_logits(model, out.embeddings)
    w, b = model.out.weight, model.out.bias
    torch.testing.assert_close(z["audio"], out.embeddings["audio"] @ w[:, :3].T + b / 2)
    torch.testing.assert_close(z["visual"], out.embeddings["visual"] @ w[:, 3:].T + b / 2)
    stats = run_backward(create_strategy("ogm_ge", fusion_bias="half"), model, out, y)
    assert "coef_audio" in stats
    undeclared = OwnConcatModel(declare=False)
    with pytest.raises(ConfigError, match="readout"):
        run_backward(
            create_strategy("ogm_ge", fusion_bias="half"), undeclared, undeclared(inputs), y
        )
