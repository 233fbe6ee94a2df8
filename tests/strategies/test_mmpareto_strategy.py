"""MMPareto: the pure functions by hand at M = 3, the strategy against a transcription of
the official step (GeWu-Lab/MMPareto_ICML2024 @ a339db3, ``code/MMPareto.py::train_epoch``
and ``code/min_norm_solvers.py``) on a model shaped like the official ``AVClassifier``,
and the ``paper`` reading against an independent per-encoder computation at M = 3.

Tolerances: everything is float64; the official step and balgrad's differ only in the
order of floating-point operations (the official sums the three losses in one backward,
balgrad adds g_T + g_u; its dot products run over per-tensor lists twice), so the updates
agree to ~1e-15 relative; 1e-10 leaves room and still fails on any wrong coefficient.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from reference_m import make_batch_m, make_model_m
from torch import nn
from torch.func import functional_call

from balgrad.errors import ConfigError
from balgrad.models import ModelOutput
from balgrad.strategies import create_strategy
from balgrad.strategies._mmpareto import (
    magnitude_factors,
    min_norm_weights,
    mmpareto_merge_,
    mmpareto_weights,
)

THREE = ("audio", "visual", "text")


# -- the pure functions, by hand, at M = 3 -------------------------------------------------
def test_min_norm_weights_closed_form_and_end_points():
    # g1 = (1, 0), g2 = (0, 2): c = (4 − 0) / (1 + 4 − 0) = 0.8
    # g1 = (1, 0), g2 = (−2, 1): c = (5 + 2) / (1 + 5 + 4) = 0.7
    # g1 = (1, 0), g2 = (3, 0): <g1, g2> = 3 ≥ |g1|² = 1, the end point g1 (c = 1)
    v11 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    v12 = torch.tensor([0.0, -2.0, 3.0], dtype=torch.float64)
    v22 = torch.tensor([4.0, 5.0, 9.0], dtype=torch.float64)
    c, rest = min_norm_weights(v11, v12, v22, official=False)
    torch.testing.assert_close(c, torch.tensor([0.8, 0.7, 1.0], dtype=torch.float64))
    torch.testing.assert_close(rest, 1 - c)
    c, _ = min_norm_weights(v11, v12, v22, official=True)
    torch.testing.assert_close(c, torch.tensor([0.8, 0.7, 0.999], dtype=torch.float64))
    # the other end point: <g1, g2> ≥ |g2|² (g2 = (0.5, 0), g1 = (1, 0)) → c = 0 / 0.001
    one = torch.tensor([1.0], dtype=torch.float64)
    assert float(min_norm_weights(one, 0.5 * one, 0.25 * one, official=False)[0]) == 0.0
    assert float(min_norm_weights(one, 0.5 * one, 0.25 * one, official=True)[0]) == 0.001


def test_the_weights_are_a_half_each_where_the_gradients_agree():
    # encoders: a: g_T=(1,0), g_u=(0,2) (cos 0: MinNorm); v: g_T=(1,1), g_u=(2,0) (cos > 0);
    # t: g_T=(1,0), g_u=(−2,1) (cos < 0: MinNorm)
    dot = torch.tensor([0.0, 2.0, -2.0], dtype=torch.float64)
    sq_t = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    sq_u = torch.tensor([4.0, 4.0, 5.0], dtype=torch.float64)
    k = mmpareto_weights(dot, sq_t, sq_u, official=False)
    want = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.7, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(k, want)


def test_the_magnitude_rule_by_hand():
    # a: h = 2(0.8 (1,0) + 0.2 (0,2)) = (1.6, 0.8), s = (1, 2): |s|/|h| = √5/√3.2 = 1.25
    # v: h = s = (3, 1): 1;  t: h = 2(0.7 (1,0) + 0.3 (−2,1)) = (0.2, 0.6), s = (−1, 1): √5
    sq_s = torch.tensor([5.0, 10.0, 2.0], dtype=torch.float64)
    sq_h = torch.tensor([3.2, 10.0, 0.4], dtype=torch.float64)
    f = magnitude_factors(sq_s, sq_h, 1.5)
    torch.testing.assert_close(
        f, 1.5 * torch.tensor([1.25, 1.0, math.sqrt(5)], dtype=torch.float64)
    )
    # per tensor the ratio may be < 1: the official rule never scales down, and |h| = 0
    # gives γ (the tensor's h stays 0) instead of the official 0 · inf
    f = magnitude_factors(torch.tensor([1.0, 4.0]), torch.tensor([2.56, 0.0]), 1.5)
    torch.testing.assert_close(f, torch.tensor([1.5, 1.5]))
    f = magnitude_factors(torch.tensor([1.0]), torch.tensor([2.56]), 1.5, only_up=False)
    torch.testing.assert_close(f, torch.tensor([1.5 / 1.6]))


@pytest.mark.parametrize("per_tensor", [True, False], ids=["official", "paper"])
def test_the_merge_by_hand_at_three_encoders(per_tensor):
    """Encoder a in two tensors, g_T = ((1), (0)), g_u = ((0), (2)): k = (0.8, 0.2),
    h = ((1.6), (0.8)), s = ((1), (2)). Per tensor: |s|/|h| = 1/1.6 < 1 → 1, and
    2/0.8 = 2.5, so γ(1.6, 2.5 · 0.8) = (2.4, 3.0); per encoder: √5/√3.2 = 1.25, so
    γ 1.25 (1.6, 0.8) = (3.0, 1.5). Encoders v and t are one tensor each (h = s = (3, 1);
    h = (0.2, 0.6), |s|/|h| = √5), the same under both rules."""
    f64 = {"dtype": torch.float64}
    g_t = [torch.tensor([1.0], **f64), torch.tensor([0.0], **f64)]
    g_t += [torch.tensor([1.0, 1.0], **f64), torch.tensor([1.0, 0.0], **f64)]
    g_u = [torch.tensor([0.0], **f64), torch.tensor([2.0], **f64)]
    g_u += [torch.tensor([2.0, 0.0], **f64), torch.tensor([-2.0, 1.0], **f64)]
    k = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.7, 0.3]], **f64)
    mmpareto_merge_(g_t, g_u, k, [2, 1, 1], 1.5, per_tensor=per_tensor)
    a = [2.4, 3.0] if per_tensor else [3.0, 1.5]
    want = [[a[0]], [a[1]], [4.5, 1.5], [1.5 * math.sqrt(5) * 0.2, 1.5 * math.sqrt(5) * 0.6]]
    for got, w in zip(g_t, want):
        torch.testing.assert_close(got, torch.tensor(w, **f64), rtol=1e-14, atol=1e-15)


# -- a model shaped like the official AVClassifier ----------------------------------------
class AVClassifierLike(nn.Module):
    """``audio_net``, ``visual_net``, ``head`` on the concatenation, ``head_audio`` and
    ``head_video`` (the official names, which its parameter filter relies on), with the
    balgrad contract on top."""

    modalities = ("audio", "visual")
    task = "single_label"

    def __init__(self, seed: int, d: int = 6, classes: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.audio_net = nn.Sequential(nn.Linear(5, d), nn.Tanh(), nn.Linear(d, d))
        self.visual_net = nn.Sequential(nn.Linear(4, d), nn.Tanh(), nn.Linear(d, d))
        self.head = nn.Linear(2 * d, classes)
        self.head_audio = nn.Linear(d, classes)
        self.head_video = nn.Linear(d, classes)
        self.double()

    def official_forward(self, spec, images):
        a, v = self.audio_net(spec), self.visual_net(images)
        return self.head(torch.cat((a, v), 1)), self.head_audio(a), self.head_video(v)

    def forward(self, inputs):
        a, v = self.audio_net(inputs["audio"]), self.visual_net(inputs["visual"])
        return ModelOutput(
            self.classify({"audio": a, "visual": v}),
            {"audio": self.head_audio(a), "visual": self.head_video(v)},
            {"audio": a, "visual": v},
        )

    def classify(self, h, detach_head=False):
        x = torch.cat((h["audio"], h["visual"]), 1)
        if not detach_head:
            return self.head(x)
        return functional_call(
            self.head, {n: p.detach() for n, p in self.head.named_parameters()}, (x,)
        )

    def parameter_groups(self):
        return {
            "audio": list(self.audio_net.parameters()),
            "visual": list(self.visual_net.parameters()),
            "head": list(self.head.parameters()),
            "unimodal_heads": [*self.head_audio.parameters(), *self.head_video.parameters()],
        }


# -- the official step, transcribed --------------------------------------------------------
def official_min_norm_2(vecs):
    """``MinNormSolver.find_min_norm_element`` for two tasks: ``_min_norm_2d`` (sums of the
    per-entry products over each task's list) then ``_min_norm_element_from2``."""
    dps = {}
    for i, j in ((0, 0), (0, 1), (1, 1)):
        dps[(i, j)] = sum(torch.mul(x, y).sum() for x, y in zip(vecs[i], vecs[j]))
    v1v1, v1v2, v2v2 = dps[(0, 0)], dps[(0, 1)], dps[(1, 1)]
    if v1v2 >= v1v1:
        gamma = 0.999
    elif v1v2 >= v2v2:
        gamma = 0.001
    else:
        gamma = -1.0 * ((v1v2 - v2v2) / (v1v1 + v2v2 - 2 * v1v2))
    return [gamma, 1 - gamma]


def official_step(model, spec, images, label, optimizer):
    """One iteration of the official ``train_epoch`` loop body; returns the branch taken
    per encoder (True: MinNorm) and leaves the final gradients in ``.grad``."""
    criterion = nn.CrossEntropyLoss()
    record = {"audio": [], "visual": []}
    for name, param in model.named_parameters():
        if "head" in name:
            continue
        if "audio" in name:
            record["audio"].append((name, param))
            continue
        if "visual" in name:
            record["visual"].append((name, param))
    optimizer.zero_grad()
    out, out_a, out_v = model.official_forward(spec, images)
    loss_mm, loss_a, loss_v = (
        criterion(out, label),
        criterion(out_a, label),
        criterion(out_v, label),
    )
    grads = {"audio": {}, "visual": {}}
    for loss, loss_type in ((loss_mm, "both"), (loss_a, "audio"), (loss_v, "visual")):
        loss.backward(retain_graph=True)
        for enc in ("audio", "visual"):
            if loss_type in ("both", enc):
                d = {n: p.grad.data.clone() for n, p in record[enc]}
                d["concat"] = torch.cat([d[n].flatten() for n, _ in record[enc]])
                grads[enc][loss_type] = d
        optimizer.zero_grad()
    k, pareto = {}, {}
    for enc in ("audio", "visual"):
        cos = F.cosine_similarity(grads[enc]["both"]["concat"], grads[enc][enc]["concat"], dim=0)
        pareto[enc] = not bool(cos > 0)
        if pareto[enc]:
            k[enc] = official_min_norm_2([list(grads[enc][t].values()) for t in ("both", enc)])
        else:
            k[enc] = [0.5, 0.5]
    gamma = 1.5
    (loss_mm + loss_a + loss_v).backward()
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        layer = re.split("[_.]", str(name))
        if "head" in layer:
            continue
        for enc in ("audio", "visual"):
            if enc in layer:
                three_norm = torch.norm(param.grad.data.clone())
                new_grad = (
                    2 * k[enc][0] * grads[enc]["both"][name] + 2 * k[enc][1] * grads[enc][enc][name]
                )
                diff = three_norm / torch.norm(new_grad)
                param.grad = diff * new_grad * gamma if diff > 1 else new_grad * gamma
    return pareto


def sgd(model):  # the official optimizer: SGD(lr, momentum 0.9, weight_decay 1e-4)
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def batch(step: int):
    g = torch.Generator().manual_seed(100 + step)
    spec = torch.randn(16, 5, generator=g, dtype=torch.float64)
    images = torch.randn(16, 4, generator=g, dtype=torch.float64)
    return spec, images, torch.randint(0, 3, (16,), generator=g)


def force(model, agree: bool) -> None:
    """Unimodal heads equal to (agree) or opposite to (conflict) the fused head's columns,
    so that cos(g_T, g_u) on each encoder is forced positive or negative."""
    d = model.head_audio.in_features
    sign = 1.0 if agree else -1.0
    with torch.no_grad():
        model.head_audio.weight.copy_(sign * model.head.weight[:, :d])
        model.head_video.weight.copy_(sign * model.head.weight[:, d:])


@pytest.mark.parametrize("agree", [True, False], ids=["cos>0", "cos<0"])
def test_official_semantics_equals_the_official_step(agree):
    official_model = AVClassifierLike(seed=4)
    force(official_model, agree)
    model = copy.deepcopy(official_model)
    opt_official, opt = sgd(official_model), sgd(model)
    strategy = create_strategy("mmpareto")
    for step in range(3):
        spec, images, label = batch(step)
        pareto = official_step(official_model, spec, images, label, opt_official)
        opt.zero_grad(set_to_none=True)
        stats = strategy.backward(model, model({"audio": spec, "visual": images}), label)
        if step == 0:  # the forced branch is the one both took
            assert pareto == {"audio": not agree, "visual": not agree}
            for enc in ("audio", "visual"):
                assert float(stats[f"pareto_{enc}"]) == float(not agree)
        for (name, p), q in zip(official_model.named_parameters(), model.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-13, msg=name)
        opt_official.step()
        opt.step()
    for (name, p), q in zip(official_model.named_parameters(), model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-13, msg=name)


def test_the_heads_keep_the_summed_gradient_and_gamma_scales_the_encoders():
    model = AVClassifierLike(seed=5)
    force(model, agree=True)
    spec, images, label = batch(0)
    out, out_a, out_v = model.official_forward(spec, images)
    losses = [F.cross_entropy(o, label) for o in (out, out_a, out_v)]
    summed = torch.autograd.grad(sum(losses), list(model.parameters()))
    for gamma in (1.5, 1.0):
        model.zero_grad(set_to_none=True)
        create_strategy("mmpareto", gamma=gamma).backward(
            model, model({"audio": spec, "visual": images}), label
        )
        for (name, p), g in zip(model.named_parameters(), summed):
            # cos > 0 on both encoders: h = g_T + g_u, so every tensor gets γ × the sum
            want = g if "head" in name else gamma * g
            torch.testing.assert_close(p.grad, want, rtol=1e-10, atol=1e-13, msg=name)


# -- the paper reading at M = 3, against an independent per-encoder computation -----------
def conflicting_visual_head():
    """Separate unimodal heads equal to the fused head's columns, the visual one negated:
    g_T and g_u agree on the audio and text towers and conflict on the visual one."""
    model = make_model_m(THREE, unimodal_head="separate", seed=6)
    w = model.head.classifier[-1].weight
    with torch.no_grad():
        for i, m in enumerate(THREE):
            sign = -1.0 if m == "visual" else 1.0
            getattr(model, f"{m}_head").weight.copy_(sign * w[:, 6 * i : 6 * (i + 1)])
    return model


def _flat(gs):
    return torch.cat([g.reshape(-1) for g in gs])


@pytest.mark.parametrize("semantics", ["paper", "official"])
def test_three_modalities_against_an_independent_computation(semantics):
    model = conflicting_visual_head()
    inputs, y = make_batch_m(THREE, seed=6)
    out = model(inputs)
    loss_t = F.cross_entropy(out.logits, y)
    strategy = create_strategy("mmpareto", semantics=semantics)
    expected, branches = {}, {}
    for m in THREE:
        ps = [
            *getattr(model, f"{m}_embedding").parameters(),
            *getattr(model, f"{m}_encoder").parameters(),
        ]
        g_t = torch.autograd.grad(loss_t, ps, retain_graph=True)
        g_u = torch.autograd.grad(F.cross_entropy(out.unimodal[m], y), ps, retain_graph=True)
        a, b = _flat(g_t), _flat(g_u)
        if a @ b > 0:
            c = 0.5
        else:  # the segment's min-norm point, by a fine grid search (no closed form)
            grid = torch.linspace(0, 1, 200001, dtype=torch.float64)
            norms = ((grid[:, None] * a + (1 - grid[:, None]) * b) ** 2).sum(1)
            c = float(grid[norms.argmin()])
        branches[m] = bool(a @ b <= 0)
        hs = [2 * (c * x + (1 - c) * z) for x, z in zip(g_t, g_u)]
        if semantics == "paper":
            f = (a + b).norm() / _flat(hs).norm()
            hs = [1.5 * f * h for h in hs]
        else:
            hs = [
                1.5 * max(1.0, float((x + z).norm() / h.norm())) * h
                for x, z, h in zip(g_t, g_u, hs)
            ]
        expected.update({id(p): h for p, h in zip(ps, hs)})
    head = list(model.head.parameters())
    expected.update(
        {id(p): g for p, g in zip(head, torch.autograd.grad(loss_t, head, retain_graph=True))}
    )
    stats = strategy.backward(model, out, y)
    assert branches["visual"] and not branches["audio"], "the forced conflict did not happen"
    for m in THREE:
        assert float(stats[f"pareto_{m}"]) == float(branches[m])
    for name, p in model.named_parameters():
        if id(p) in expected:  # grid resolution 5e-6 on c: the tolerance of this check
            torch.testing.assert_close(p.grad, expected[id(p)], rtol=1e-4, atol=1e-7, msg=name)


def test_paper_semantics_keeps_the_min_norm_direction_on_each_encoder():
    """Per encoder, the paper reading's update is parallel to 2u (u: MinNorm point) and as
    long as γ|g_T + g_u|; the official per-tensor rule is not parallel in general."""
    model = conflicting_visual_head()
    inputs, y = make_batch_m(THREE, seed=6)
    grads = {}
    for semantics in ("paper", "official"):
        model.zero_grad(set_to_none=True)
        create_strategy("mmpareto", semantics=semantics).backward(model, model(inputs), y)
        ps = [*model.visual_embedding.parameters(), *model.visual_encoder.parameters()]
        grads[semantics] = _flat([p.grad for p in ps])
    out = model(inputs)
    ps = [*model.visual_embedding.parameters(), *model.visual_encoder.parameters()]
    a = _flat(torch.autograd.grad(F.cross_entropy(out.logits, y), ps, retain_graph=True))
    b = _flat(torch.autograd.grad(F.cross_entropy(out.unimodal["visual"], y), ps))
    c = float((b @ b - a @ b) / (a @ a + b @ b - 2 * a @ b))
    u = c * a + (1 - c) * b
    assert a @ b < 0
    assert float(F.cosine_similarity(grads["paper"], u, dim=0)) == pytest.approx(1.0, abs=1e-12)
    assert float(grads["paper"].norm()) == pytest.approx(1.5 * float((a + b).norm()), rel=1e-10)
    assert float(F.cosine_similarity(grads["official"], u, dim=0)) < 1 - 1e-6


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="semantics"):
        create_strategy("mmpareto", semantics="codebase")
    with pytest.raises(ConfigError, match="gamma"):
        create_strategy("mmpareto", gamma=0.0)


def test_two_backward_passes_at_any_number_of_modalities(monkeypatch):
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for names in (THREE, (*THREE, "depth")):
        calls.clear()
        model = make_model_m(names, unimodal_head="separate", seed=1)
        inputs, y = make_batch_m(names, seed=1)
        out = model(inputs)
        monkeypatch.setattr(torch.autograd, "grad", counting)
        create_strategy("mmpareto").backward(model, out, y)
        monkeypatch.setattr(torch.autograd, "grad", real)
        assert len(calls) == 2
