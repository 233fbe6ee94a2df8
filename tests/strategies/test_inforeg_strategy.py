"""InfoReg: its math by hand at M = 3, the step against the objective written out (paper
semantics), the step and the window against a transcription of the official code
(GeWu-Lab/InfoReg_CVPR2025 @939b2ed, ``main.py::train_epoch``) on the official
``AVClassifier`` shape over four epochs, and the epoch-start hook: an own loop that skips
it fails naming it, the snapshot and the traces survive a ``weights_only`` checkpoint.

Float64 throughout: the parity comparisons hold to 1e-12."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn as nn
from official_example import official
from reference_m import make_batch_m, make_model_m

from balgrad.errors import ConfigError
from balgrad.strategies import create_strategy
from balgrad.strategies._inforeg import (
    proximal_terms,
    regulation_coefficients,
    score_gaps,
    step_trace,
    window_open,
    window_rates,
)

THREE = ("audio", "visual", "text")

D = torch.float64


# -- the math, by hand at M = 3 ------------------------------------------------------------
def test_a_steps_trace_is_the_sum_of_per_layer_means_of_squared_weight_gradients():
    g = [
        torch.full((2, 2), 2.0, dtype=D),  # mean 4
        torch.tensor([5.0, 5.0], dtype=D),  # a bias: left out
        torch.tensor([1.0, 3.0], dtype=D).view(1, 2, 1),  # mean (1 + 9) / 2 = 5
        None,
    ]
    assert float(step_trace(g)) == 9.0
    assert float(step_trace([torch.ones(3, dtype=D)])) == 0.0


def test_window_rates_compare_the_last_window_with_the_one_before_zero_padded():
    traces = torch.tensor([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]], dtype=D)
    # W = 2: padded rows 0, 0, T0, T1; new = mean(T0, T1) = (2, 2, 0), old = mean(0, T0)
    # = (0.5, 1, 0); k = (new − old) / new = (0.75, 0.5, 0), a zero mean giving 0
    assert window_rates(traces, 2).tolist() == [0.75, 0.5, 0.0]
    # the official W = 10 at epoch 2: k = T1 / (T0 + T1)
    assert window_rates(traces, 10).tolist() == pytest.approx([0.75, 0.5, 0.0], abs=1e-15)
    assert window_rates(torch.zeros(0, 3, dtype=D)).tolist() == [1.0, 1.0, 1.0]  # epoch 0
    # epoch 11 at W = 10: the first trace leaves the window, (T10 − T0) / Σ T1..T10
    t = torch.arange(1.0, 12.0, dtype=D).view(-1, 1).expand(11, 3)
    assert window_rates(t).tolist() == pytest.approx([10 / sum(range(2, 12))] * 3, abs=1e-15)


def test_the_window_is_each_modalitys_own_or_the_first_ones():
    k = torch.tensor([0.75, 0.5, 0.0], dtype=D)
    assert window_open(k, 0.6, per_modality=True).tolist() == [True, False, False]
    assert window_open(k, 0.6, per_modality=False).tolist() == [True, True, True]
    assert window_open(k, 0.8, per_modality=False).tolist() == [False, False, False]
    assert window_open(k, 0.4, per_modality=True).tolist() == [True, True, False]


def test_coefficients_regulate_the_modalities_ahead_of_the_others_mean():
    s = torch.tensor([1.0, 2.0, 6.0], dtype=D)
    assert score_gaps(s).tolist() == [1 - 4.0, 2 - 3.5, 6 - 1.5]
    c = torch.tensor([0.95, 0.1, 0.1], dtype=D)
    beta = regulation_coefficients(s, c, torch.tensor([True, True, True]))
    assert beta.tolist() == pytest.approx([0.0, 0.0, 0.1 * math.exp(math.tanh(4.5))], abs=1e-15)
    closed = regulation_coefficients(s, c, torch.tensor([True, True, False]))
    assert closed.tolist() == [0.0, 0.0, 0.0]
    # two ahead of the mean: [4, 3.5, 0.5] -> gaps 4 − 2, 3.5 − 2.25, 0.5 − 3.75
    beta = regulation_coefficients(torch.tensor([4.0, 3.5, 0.5], dtype=D), c, torch.ones(3) > 0)
    want = [0.95 * math.exp(math.tanh(2.0)), 0.1 * math.exp(math.tanh(1.25)), 0.0]
    assert beta.tolist() == pytest.approx(want, abs=1e-15)


def test_two_modalities_are_the_official_if_elif():
    c = torch.tensor([0.95, 0.1], dtype=D)
    on = torch.tensor([True, True])
    for scores, want in (
        ([5.0, 3.0], [0.95 * math.exp(math.tanh(2.0)), 0.0]),
        ([3.0, 5.0], [0.0, 0.1 * math.exp(math.tanh(2.0))]),
        ([4.0, 4.0], [0.0, 0.0]),
    ):
        beta = regulation_coefficients(torch.tensor(scores, dtype=D), c, on)
        assert beta.tolist() == pytest.approx(want, abs=1e-15)


def test_the_proximal_term_is_beta_times_the_distance_to_the_snapshot():
    theta = [torch.tensor([1.0, 2.0], dtype=D), torch.tensor([[0.0]], dtype=D)]
    snap = [torch.tensor([0.5, 0.5], dtype=D), torch.tensor([[1.0]], dtype=D)]
    out = proximal_terms(theta, snap, torch.tensor(2.0, dtype=D))
    assert [t.tolist() for t in out] == [[1.0, 3.0], [[-2.0]]]


# -- the step at M = 3 against the objective written out (paper semantics) -----------------
def _perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_the_paper_step_at_three_modalities_is_the_gradient_of_the_written_out_objective():
    model = make_model_m(THREE, seed=3, scales={"text": 3.0})
    inputs, y = make_batch_m(THREE, seed=3)
    strategy = create_strategy("inforeg", semantics="paper", beta=0.7)
    strategy.on_epoch_start(0, 2)
    strategy.prepare_epoch(model, [])
    snapshot = {k: p.detach().clone() for k, p in model.named_parameters()}
    _perturb(model, 1)  # θ ≠ θ̃: the proximal term is not zero
    stats = strategy.backward(model, model(inputs), y)
    got = {k: p.grad.clone() for k, p in model.named_parameters()}

    # L = CE(z) + Σ_m CE(W_m h_m + b/3) + Σ_m β_m/2 ‖θ_m − θ̃_m‖², β_m = 0.7 e^{tanh Δ_m}
    model.zero_grad(set_to_none=True)
    out = model(inputs)
    layer = model.head.classifier[-1]
    cols = dict(zip(THREE, model.head.fusion.columns()))
    z = {
        m: nn.functional.linear(out.embeddings[m], layer.weight[:, cols[m]], layer.bias / 3)
        for m in THREE
    }
    loss = nn.functional.cross_entropy(out.logits, y)
    scores = []
    for m in THREE:
        loss = loss + nn.functional.cross_entropy(z[m], y)
        scores.append(float(torch.softmax(z[m].detach(), -1)[torch.arange(len(y)), y].sum()))
    regulated = []
    for i, m in enumerate(THREE):
        gap = scores[i] - (sum(scores) - scores[i]) / 2
        if gap > 0:
            regulated.append(m)
            beta = 0.7 * math.exp(math.tanh(gap))
            assert float(stats[f"coef_{m}"]) == pytest.approx(beta, rel=1e-12)
            for k, p in model.named_parameters():
                if k.startswith(f"{m}_"):
                    loss = loss + beta / 2 * (p - snapshot[k]).square().sum()
    loss.backward()
    assert regulated and len(regulated) < 3  # the case tests something
    assert [m for m in THREE if float(stats[f"coef_{m}"]) > 0] == regulated
    for k, p in model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-12, atol=1e-13, msg=k)


def test_official_gates_every_modality_on_the_first_ones_window_paper_on_each_own():
    model = make_model_m(THREE, seed=3, scales={"text": 3.0})
    inputs, y = make_batch_m(THREE, seed=3)
    coefs = {}
    for semantics in ("official", "paper"):
        strategy = create_strategy("inforeg", semantics=semantics, k_threshold=0.3)
        # k = T1 / (T0 + T1) at epoch 2: 0.2 for the first modality, 0.8 for the others
        strategy.traces = torch.tensor([[4.0, 1.0, 1.0], [1.0, 4.0, 4.0]], dtype=D)
        strategy.on_epoch_start(2, 4)
        strategy.prepare_epoch(model, [])
        assert strategy.rates.tolist() == pytest.approx([0.2, 0.8, 0.8], abs=1e-15)
        net = copy.deepcopy(model)
        _perturb(net, 2)
        stats = strategy.backward(net, net(inputs), y)
        coefs[semantics] = [float(stats[f"coef_{m}"]) for m in THREE]
    assert coefs["official"] == [0.0, 0.0, 0.0]  # the first modality's window is closed
    assert coefs["paper"][0] == 0.0 and max(coefs["paper"][1:]) > 0


# -- parity with the official code ---------------------------------------------------------
def _official_epoch(args, epoch, model, dataloader, optimizer, audio_trace_list, log):
    """train_epoch (main.py l.231-604) as written, the logging left out: ``model.head`` is
    the example's ``fusion_module.fc_out`` and its half width stands for the 512."""
    if epoch == 0:
        k = 1
    else:
        tr1 = sum(audio_trace_list[-10:]) / 10
        tr2 = sum(audio_trace_list[-11:-1]) / 10
        k = (tr1 - tr2) / tr1
    criterion = nn.CrossEntropyLoss()
    softmax = nn.Softmax(dim=1)
    tanh = nn.Tanh()
    global_model = copy.deepcopy(model)
    model.train()
    fim_audio = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):  # noqa: SIM102 - as written
            if "audio_net" in name and module.weight.requires_grad:
                fim_audio[name] = torch.zeros_like(module.weight)
    head, half = model.fusion_module.fc_out, model.fusion_module.fc_out.in_features // 2
    for spec, image, label in dataloader:
        optimizer.zero_grad()
        a, v, out = model(spec, image)
        out_v = torch.mm(v, torch.transpose(head.weight[:, half:], 0, 1)) + head.bias / 2
        out_a = torch.mm(a, torch.transpose(head.weight[:, :half], 0, 1)) + head.bias / 2
        loss = criterion(out, label)
        loss_out_v = criterion(out_v, label)
        loss_out_a = criterion(out_a, label)
        for loss_tem in (loss, loss_out_a, loss_out_v):  # l.406-453: read, then zeroed
            loss_tem.backward(retain_graph=True)
            optimizer.zero_grad()
        loss_out_v.backward(retain_graph=True)
        loss_out_a.backward(retain_graph=True)
        loss.backward()
        score_v = sum([softmax(out_v)[i][label[i]] for i in range(out_v.size(0))])
        score_a = sum([softmax(out_a)[i][label[i]] for i in range(out_a.size(0))])
        if (score_a > score_v) and k > args["k"]:
            beta, beta2 = 0.95 * torch.exp(tanh(score_a - score_v)), 0
        elif (score_a < score_v) and k > args["k"]:
            beta, beta2 = 0, 0.1 * torch.exp(tanh(score_v - score_a))
        else:
            beta, beta2 = 0, 0
        log.append(
            (float(torch.as_tensor(beta).detach()), float(torch.as_tensor(beta2).detach()), k)
        )
        for model_param, global_model_param in zip(model.parameters(), global_model.parameters()):
            if model_param.requires_grad and any(
                model_param is param for param in model.audio_net.parameters()
            ):
                model_param.grad += beta * (model_param - global_model_param)
            if model_param.requires_grad and any(
                model_param is param for param in model.visual_net.parameters()
            ):
                model_param.grad += beta2 * (model_param - global_model_param)
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):  # noqa: SIM102 - as written
                if "audio_net" in name and module.weight.requires_grad:
                    fim_audio[name] += module.weight.grad * module.weight.grad
                    fim_audio[name].detach_()
        optimizer.step()
    fim_trace_audio = 0
    for name in fim_audio:
        fim_trace_audio += fim_audio[name].mean().item()
    audio_trace_list.append(fim_trace_audio)


def _data(n_batches: int, seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, 1, 16, 12, generator=g, dtype=D),
            torch.randn(n, 3, 2, 16, 16, generator=g, dtype=D),
            torch.randint(0, 3, (n,), generator=g),
        )
        for _ in range(n_batches)
    ]


def test_four_epochs_equal_the_official_code_step_by_step():
    """Four epochs of four batches, SGD with the official momentum and weight decay; K =
    0.575 instead of 0.05 so that the window closes at epoch 3 (k = 1, 1, 0.60, 0.55 here:
    k = T2 / (T0 + T1 + T2) at epoch 3).
    The parameters after every step agree to 1e-12; both branches of the if/elif and the
    closed window are seen."""
    lr, epochs, threshold = 0.05, 4, 0.575
    torch.manual_seed(0)
    av_official = official.AVClassifier(n_classes=3, width=8).double()
    av_ours = copy.deepcopy(av_official)
    model = official.declare(av_ours)
    data = [_data(4, seed=10 * e + 1) for e in range(epochs)]
    opt_official = torch.optim.SGD(av_official.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    strategy = create_strategy("inforeg", k_threshold=threshold)
    opt_ours = torch.optim.SGD(
        strategy.param_groups(model, lr), lr=lr, momentum=0.9, weight_decay=1e-4
    )
    log: list = []
    audio_trace_list = [0.0] * 10
    for epoch in range(epochs):
        strategy.on_epoch_start(epoch, epochs)
        strategy.prepare_epoch(model, [])
        steps = []
        for spec, frames, label in data[epoch]:
            opt_ours.zero_grad()
            out = model({"audio": spec, "visual": frames})
            steps.append(strategy.backward(model, out, label))
            opt_ours.step()
        before = len(log)
        _official_epoch(
            {"k": threshold}, epoch, av_official, data[epoch], opt_official, audio_trace_list, log
        )
        for stats, (b_a, b_v, k) in zip(steps, log[before:]):
            assert float(stats["coef_audio"]) == pytest.approx(b_a, rel=1e-12, abs=1e-15)
            assert float(stats["coef_visual"]) == pytest.approx(b_v, rel=1e-12, abs=1e-15)
            assert float(stats["rate_audio"]) == pytest.approx(k, rel=1e-12)
        for p, q in zip(av_ours.parameters(), av_official.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    # the trace our strategy closed for the epochs so far equals the official list's
    strategy.on_epoch_start(epochs, epochs + 1)
    strategy.prepare_epoch(model, [])
    assert strategy.traces[:, 0].tolist() == pytest.approx(audio_trace_list[10:], rel=1e-12)
    audio_first = any(b_a > 0 for b_a, _, _ in log)
    visual_first = any(b_v > 0 for _, b_v, _ in log)
    closed = any(k <= threshold for _, _, k in log)
    assert audio_first and visual_first and closed


# -- the epoch-start hook: never silently joint --------------------------------------------
def test_an_own_loop_that_skips_prepare_epoch_fails_naming_the_hook():
    model = make_model_m(THREE, seed=1)
    inputs, y = make_batch_m(THREE, seed=1)
    strategy = create_strategy("inforeg")
    with pytest.raises(ConfigError, match=r"prepare_epoch\(model, batches\).*epoch 0 has none"):
        strategy.backward(model, model(inputs), y)
    strategy.prepare_epoch(model, [])
    strategy.backward(model, model(inputs), y)
    strategy.on_epoch_start(1, 3)
    with pytest.raises(ConfigError, match=r"prepare_epoch.*epoch 1 has none"):
        strategy.backward(model, model(inputs), y)


def test_the_state_survives_a_weights_only_checkpoint_mid_epoch_and_continues_identically():
    inputs, y = make_batch_m(THREE, seed=5)
    model = make_model_m(THREE, seed=5)
    strategy = create_strategy("inforeg", semantics="paper", k_threshold=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for epoch in range(2):
        strategy.on_epoch_start(epoch, 4)
        strategy.prepare_epoch(model, [])
        for _ in range(2):
            opt.zero_grad()
            strategy.backward(model, model(inputs), y)
            opt.step()
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    resumed = create_strategy("inforeg", semantics="paper", k_threshold=0.0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.prepared_epoch == 1 and not resumed.needs_preparation()
    assert resumed.trace_steps == 2 and resumed.traces.shape == (1, 3)
    twin = copy.deepcopy(model)
    coefs = []
    for s, net in ((strategy, model), (resumed, twin)):
        for epoch in (1, 2):  # the rest of epoch 1 (towards the loaded θ̃), then epoch 2
            if epoch == 2:
                s.on_epoch_start(2, 4)
                s.prepare_epoch(net, [])
            net.zero_grad(set_to_none=True)
            stats = s.backward(net, net(inputs), y)
            coefs.append([float(stats[f"coef_{m}"]) for m in THREE])
    assert max(coefs[0]) > 0  # regulated: the snapshot is in the comparison
    assert coefs[:2] == coefs[2:]
    assert torch.equal(strategy.traces, resumed.traces)
    assert torch.equal(strategy.rates, resumed.rates)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="beta"):
        create_strategy("inforeg", beta=-1.0)
    with pytest.raises(ConfigError, match="trace_window"):
        create_strategy("inforeg", trace_window=0)
    with pytest.raises(ConfigError, match="semantics"):
        create_strategy("inforeg", semantics="both")


def test_registered_in_the_field_and_all_sets_not_in_the_default_run():
    from balgrad.strategies._registry import default_methods, method_set, strategy_options

    assert "inforeg" in method_set("field") and "inforeg" in method_set("all")
    assert "inforeg" not in default_methods()
    assert strategy_options("inforeg") == {
        "beta": 0.95,
        "beta2": 0.1,
        "k_threshold": 0.05,
        "trace_window": 10,
        "semantics": "official",
    }


# -- mixed precision ----------------------------------------------------------------------
def _regulated_step(model, inputs, y, scaler=None):
    strategy = create_strategy("inforeg", semantics="paper")
    strategy.prepare_epoch(model, [])
    _perturb(model, 3)
    stats = strategy.backward(model, model(inputs), y, scaler=scaler)
    return strategy, stats


def test_a_loss_scale_scales_the_gradient_and_the_proximal_term_and_nothing_else():
    s = 2.0**10
    model = make_model_m(THREE, seed=3, scales={"text": 3.0})
    scaled = copy.deepcopy(model)
    inputs, y = make_batch_m(THREE, seed=3)
    plain, plain_stats = _regulated_step(model, inputs, y)
    scaler = torch.amp.GradScaler("cpu", init_scale=s)
    other, scaled_stats = _regulated_step(scaled, inputs, y, scaler)
    assert max(float(plain_stats[f"coef_{m}"]) for m in THREE) > 0
    for p, q in zip(model.parameters(), scaled.parameters()):
        torch.testing.assert_close(q.grad, s * p.grad, rtol=1e-12, atol=0)
    for key, value in plain_stats.items():
        torch.testing.assert_close(scaled_stats[key], value, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(other.trace_sum, plain.trace_sum, rtol=1e-10, atol=0)


def test_a_bf16_model_runs_and_an_overflow_is_left_to_the_scaler_out_of_the_trace():
    model = make_model_m(THREE, seed=1).to(torch.bfloat16)
    inputs, y = make_batch_m(THREE, seed=1)
    inputs = {m: x.to(torch.bfloat16) for m, x in inputs.items()}
    strategy, stats = _regulated_step(model, inputs, y)
    assert all(torch.isfinite(v) for v in stats.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads)
    # an infinite gradient (an fp16 overflow): the scaler skips the step, the trace
    # leaves the step's non-finite share out
    model.zero_grad(set_to_none=True)
    out = model(inputs)
    out.embeddings["audio"].register_hook(lambda g: g * float("inf"))
    before = strategy.trace_sum.clone()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    strategy.backward(model, out, y, scaler=scaler)
    assert torch.isfinite(strategy.trace_sum).all() and strategy.trace_sum[0] == before[0]
