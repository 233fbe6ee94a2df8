"""MLA: the fusion weights and the projection worked by hand at M = 3, the step against an
independent transcription of the official loop (``main.py::train_epoch``, gs branch) and
of the paper's projection, the owned optimizer steps and the test-time fusion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference_m import make_batch_m, make_model_m, tower_params

from balgrad.errors import ConfigError
from balgrad.evaluate._protocol import predict
from balgrad.strategies import create_strategy
from balgrad.strategies._mla import (
    batch_entropy,
    entropy_weights,
    fuse_logits,
    fusion_weights,
    owm_update,
    project_gradient,
    sample_entropy,
)

TWO = ("audio", "visual")
THREE = ("audio", "visual", "text")
D = torch.float64


def _h(*p: float) -> float:
    """−Σ p log p, by hand."""
    return -sum(x * math.log(x) for x in p)


# -- the fusion weights, by hand at M = 3 ------------------------------------------------
def test_paper_weights_are_per_sample_softmax_of_minus_the_class_entropy():
    # sample 0: p = (3/4, 1/4), uniform, (1/2, 1/2)... chosen so that each H is closed-form
    z = [
        torch.tensor([[math.log(3), 0.0], [0.0, 0.0]], dtype=D),  # H = h(3/4,1/4), log 2
        torch.tensor([[0.0, 0.0], [math.log(3), 0.0]], dtype=D),  # H = log 2, h(3/4,1/4)
        torch.tensor([[0.0, math.log(7)], [0.0, math.log(7)]], dtype=D),  # h(1/8, 7/8) twice
    ]
    a, u, b = _h(0.75, 0.25), math.log(2), _h(1 / 8, 7 / 8)
    H = [[a, u, b], [u, a, b]]
    torch.testing.assert_close(sample_entropy(z[0]), torch.tensor([a, u], dtype=D))
    want = torch.tensor(
        [[math.exp(-x) / sum(math.exp(-y) for y in row) for x in row] for row in H], dtype=D
    )
    w = fusion_weights(z, "paper")
    torch.testing.assert_close(w, want)
    fused = fuse_logits(z, w)
    for i in range(2):
        torch.testing.assert_close(fused[i], sum(want[i, m] * z[m][i] for m in range(3)))


def test_official_weights_are_one_per_batch_from_the_softmax_over_the_batch():
    # each column of z_m over the batch of two is (log 3, 0) or (0, 0): q = (3/4, 1/4) or 1/2
    col = torch.tensor([math.log(3), 0.0], dtype=D)
    flat = torch.zeros(2, dtype=D)
    z = [
        torch.stack([col, col], 1),  # two columns of (3/4, 1/4): H = 2 h(3/4, 1/4)
        torch.stack([col, flat], 1),  # H = h(3/4, 1/4) + log 2
        torch.stack([flat, flat], 1),  # H = 2 log 2
    ]
    a, u = _h(0.75, 0.25), math.log(2)
    H = [2 * a, a + u, 2 * u]
    torch.testing.assert_close(batch_entropy(z[1]), torch.tensor(a + u, dtype=D))
    want = torch.tensor([math.exp(max(H) - x) / sum(math.exp(max(H) - y) for y in H) for x in H])
    w = fusion_weights(z, "official")
    torch.testing.assert_close(w, want.to(D))
    torch.testing.assert_close(fuse_logits(z, w), sum(want[m].item() * z[m] for m in range(3)))


def _official_gating3(o1, o2, o3):
    """main.py::calculate_entropy and calculate_gating_weights3, as written."""

    def entropy(output):
        probabilities = F.softmax(output, dim=0)
        return -torch.sum(probabilities * torch.log(probabilities))

    e1, e2, e3 = entropy(o1), entropy(o2), entropy(o3)
    top = max(e1, e2, e3)
    g1, g2, g3 = torch.exp(top - e1), torch.exp(top - e2), torch.exp(top - e3)
    s = g1 + g2 + g3
    return g1 / s, g2 / s, g3 / s


def test_official_weights_match_the_transcribed_gating_on_random_logits():
    g = torch.Generator().manual_seed(3)
    z = [torch.randn(5, 4, generator=g, dtype=D) * s for s in (0.5, 1.0, 3.0)]
    torch.testing.assert_close(fusion_weights(z, "official"), torch.stack(_official_gating3(*z)))
    assert torch.allclose(
        entropy_weights(torch.zeros(3, dtype=D)), torch.full((3,), 1 / 3, dtype=D)
    )


# -- the projection, by hand at M = 3 -----------------------------------------------------
def test_each_modality_is_projected_off_the_directions_of_the_ones_before():
    alpha, eye = 0.1, torch.eye(2, dtype=D)
    r1, r2 = torch.tensor([1.0, 0.0], dtype=D), torch.tensor([0.0, 2.0], dtype=D)
    P1 = owm_update(eye, r1, alpha)  # I − e1 e1ᵀ / 1.1
    torch.testing.assert_close(P1, torch.diag(torch.tensor([1 / 11, 1.0], dtype=D)))
    P2 = owm_update(P1, r2, alpha)  # k = (0, 2), rᵀk = 4: 1 − 4 / 4.1 = 1/41
    torch.testing.assert_close(P2, torch.diag(torch.tensor([1 / 11, 1 / 41], dtype=D)))
    g = torch.ones(3, 2, dtype=D)  # a weight gradient [C, d]
    torch.testing.assert_close(project_gradient(g, eye), g)  # the first modality: as it is
    torch.testing.assert_close(project_gradient(g, P1)[0], torch.tensor([1 / 11, 1.0], dtype=D))
    torch.testing.assert_close(project_gradient(g, P2)[0], torch.tensor([1 / 11, 1 / 41], dtype=D))


# -- the step against transcriptions ----------------------------------------------------
def _official_batch(model, optimizer, inputs, y):
    """main.py l.419-470 (gs_flag), on balgrad's sum-fusion model, whose head on one
    embedding is the official fc_out; torch 1.8.1's zero_grad() sets gradients to zero."""
    optimizer.zero_grad(set_to_none=False)
    hs = model.embed(inputs)  # one forward of every encoder
    fc_out = model.head.classifier
    for m in model.modalities:  # a, v (, t)
        loss = F.cross_entropy(fc_out(hs[m]), y)
        loss.backward()
        # gs_plugin.before_update: tests n == "module.weight", never true for a Linear
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
    for p in model.parameters():
        p.grad = None  # `del p.grad`


@pytest.mark.parametrize("names", [TWO, THREE], ids=["M2", "M3"])
def test_official_semantics_equal_the_transcribed_official_loop(names):
    """SGD with the official momentum 0.9 and weight decay 1e-4, three batches: every
    parameter agrees after every batch (the earlier encoders' zero-gradient momentum steps
    included)."""
    ours, ref = make_model_m(names, fusion="sum", seed=4), make_model_m(names, fusion="sum", seed=4)
    strategy = create_strategy("mla")
    kw = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
    opt_ours = torch.optim.SGD(strategy.param_groups(ours, kw["lr"]), **kw)
    opt_ref = torch.optim.SGD(ref.parameters(), **kw)
    for k in range(3):
        inputs, y = make_batch_m(names, seed=k)
        _official_batch(ref, opt_ref, inputs, y)
        stats = strategy.train_step(ours, inputs, y, opt_ours)
        for (n, p), q in zip(ours.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12, msg=f"{n} after batch {k}")
        assert all(p.grad is None for p in ours.parameters())
    assert {f"loss_{m}" for m in names} <= set(stats)


def test_paper_semantics_equal_a_transcription_of_the_projected_alternation():
    """Plain SGD, three modalities, two batches: step m moves θ_m and the head only, with
    the head weight's gradient times P built from every earlier step's mean embedding."""
    names, lr, alpha = THREE, 0.1, 0.1
    ours, ref = make_model_m(names, fusion="sum", seed=5), make_model_m(names, fusion="sum", seed=5)
    strategy = create_strategy("mla", semantics="paper", alpha=alpha)
    opt = torch.optim.SGD(strategy.param_groups(ours, lr), lr=lr)
    fc = ref.head.classifier[-1]
    P = torch.eye(fc.weight.shape[1], dtype=D)
    for k in range(2):
        inputs, y = make_batch_m(names, seed=10 + k)
        hs = ref.embed(inputs)
        for m in names:
            params = [*tower_params(ref, m), fc.weight, fc.bias]
            grads = torch.autograd.grad(F.cross_entropy(fc(hs[m]), y), params)
            grads = [*grads[:-2], grads[-2] @ P, grads[-1]]
            r = hs[m].detach().mean(0)
            P = P - torch.outer(P @ r, P @ r) / (alpha + r @ P @ r)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= lr * g
        stats = strategy.train_step(ours, inputs, y, opt)
        for (n, p), q in zip(ours.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=f"{n} after batch {k}")
    assert all(0 < float(stats[f"grad_kept_{m}"]) < 1 for m in names)
    torch.testing.assert_close(strategy.projector, P)


def test_paper_steps_leave_the_other_encoders_alone_even_with_momentum():
    model = make_model_m(THREE, fusion="sum", seed=6)
    strategy = create_strategy("mla", semantics="paper")
    opt = torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1, momentum=0.9, weight_decay=0.1)
    moved = []
    opt.step = (lambda step: lambda *a, **k: (moved.append(_grads(model)), step(*a, **k))[1])(
        opt.step
    )
    inputs, y = make_batch_m(THREE, seed=2)
    strategy.train_step(model, inputs, y, opt)
    assert [sorted(m for m in THREE if g[m]) for g in moved] == [[m] for m in THREE]


def _grads(model):
    return {m: any(p.grad is not None for p in tower_params(model, m)) for m in model.modalities}


# -- the lifecycle: owned steps, never silently joint ------------------------------------
def test_backward_alone_is_refused_naming_train_step():
    model = make_model_m(TWO, fusion="sum", seed=1)
    inputs, y = make_batch_m(TWO, seed=1)
    strategy = create_strategy("mla")
    with pytest.raises(ConfigError, match=r"2 optimizer steps per batch.*strategy\.train_step"):
        strategy.backward(model, model(inputs), y)
    assert all(p.grad is None for p in model.parameters())
    assert strategy.steps_per_batch(model) == 2


@pytest.mark.parametrize("names", [TWO, THREE], ids=["M2", "M3"])
def test_an_own_loop_with_train_step_lowers_every_unimodal_loss(names):
    model = make_model_m(names, fusion="sum", seed=2)
    strategy = create_strategy("mla")
    opt = torch.optim.SGD(strategy.param_groups(model, 0.2), lr=0.2)
    inputs, y = make_batch_m(names, seed=3)
    first = strategy.train_step(model, inputs, y, opt)
    for _ in range(15):
        last = strategy.train_step(model, inputs, y, opt)
    for m in names:
        assert float(last[f"loss_{m}"]) < float(first[f"loss_{m}"])
    assert strategy.step == 16  # one strategy step (and one observer call) per batch


def test_train_step_is_the_plain_step_for_a_strategy_that_does_not_own_its_steps():
    names = TWO
    a, b = make_model_m(names, seed=7), make_model_m(names, seed=7)
    sa, sb = create_strategy("joint"), create_strategy("joint")
    oa, ob = (torch.optim.SGD(s.param_groups(m, 0.1), lr=0.1) for s, m in ((sa, a), (sb, b)))
    inputs, y = make_batch_m(names, seed=1)
    sa.train_step(a, inputs, y, oa)
    ob.zero_grad()
    sb.backward(b, b(inputs), y)
    ob.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# -- the test-time fusion -----------------------------------------------------------------
class _Batch:
    def __init__(self, inputs, y, start):
        self.inputs, self.target, self.drop = inputs, y, {}
        self.index = torch.arange(start, start + len(y))

    def to(self, device):
        return self


def test_evaluation_scores_the_fusion_batch_by_batch():
    """predict() with the strategy's fusion: the official weights of each batch (so the
    same sample scores differently in another batch), not the fused head's logits."""
    model = make_model_m(THREE, fusion="sum", seed=8)
    strategy = create_strategy("mla")
    batches = [_Batch(*make_batch_m(THREE, seed=s), 8 * s) for s in range(2)]
    pred = predict(model, batches, fuse=strategy.fuse)
    with torch.no_grad():
        want = torch.cat([strategy.fuse(model, model(b.inputs)) for b in batches])
        whole = strategy.fuse(
            model, model({m: torch.cat([b.inputs[m] for b in batches]) for m in THREE})
        )
        plain = predict(model, batches).logits
    torch.testing.assert_close(pred.logits, want.float())
    assert not torch.allclose(pred.logits, whole.float())  # batch-dependent weights
    assert not torch.allclose(pred.logits, plain)


def test_fixed_fusion_and_its_weights_are_checked():
    model = make_model_m(THREE, fusion="sum", seed=9)
    out = model(make_batch_m(THREE, seed=1)[0])
    z = [out.unimodal[m] for m in THREE]
    fixed = create_strategy("mla", fusion="fixed", fusion_weights=[0.35, 0.25, 0.40])
    torch.testing.assert_close(
        fixed.fuse(model, out), (0.35 * z[0] + 0.25 * z[1] + 0.40 * z[2]).float()
    )
    uniform = create_strategy("mla", fusion="fixed")
    torch.testing.assert_close(uniform.fuse(model, out), (sum(z) / 3).float())
    with pytest.raises(ConfigError, match=r"fusion_weights: 2 weights for the model's 3"):
        create_strategy("mla", fusion="fixed", fusion_weights=[0.5, 0.5]).fuse(model, out)


def test_multi_label_fusion_uses_the_bernoulli_entropies():
    z = torch.tensor([[0.0, math.log(3)]], dtype=D)  # sigmoids 1/2 and 3/4
    torch.testing.assert_close(
        sample_entropy(z, "multi_label"), torch.tensor([math.log(2) + _h(0.75, 0.25)], dtype=D)
    )


def test_separate_unimodal_heads_are_refused():
    model = make_model_m(TWO, unimodal_head="separate", seed=1)
    strategy = create_strategy("mla")
    opt = torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1)
    with pytest.raises(ConfigError, match="unimodal_head='shared'"):
        strategy.train_step(model, *make_batch_m(TWO, seed=1), opt)


def test_the_projector_survives_a_checkpoint():
    model = make_model_m(TWO, fusion="concat", seed=3)
    strategy = create_strategy("mla", semantics="paper")
    opt = torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1)
    strategy.train_step(model, *make_batch_m(TWO, seed=1), opt)
    again = create_strategy("mla", semantics="paper")
    again.load_state_dict(strategy.state_dict())
    torch.testing.assert_close(again.projector, strategy.projector)
    assert strategy.projector.shape == (12, 12)  # concat: the head's input is [h_1; h_2]


def test_a_grad_scaler_scales_every_step_and_unscales_before_it():
    """fp16's GradScaler (here the CPU's, power-of-two scale: exact): each modality's loss
    is scaled, each step unscaled and the scale updated; the same parameters as without."""
    a, b = make_model_m(THREE, fusion="sum", seed=4), make_model_m(THREE, fusion="sum", seed=4)
    sa, sb = create_strategy("mla"), create_strategy("mla")
    oa = torch.optim.SGD(sa.param_groups(a, 0.05), lr=0.05, momentum=0.9)
    ob = torch.optim.SGD(sb.param_groups(b, 0.05), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    for k in range(3):
        inputs, y = make_batch_m(THREE, seed=k)
        sa.train_step(a, inputs, y, oa)
        sb.train_step(b, inputs, y, ob, scaler=scaler)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert scaler.get_scale() > 2.0**10  # updated after every step: grew at steps 2, 4, 6, 8
