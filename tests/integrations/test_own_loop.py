"""The README's plain training loop with every built-in strategy on an audio-visual and a
three-modality model: every parameter moves at every step, the statistics come for every
modality, and a strategy goes by the modalities' names, not by their order."""

from __future__ import annotations

import math

import integration_fixtures as fx
import pytest
import torch

from balgrad.models import MultimodalModel
from balgrad.strategies import create_strategy, strategy_options


@pytest.mark.parametrize("setup", fx.NAMED)
@pytest.mark.parametrize("method", fx.builtin_strategies())
def test_every_strategy_trains_every_modality_at_every_step(method, setup):
    model = fx.make_model(setup)  # what plain_loop starts from (seeded)
    group_of = {id(p): g for g, ps in model.parameter_groups().items() for p in ps}
    owner = [group_of[id(p)] for p in model.parameters()]  # every parameter is in a group
    before = fx.snapshot(model)
    _, history, trajectory = fx.plain_loop(
        method, fx.make_batches(fx.STEPS, setup=setup), setup=setup
    )
    assert len(trajectory) == fx.STEPS
    for step, (stats, params) in enumerate(zip(history, trajectory)):
        assert all(math.isfinite(v) for v in stats.values()), stats
        fx.assert_every_modality_reported(stats, model.modalities)
        for group, p, q in zip(owner, params, before):
            assert torch.isfinite(p).all()
            assert not torch.equal(p, q), f"step {step}: {group} parameter did not move"
        before = params
    assert set(owner) == {*model.modalities, "head"}


def listed_in(order: tuple[str, ...]) -> MultimodalModel:
    torch.manual_seed(0)
    shapes = fx.SETUPS["audio_visual_text"]
    encoders = {m: fx.encoder(shapes[m]) for m in order}
    # sum fusion: the fused function does not depend on the order of the embeddings
    return MultimodalModel(encoders, fx.NUM_CLASSES, embed_dim=6, fusion="sum").double()


@pytest.mark.parametrize("method", fx.builtin_strategies())
def test_a_strategy_goes_by_modality_names_not_their_order(method):
    """The same three towers listed in two orders, from the same weights (state dicts are
    keyed by modality name), train to the same weights."""
    if create_strategy(method).owns_optimizer_step:
        pytest.skip("MLA alternates in the model's modality order (the official a, v, t)")
    # OGM-GE's noise is one draw over the parameters in the model's order: left out
    options = {"noise": False} if "noise" in strategy_options(method) else {}
    # InfoReg's official constants belong to the first modality (the code's audio): left out
    options |= {"semantics": "paper"} if method == "inforeg" else {}
    batches = fx.make_batches(fx.STEPS, setup="audio_visual_text")
    first = listed_in(("audio", "visual", "text"))
    second = listed_in(("text", "audio", "visual"))
    second.load_state_dict(first.state_dict())
    for model in (first, second):
        strategy = create_strategy(method, **options)
        optimizer = torch.optim.SGD(strategy.param_groups(model, fx.LR), lr=fx.LR)
        strategy.on_epoch_start(0, 1)
        if strategy.needs_epoch_pass:  # README's own loop: PMR's prototypes
            seen = [(fx.inputs_of(b, model.modalities), b["labels"]) for b in batches]
            strategy.prepare_epoch(model, seen)
        for b in batches:
            optimizer.zero_grad()
            strategy.backward(model, model(fx.inputs_of(b, model.modalities)), b["labels"])
            optimizer.step()
    after, reference = second.state_dict(), first.state_dict()
    assert list(after) != list(reference)  # the modules really are in another order
    for name, value in reference.items():
        torch.testing.assert_close(after[name], value, rtol=1e-9, atol=1e-12, msg=name)
