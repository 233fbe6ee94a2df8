"""G-Blend: its weights by hand at M = 3 (both semantics), its step and its estimate against
an independent transcription of MultiBench's ``training_structures/gradient_blend.py``
(pliang279/MultiBench @ 49f9be2: ``train``'s blended step, ``gb_estimate`` with
``train_unimodal`` / ``train_multimodal`` under ``delta`` True and False), and the
lifecycle: a loop that skips ``prepare_epoch`` fails naming it, online mode re-estimates
every super-epoch and offline once, the state survives a ``weights_only`` checkpoint.

Float64 throughout: the parity comparisons hold to 1e-10 (the two sides add the same
numbers in different orders)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as nn
from reference_m import make_batch_m, make_model_m

from balgrad.errors import ConfigError
from balgrad.strategies import create_strategy
from balgrad.strategies._gblend import blend_scores, blend_weights, split_batches

THREE = ("audio", "visual", "text")
TWO = ("audio", "visual")
D = torch.float64


def t(*xs):
    return torch.tensor(xs, dtype=D)


# -- the weights, by hand -----------------------------------------------------------------
# three modalities and the fused head (K = 4): held-out loss 2 → (1.5, 1, 1.8, 1.2), training
# loss 2 → (1, .5, 1.7, .4). ΔG = (.5, 1, .2, .8), O_N = 0, ΔO = O_{N+n} = (.5, .5, .1, .8)
CURVES = (t(2, 2, 2, 2), t(2, 2, 2, 2), t(1.0, 0.5, 1.7, 0.4), t(1.5, 1.0, 1.8, 1.2))


def test_paper_weights_at_three_modalities_by_hand():
    # ΔG / ΔO² = (.5/.25, 1/.25, .2/.01, .8/.64) = (2, 4, 20, 1.25); sum 27.25 = 109 / 4
    w = blend_weights(*CURVES, semantics="paper")
    assert w.tolist() == pytest.approx([8 / 109, 16 / 109, 80 / 109, 5 / 109], abs=1e-12)


def test_multibench_default_weights_at_three_modalities_by_hand():
    # G / O² = (1.5/.25, 1/.25, 1.8/.01, 1.2/.64) = (6, 4, 180, 1.875); × 8: (48, 32, 1440, 15)
    w = blend_weights(*CURVES, semantics="multibench")
    assert w.tolist() == pytest.approx([48 / 1535, 32 / 1535, 1440 / 1535, 15 / 1535], abs=1e-12)


def test_the_floors_and_signs():
    # multibench: a negative O (held-out below training) counts as 1e-4, as MultiBench's;
    # O = 0 too (MultiBench divides by zero there)
    raw = blend_scores(t(1, 1), t(2, 2), t(1.0, 1.0), t(0.5, 1.0), "multibench")
    assert raw.tolist() == pytest.approx([0.5 / 1e-8, 1.0 / 1e-8])
    # paper: |ΔG| (MultiBench delta=True takes the absolute value): the held-out loss rose
    # by .5 (ΔG = −.5) as O rose from 0 to 1; a branch with ΔG = ΔO = 0 (floored) gets 0
    raw = blend_scores(t(1, 1), t(1, 1), t(0.5, 1.0), t(1.5, 1.0), "paper")
    assert raw.tolist() == pytest.approx([0.5 / 1.0**2, 0.0])
    # every raw weight 0: equal weights
    assert blend_weights(t(1, 1), t(1, 1), t(1, 1), t(1, 1)).tolist() == [0.5, 0.5]


def test_split_batches_holds_out_the_first_part():
    train, held = split_batches(range(25), 0.08)
    assert held == [0, 1] and train == list(range(2, 25))
    assert split_batches([7], 0.5) == ([7], [7])
    assert split_batches(range(3), 0.01) == ([1, 2], [0])


# -- an independent transcription of MultiBench's gradient_blend.py -----------------------
# the model's parts as MultiBench's: unimodal_models[i] = encoder then embedding,
# unimodal_classification_heads[i] = the separate head, fuse + multimodal head = model.head
criterion = nn.CrossEntropyLoss()


def encoder_of(model, m):
    return nn.Sequential(getattr(model, f"{m}_encoder"), getattr(model, f"{m}_embedding"))


def mb_getloss(enc, head, data, m):
    losses, total = 0.0, 0
    with torch.no_grad():
        for x, y in data:
            total += len(y)
            losses += criterion(head(enc(x[m])), y) * len(y)
    return losses / total


def mb_getmloss(encs, head, data, names):
    losses, total = 0.0, 0
    with torch.no_grad():
        for x, y in data:
            total += len(y)
            losses += criterion(head(*[encs[i](x[m]) for i, m in enumerate(names)]), y) * len(y)
    return losses / total


def mb_score(ltN, lvN, ltNn, lvNn, delta):
    oNn, oN = lvNn - ltNn, lvN - ltN
    if delta:
        oi, g = oNn - oN, lvNn - lvN
    else:
        oi = oNn if oNn >= 0 else 0.0001
        g = lvNn
    return abs(g / (oi * oi))


def mb_gb_estimate(model, names, trains, valids, epochs, lr, wd, delta):
    weights = []
    for m in names:
        enc = copy.deepcopy(encoder_of(model, m))
        head = copy.deepcopy(getattr(model, f"{m}_head"))
        optim = torch.optim.SGD(list(enc.parameters()) + list(head.parameters()), lr=lr,
                                weight_decay=wd)  # fmt: skip
        ltN, lvN = mb_getloss(enc, head, trains, m), mb_getloss(enc, head, valids, m)
        for _ in range(epochs):
            for x, y in trains:
                optim.zero_grad()
                criterion(head(enc(x[m])), y).backward()
                optim.step()
        ltNn, lvNn = mb_getloss(enc, head, trains, m), mb_getloss(enc, head, valids, m)
        weights.append(mb_score(ltN, lvN, ltNn, lvNn, delta))
    encs = [copy.deepcopy(encoder_of(model, m)) for m in names]
    head = copy.deepcopy(model.head)
    params = [p for e in encs for p in e.parameters()] + list(head.parameters())
    optim = torch.optim.SGD(params, lr=lr, weight_decay=wd)
    ltN, lvN = mb_getmloss(encs, head, trains, names), mb_getmloss(encs, head, valids, names)
    for _ in range(epochs):
        for x, y in trains:
            optim.zero_grad()
            criterion(head(*[encs[i](x[m]) for i, m in enumerate(names)]), y).backward()
            optim.step()
    ltNn, lvNn = mb_getmloss(encs, head, trains, names), mb_getmloss(encs, head, valids, names)
    weights.append(mb_score(ltN, lvN, ltNn, lvNn, delta))
    z = sum(weights)
    return [float(w / z) for w in weights]


def mb_step(model, names, x, y, weights, lr):
    """One step of MultiBench ``train``'s inner loop: the blended loss, SGD."""
    optim = torch.optim.SGD(model.parameters(), lr=lr)
    optim.zero_grad()
    outs = [encoder_of(model, m)(x[m]) for m in names]
    blendloss = criterion(model.head(*outs), y) * weights[-1]
    for i, m in enumerate(names):
        blendloss += criterion(getattr(model, f"{m}_head")(outs[i]), y) * weights[i]
    blendloss.backward()
    optim.step()


def batches(names, n, seed):
    return [make_batch_m(names, seed=seed + i) for i in range(n)]


@pytest.mark.parametrize("names", [TWO, THREE], ids=["M2", "M3"])
@pytest.mark.parametrize("semantics", ["paper", "multibench"])
def test_the_estimate_matches_multibench(names, semantics):
    model = make_model_m(names, unimodal_head="separate", seed=4)
    trains, valids = batches(names, 3, seed=10), batches(names, 2, seed=20)
    want = mb_gb_estimate(model, names, trains, valids, 2, 0.1, 1e-3, semantics == "paper")
    strategy = create_strategy("gblend", estimate_epochs=2, semantics=semantics)
    strategy.on_epoch_start(0, 1)
    before = copy.deepcopy(model.state_dict())
    stats = strategy.prepare_epoch(
        model,
        trains,
        held_out=valids,
        make_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=1e-3),
    )
    assert strategy.weights.tolist() == pytest.approx(want, abs=1e-10)
    assert [float(stats[f"weight_{m}"]) for m in names] == pytest.approx(want[:-1], abs=1e-10)
    assert float(stats["weight_fused"]) == pytest.approx(want[-1], abs=1e-10)
    for k, v in model.state_dict().items():  # the copies trained, not the model
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("names", [TWO, THREE], ids=["M2", "M3"])
def test_the_step_matches_multibench(names):
    model = make_model_m(names, unimodal_head="separate", seed=5)
    twin = copy.deepcopy(model)
    x, y = make_batch_m(names, seed=3)
    weights = [0.1, 0.2, 0.3, 0.4][-len(names) - 1 :]
    strategy = create_strategy("gblend")
    strategy.weights, strategy.estimated_epoch = torch.tensor(weights, dtype=D), 0
    optim = torch.optim.SGD(model.parameters(), lr=0.3)
    optim.zero_grad()
    stats = strategy.backward(model, model(x), y)
    optim.step()
    mb_step(twin, names, x, y, weights, 0.3)
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=k)
    assert float(stats["weight_fused"]) == weights[-1]
    assert float(stats["loss_blend"]) == pytest.approx(
        weights[-1] * float(stats["loss_task"])
        + sum(w * float(stats[f"loss_{m}"]) for w, m in zip(weights, names)),
        rel=1e-12,
    )


def test_a_shared_head_model_trains_and_its_unimodal_copies_train_the_head():
    """With a shared head the unimodal copy k trains θ_k and f_T on f_T(0, .., h_k, .., 0);
    the step's ℓ(z_m) reaches θ_m alone (the model detaches the head)."""
    model = make_model_m(THREE, seed=6)
    data = batches(THREE, 3, seed=30)
    strategy = create_strategy("gblend", estimate_epochs=1, semantics="multibench")
    strategy.on_epoch_start(0, 1)
    strategy.prepare_epoch(model, data, make_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    w = strategy.weights
    assert w.shape == (4,) and float(w.sum()) == pytest.approx(1.0) and bool((w > 0).all())
    x, y = data[0]
    strategy.backward(model, model(x), y)
    assert all(p.grad is not None for p in model.parameters())


# -- the lifecycle --------------------------------------------------------------------------
def test_a_loop_that_skips_prepare_epoch_fails_naming_it():
    model = make_model_m(TWO, seed=1)
    x, y = make_batch_m(TWO, seed=1)
    strategy = create_strategy("gblend")
    strategy.on_epoch_start(0, 3)
    with pytest.raises(ConfigError, match=r"prepare_epoch\(model, batches, held_out"):
        strategy.backward(model, model(x), y)


def test_online_re_estimates_every_super_epoch_and_offline_once():
    model = make_model_m(TWO, seed=2)
    data = batches(TWO, 2, seed=40)
    online = create_strategy("gblend", super_epoch=2, estimate_epochs=1)
    offline = create_strategy("gblend", mode="offline", estimate_epochs=1)
    due = {"online": [], "offline": []}
    for epoch in range(5):
        for name, s in (("online", online), ("offline", offline)):
            s.on_epoch_start(epoch, 5)
            due[name].append(s.needs_preparation())
            if s.needs_preparation():
                s.prepare_epoch(model, data)
            s.backward(model, model(data[0][0]), data[0][1])  # no error: prepared
    assert due == {
        "online": [True, False, True, False, True],
        "offline": [True, False, False, False, False],
    }
    online.on_epoch_start(5, 7)
    online.prepare_epoch(model, data)  # not due at epoch 5: nothing re-estimated
    assert online.estimated_epoch == 4
    online.on_epoch_start(8, 9)
    with pytest.raises(ConfigError, match="every 2 epochs"):
        online.backward(model, model(data[0][0]), data[0][1])


def test_the_state_survives_a_weights_only_checkpoint():
    model = make_model_m(TWO, seed=3)
    data = batches(TWO, 2, seed=50)
    s = create_strategy("gblend", super_epoch=3, estimate_epochs=1)
    s.on_epoch_start(0, 4)
    s.prepare_epoch(model, data)
    blob = io.BytesIO()
    torch.save(s.state_dict(), blob)
    blob.seek(0)
    r = create_strategy("gblend", super_epoch=3, estimate_epochs=1)
    r.load_state_dict(torch.load(blob, weights_only=True))
    assert torch.equal(r.weights, s.weights) and r.estimated_epoch == 0
    r.on_epoch_start(1, 4)
    assert not r.needs_preparation()


@pytest.mark.parametrize(
    "options, field",
    [
        ({"held_out_fraction": 1.0}, "held_out_fraction"),
        ({"super_epoch": 0}, "super_epoch"),
        ({"estimate_epochs": 0}, "estimate_epochs"),
        ({"semantics": "official"}, "semantics"),
        ({"mode": "sometimes"}, "mode"),
    ],
)
def test_bad_options_name_themselves(options, field):
    with pytest.raises(ConfigError, match=field):
        create_strategy("gblend", **options)


def test_the_integrations_optimizer_factory_copies_the_runs_settings():
    """Lightning and the HF Trainer hand their optimizer: the copies' is of its class with
    its first group's settings (a loop may set lr per group), at the rate before any
    schedule."""
    from balgrad.integrations._common import optimizer_like

    p = nn.Parameter(torch.zeros(2))
    run = torch.optim.SGD([{"params": [p], "lr": 0.3, "momentum": 0.9}], weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.StepLR(run, 1, gamma=0.5)
    run.step()  # no gradient: nothing moves
    schedule.step()  # lr 0.15, initial_lr 0.3

    class Wrapped:  # Lightning's LightningOptimizer, Accelerate's AcceleratedOptimizer
        optimizer = run

    made = optimizer_like(Wrapped())([nn.Parameter(torch.zeros(1))])
    assert type(made) is torch.optim.SGD
    group = made.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.3, 0.9, 1e-4)
