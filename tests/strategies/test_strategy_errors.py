"""Bad names, options, targets and non-finite losses raise errors that name the culprit."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from lifecycle import prepared, run_backward
from strategy_reference import make_batch, make_model

from balgrad.errors import ConfigError, DataError, NonFiniteLossError
from balgrad.strategies import create_strategy, list_strategies, strategy_options

#: every registered strategy, so a new or plug-in one is checked too
NAMES = list_strategies()


def _strategy(name):
    return create_strategy(name, mode="keep") if name == "mslr" else create_strategy(name)


# -- registry -----------------------------------------------------------------------------
def test_unknown_strategy_name_is_named():
    with pytest.raises(ConfigError, match="no_such_method"):
        create_strategy("no_such_method")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_is_named(name):
    with pytest.raises(ConfigError, match="warp_factor"):
        create_strategy(name, warp_factor=9)


def test_unknown_option_on_a_preset_is_named():
    with pytest.raises(ConfigError, match="warp_factor"):
        create_strategy("balgrad_projection_only", warp_factor=9)


def test_aliases_and_presets_resolve():
    assert type(create_strategy("baseline")).__name__ == "Joint"
    assert type(create_strategy("ogm-ge")).__name__ == "OGMGE"
    s = create_strategy("balgrad_unimodal_only")
    assert (s.kl_weight, s.project, s.reweight) == (0.0, False, "none")
    # a preset option can be overridden
    assert create_strategy("balgrad_projection_only", kl_weight=0.5).kl_weight == 0.5
    assert {"joint", "balgrad", "ogm_ge", "agm", "mslr", "balgrad_fast"} <= set(list_strategies())
    assert strategy_options("balgrad")["projection_scope"] == "global"


@pytest.mark.parametrize(
    "name,options,field",
    [
        ("balgrad", {"reweight": "x"}, "reweight"),
        ("balgrad", {"projection_scope": "x"}, "projection_scope"),
        ("balgrad", {"contribution_ema": 1.0}, "contribution_ema"),
        ("balgrad", {"temperature": 0.0}, "temperature"),
        ("balgrad", {"kl_weight": -1.0}, "kl_weight"),
        ("balgrad", {"unimodal_weight": -1.0}, "unimodal_weight"),
        ("ogm_ge", {"alpha": -0.1}, "alpha"),
        ("agm", {"alpha": -0.1}, "alpha"),
        ("mslr", {"mode": "x"}, "mode"),
    ],
)
def test_bad_option_values_name_the_option(name, options, field):
    with pytest.raises(ConfigError, match=field):
        create_strategy(name, **options)


# -- bad targets ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_wrong_shaped_target(name):
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    with pytest.raises(DataError, match="target"):
        run_backward(_strategy(name), model, model({"image": x_v, "text": x_l}), y.view(-1, 1))
    with pytest.raises(DataError, match="target"):
        run_backward(_strategy(name), model, model({"image": x_v, "text": x_l}), y[:-1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [4, -1])
def test_label_out_of_range(name, bad):
    model = make_model("concat", seed=0, num_classes=4)
    x_v, x_l, y = make_batch(seed=0)
    strategy = prepared(_strategy(name), model, {"image": x_v, "text": x_l}, y)
    y = y.clone()
    y[3] = bad
    with pytest.raises(DataError, match=rf"target.*{bad}"):
        run_backward(strategy, model, model({"image": x_v, "text": x_l}), y)


@pytest.mark.parametrize("name", NAMES)
def test_float_target_for_single_label(name):
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    with pytest.raises(DataError, match="target"):
        run_backward(_strategy(name), model, model({"image": x_v, "text": x_l}), y.double())


@pytest.mark.parametrize("name", ["joint", "balgrad", "agm"])
def test_multi_label_target_checks(name):
    model = make_model("concat", "multi_label", seed=0)
    x_v, x_l, y = make_batch("multi_label", seed=0)
    with pytest.raises(DataError, match="target"):
        run_backward(_strategy(name), model, model({"image": x_v, "text": x_l}), y[:, :-1])
    bad = y.clone()
    bad[0, 0] = 2.0
    with pytest.raises(DataError, match="target"):
        run_backward(_strategy(name), model, model({"image": x_v, "text": x_l}), bad)


# -- non-finite losses --------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_nan_logits_raise_naming_the_loss(name):
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    out = model({"image": x_v, "text": x_l})
    logits = out.logits.clone()
    logits[0, 0] = float("nan")
    out = dataclasses.replace(out, logits=logits)
    strategy = prepared(_strategy(name), model, {"image": x_v, "text": x_l}, y)
    with pytest.raises(NonFiniteLossError, match="L_T"):
        run_backward(strategy, model, out, y)


def test_agm_state_is_not_corrupted_by_a_nan_step():
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    strategy = create_strategy("agm")
    run_backward(strategy, model, model({"image": x_v, "text": x_l}), y)
    before = (list(strategy.running), strategy.count)
    bad = model({"image": x_v * float("nan"), "text": x_l})
    with pytest.raises(NonFiniteLossError):
        run_backward(strategy, model, bad, y)
    assert (list(strategy.running), strategy.count) == before


@pytest.mark.parametrize("modality,loss_name", [("image", "L_v"), ("text", "L_l")])
def test_balgrad_nan_unimodal_logits_name_that_loss(modality, loss_name):
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    out = model({"image": x_v, "text": x_l})
    z = out.unimodal[modality].clone()
    z[1, 2] = float("inf")
    out = dataclasses.replace(out, unimodal={**out.unimodal, modality: z})
    with pytest.raises(NonFiniteLossError, match=loss_name):
        run_backward(create_strategy("balgrad"), model, out, y)


def test_balgrad_ema_not_updated_by_a_failed_step():
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    strategy = create_strategy("balgrad", contribution_ema=0.5)
    run_backward(strategy, model, model({"image": x_v, "text": x_l}), y)
    before = strategy.state_dict()["ema"]
    with pytest.raises(NonFiniteLossError):
        run_backward(strategy, model, model({"image": x_v * float("nan"), "text": x_l}), y)
    assert strategy.state_dict()["ema"] == before
    assert torch.isfinite(torch.tensor(before)).all()
