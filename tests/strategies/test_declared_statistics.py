"""Every strategy declares the statistics it returns (issue 23, item 6), and the names it
returns are the ones :mod:`balgrad.names` builds: per-modality ones for modalities whose
names hold underscores too, global ones untouched."""

from __future__ import annotations

import pytest
import torch
from lifecycle import prepared, run_backward
from strategy_reference import TinyEncoder

from balgrad.models._multimodal import MultimodalModel
from balgrad.names import name_clashes, stat_name
from balgrad.strategies._registry import STRATEGY_REGISTRY, create_strategy

EVERY = [e.name for e in STRATEGY_REGISTRY.entries(plugins=False)]
PAIR = ("audio_left", "visual")
THREE = ("audio_left", "audio_right", "visual_rgb")


def _model(names, seed=0):
    torch.manual_seed(seed)
    return MultimodalModel(
        {m: TinyEncoder(3 + i, 5) for i, m in enumerate(names)}, num_classes=3, embed_dim=4
    ).double()


def _step(name, names, epochs=2):
    model = _model(names)
    strategy = create_strategy(name)
    strategy.on_epoch_start(0, epochs)
    gen = torch.Generator().manual_seed(5)
    inputs = {
        m: torch.randn(6, 3 + i, generator=gen, dtype=torch.float64) for i, m in enumerate(names)
    }
    y = torch.randint(0, 3, (6,), generator=gen)
    optimizer = torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1)
    prepared(strategy, model, inputs, y)
    stats = run_backward(strategy, model, model(inputs), y)
    extra = strategy.on_epoch_end(0, optimizer, {m: 50.0 for m in names})
    return strategy, stats, extra


@pytest.mark.parametrize("names", [PAIR, THREE], ids=["M2", "M3"])
@pytest.mark.parametrize("name", EVERY)
def test_every_statistic_a_strategy_returns_is_declared(name, names):
    strategy, stats, extra = _step(name, names)
    assert strategy.statistics is not None, f"{name} declares no statistics"
    declared = set(strategy.statistics.names(names))
    assert set(stats) | set(extra) <= declared, sorted((set(stats) | set(extra)) - declared)
    # the per-modality losses are where the report reads them, whatever the name holds
    for m in names:
        assert stat_name("loss", m) in stats
        assert float(stats[stat_name("loss", m)]) > 0
    assert "loss_task" in stats


def test_statistics_of_underscored_modalities_are_told_apart():
    """``audio_left`` and ``audio`` + ``left`` build distinct keys, and a name built for one
    modality never lands on another's."""
    _, stats, _ = _step("balgrad", THREE)
    keys = [k for k in stats if k.startswith("weight_")]
    assert keys == [f"weight_{m}" for m in THREE]
    w = torch.stack([stats[k] for k in keys])
    # BalGrad's weights w_m = M (1 - c_m) / (M - 1) average to 1 (SPEC section 6)
    torch.testing.assert_close(w.mean(), torch.ones((), dtype=w.dtype))
    assert name_clashes(THREE) == []


def test_agm_declares_the_number_of_modalities_it_supports():
    assert create_strategy("agm").max_modalities == 6
    assert all(
        create_strategy(n).max_modalities is None for n in ("joint", "mslr", "ogm_ge", "balgrad")
    )


@pytest.fixture
def own_schemas(monkeypatch):
    """Schemas a test declares are dropped after it (they would reserve its names)."""
    from balgrad import names

    monkeypatch.setattr(names, "_SCHEMAS", dict(names._SCHEMAS))
    yield
    names._clashes.cache_clear()


def test_a_strategy_returning_an_undeclared_statistic_is_stopped(own_schemas):
    from balgrad.errors import ConfigError
    from balgrad.names import statistics as declared
    from balgrad.strategies._joint import Joint

    class Sloppy(Joint):
        name = "sloppy_test"
        statistics = declared("sloppy_test", ["loss_task"], ["loss"])  # not "score"

    model = _model(PAIR)
    inputs = {m: torch.randn(4, 3 + i, dtype=torch.float64) for i, m in enumerate(PAIR)}
    with pytest.raises(ConfigError, match=r"sloppy_test.*\['score_audio_left', 'score_visual'\]"):
        Sloppy().backward(model, model(inputs), torch.tensor([0, 1, 2, 0]))
