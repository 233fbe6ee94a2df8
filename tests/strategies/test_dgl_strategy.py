"""DGL: the strategy against a transcription of the official step
(shicaiwei123/ICCV2025-GDL @ b72a55f, ``main_dgl.py::train_epoch`` lines 108-128 and
``models/fusion_modules.py::ConcatFusion_DGL``) on a model shaped like the official
``AVClassifier_DGL`` (wrapped in ``nn.DataParallel`` as there, which the official
parameter filter ``name.split('.')[1]`` relies on), and the paper's equations worked by
hand at M = 3.

Tolerances: float64; the two sides differ only in the order of floating-point operations
(the official step accumulates two backward passes into ``.grad``), ~1e-16 relative.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from reference_m import make_batch_m, make_model_m
from torch import nn
from torch.func import functional_call

from balgrad.errors import ConfigError
from balgrad.models import ModelOutput
from balgrad.strategies import create_strategy
from balgrad.strategies._dgl import clip_coefficient, dgl_encoder_loss

THREE = ("audio", "visual", "text")


class ConcatFusionDGLLike(nn.Module):
    """The official ``ConcatFusion_DGL``: one ``fc_out`` for the fused (detached) and the
    unimodal (other half zeroed) logits."""

    def __init__(self, d: int, classes: int):
        super().__init__()
        self.fc_out = nn.Linear(2 * d, classes)

    def forward(self, x, y):
        output = self.fc_out(torch.cat((x, y), dim=1).detach())
        x_out = self.fc_out(torch.cat((x, torch.zeros_like(y)), dim=1))
        y_out = self.fc_out(torch.cat((torch.zeros_like(x), y), dim=1))
        return x_out, y_out, output


class AVClassifierDGLLike(nn.Module):
    """``audio_net``, ``visual_net`` and ``fusion_module`` (the official names), with the
    balgrad contract on top (unimodal logits through the detached head, as balgrad's
    models compute them)."""

    modalities = ("audio", "visual")
    task = "single_label"

    def __init__(self, seed: int, d: int = 6, classes: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.audio_net = nn.Sequential(nn.Linear(5, d), nn.Tanh(), nn.Linear(d, d))
        self.visual_net = nn.Sequential(nn.Linear(4, d), nn.Tanh(), nn.Linear(d, d))
        self.fusion_module = ConcatFusionDGLLike(d, classes)
        self.double()

    def official_forward(self, audio, visual):
        a_out, v_out, out = self.fusion_module(self.audio_net(audio), self.visual_net(visual))
        return out, a_out, v_out

    def forward(self, inputs):
        h = {"audio": self.audio_net(inputs["audio"]), "visual": self.visual_net(inputs["visual"])}
        zero = {m: torch.zeros_like(v) for m, v in h.items()}
        unimodal = {
            "audio": self.classify({**zero, "audio": h["audio"]}, detach_head=True),
            "visual": self.classify({**zero, "visual": h["visual"]}, detach_head=True),
        }
        return ModelOutput(self.classify(h), unimodal, h)

    def classify(self, h, detach_head=False):
        fc = self.fusion_module.fc_out
        x = torch.cat((h["audio"], h["visual"]), 1)
        if not detach_head:
            return fc(x)
        return functional_call(fc, {n: p.detach() for n, p in fc.named_parameters()}, (x,))

    def parameter_groups(self):
        return {
            "audio": list(self.audio_net.parameters()),
            "visual": list(self.visual_net.parameters()),
            "head": list(self.fusion_module.parameters()),
        }


def official_step(model, spec, image, label, optimizer, alpha, max_norm=40):
    """The official loop body (``model`` is the DataParallel-wrapped one)."""
    criterion = nn.CrossEntropyLoss()
    optimizer.zero_grad()
    out, out_a, out_v = model.module.official_forward(spec, image)
    loss_v, loss_a, loss_f = criterion(out_v, label), criterion(out_a, label), criterion(out, label)
    loss_unimodal = (loss_a + loss_v) * alpha
    loss_unimodal.backward(retain_graph=True)
    for name, parms in model.named_parameters():
        layer = str(name).split(".")[1]
        if "fusion" in layer:
            parms.grad = None
    loss_f.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm, norm_type=2)


def sgd(model):  # the official optimizer: SGD(lr, momentum 0.9, weight_decay 1e-4)
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def batch(step: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(300 + step)
    spec = scale * torch.randn(16, 5, generator=g, dtype=torch.float64)
    image = scale * torch.randn(16, 4, generator=g, dtype=torch.float64)
    return spec, image, torch.randint(0, 3, (16,), generator=g)


@pytest.mark.parametrize(
    "alpha,max_norm,scale",
    [(4.0, 40.0, 1.0), (5.0, 0.5, 3.0)],
    ids=["cremad_alpha4", "clipping_binds"],
)
def test_official_semantics_equals_the_official_step(alpha, max_norm, scale):
    wrapped = nn.DataParallel(AVClassifierDGLLike(seed=7))  # CPU: calls the module itself
    model = copy.deepcopy(wrapped.module)
    opt_official, opt = sgd(wrapped), sgd(model)
    strategy = create_strategy("dgl", alpha=alpha, max_grad_norm=max_norm)
    clipped = []
    for step in range(3):
        spec, image, label = batch(step, scale)
        official_step(wrapped, spec, image, label, opt_official, alpha, max_norm)
        opt.zero_grad(set_to_none=True)
        stats = strategy.backward(model, model({"audio": spec, "visual": image}), label)
        clipped.append(float(stats["clip_coef"]) < 1)
        for (name, p), q in zip(wrapped.module.named_parameters(), model.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-13, msg=name)
        opt_official.step()
        opt.step()
    for (name, p), q in zip(wrapped.module.named_parameters(), model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-13, msg=name)
    assert any(clipped) == (max_norm < 1), "the clipping case must clip, the other not"


def test_paper_semantics_does_not_clip():
    model = AVClassifierDGLLike(seed=7)
    spec, image, label = batch(0, scale=3.0)
    grads = {}
    for semantics in ("paper", "official"):
        model.zero_grad(set_to_none=True)
        strategy = create_strategy("dgl", semantics=semantics, max_grad_norm=0.5)
        stats = strategy.backward(model, model({"audio": spec, "visual": image}), label)
        grads[semantics] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float(grads["paper"].norm()) == pytest.approx(float(stats["grad_norm"]), rel=1e-12)
    assert float(grads["paper"].norm()) > 0.5
    assert float(grads["official"].norm()) == pytest.approx(0.5, rel=1e-5)  # torch's +1e-6


# -- the paper's equations, by hand, at M = 3 ----------------------------------------------
def _softmax_minus_onehot(z, y):
    p = torch.exp(z - z.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    return p - F.one_hot(y, z.shape[1]).to(z.dtype)


def test_three_modalities_by_hand():
    """Linear towers h_m = x_m A_mᵀ, concat head z = [h_1 h_2 h_3] Wᵀ + b (balgrad's model
    with identity encoders and no embedding non-linearity would hide nothing here, so the
    model is built from raw tensors): with δ = softmax(z) − onehot(y) over the batch,
    ∇_W L = δᵀ H / B and ∇_{A_m} (α L_m) = α (δ_m W_m)ᵀ X_m / B, z_m = h_m W_mᵀ + b."""

    class Linear3(nn.Module):
        modalities = THREE
        task = "single_label"

        def __init__(self):
            super().__init__()
            torch.manual_seed(11)
            self.A = nn.ParameterDict(
                {m: nn.Parameter(torch.randn(2, 3, dtype=torch.float64)) for m in THREE}
            )
            self.W = nn.Parameter(torch.randn(4, 6, dtype=torch.float64))
            self.b = nn.Parameter(torch.randn(4, dtype=torch.float64))

        def classify(self, h, detach_head=False):
            w, b = (self.W.detach(), self.b.detach()) if detach_head else (self.W, self.b)
            return torch.cat([h[m] for m in THREE], 1) @ w.T + b

        def forward(self, x):
            h = {m: x[m] @ self.A[m].T for m in THREE}
            zero = {m: torch.zeros_like(v) for m, v in h.items()}
            uni = {m: self.classify({**zero, m: h[m]}, detach_head=True) for m in THREE}
            return ModelOutput(self.classify(h), uni, h)

        def parameter_groups(self):
            return {**{m: [self.A[m]] for m in THREE}, "head": [self.W, self.b]}

    model = Linear3()
    g = torch.Generator().manual_seed(12)
    x = {m: torch.randn(5, 3, generator=g, dtype=torch.float64) for m in THREE}
    y = torch.tensor([0, 3, 1, 2, 0])
    alpha = 4.0
    create_strategy("dgl", alpha=alpha, semantics="paper").backward(model, model(x), y)

    with torch.no_grad():
        h = {m: x[m] @ model.A[m].T for m in THREE}
        hcat = torch.cat([h[m] for m in THREE], 1)
        delta = _softmax_minus_onehot(hcat @ model.W.T + model.b, y)
        torch.testing.assert_close(model.W.grad, delta.T @ hcat / 5, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(model.b.grad, delta.mean(0), rtol=1e-12, atol=1e-14)
        for i, m in enumerate(THREE):
            w_m = model.W[:, 2 * i : 2 * i + 2]
            delta_m = _softmax_minus_onehot(h[m] @ w_m.T + model.b, y)
            want = alpha * (delta_m @ w_m).T @ x[m] / 5
            torch.testing.assert_close(model.A[m].grad, want, rtol=1e-12, atol=1e-14, msg=m)


def test_the_pure_functions():
    losses = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(0.5)]
    assert float(dgl_encoder_loss(losses, 4.0)) == 14.0
    norm = torch.tensor(80.0, dtype=torch.float64)
    assert float(clip_coefficient(norm, 40.0)) == pytest.approx(40.0 / (80.0 + 1e-6), rel=1e-15)
    assert float(clip_coefficient(torch.tensor(10.0, dtype=torch.float64), 40.0)) == 1.0
    # a loss scale s multiplies the norm, the threshold and the 1e-6: the coefficient is
    # unchanged, so the scaled clipped gradient is s × the unscaled one
    s = torch.tensor(1024.0, dtype=torch.float64)
    assert float(clip_coefficient(norm * s, 40.0, s)) == pytest.approx(
        float(clip_coefficient(norm, 40.0)), rel=1e-15
    )


def test_separate_unimodal_heads_are_trained_by_alpha_times_their_loss_at_three_modalities():
    model = make_model_m(THREE, unimodal_head="separate", seed=3)
    inputs, y = make_batch_m(THREE, seed=3)
    out = model(inputs)
    want = {}
    for m in THREE:
        ps = [
            *getattr(model, f"{m}_head").parameters(),
            *getattr(model, f"{m}_embedding").parameters(),
        ]
        gs = torch.autograd.grad(2.5 * F.cross_entropy(out.unimodal[m], y), ps, retain_graph=True)
        want.update({id(p): g for p, g in zip(ps, gs)})
    head = list(model.head.parameters())
    want.update(
        {
            id(p): g
            for p, g in zip(
                head, torch.autograd.grad(F.cross_entropy(out.logits, y), head, retain_graph=True)
            )
        }
    )
    create_strategy("dgl", alpha=2.5, semantics="paper").backward(model, out, y)
    for name, p in model.named_parameters():
        if id(p) in want:
            torch.testing.assert_close(p.grad, want[id(p)], rtol=1e-12, atol=1e-14, msg=name)


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="semantics"):
        create_strategy("dgl", semantics="released")
    with pytest.raises(ConfigError, match="alpha"):
        create_strategy("dgl", alpha=-1.0)
    with pytest.raises(ConfigError, match="max_grad_norm"):
        create_strategy("dgl", max_grad_norm=0.0)


def test_registered_with_the_official_scripts_presets_but_not_in_the_default_run():
    from balgrad.strategies._registry import default_methods, list_strategies, strategy_options

    assert {"dgl", "dgl_cremad", "dgl_ks", "mmpareto"} <= set(list_strategies())
    assert default_methods() == [
        "joint",
        "mslr",
        "ogm_ge",
        "agm",
        "balgrad",
        "balgrad_reweight_only",
        "balgrad_projection_only",
        "balgrad_unimodal_only",
    ]
    assert strategy_options("dgl")["alpha"] == 4.0
    assert strategy_options("dgl_cremad")["alpha"] == 5.0
    assert strategy_options("dgl_ks")["alpha"] == 3.0
    assert strategy_options("mmpareto") == {"gamma": 1.5, "semantics": "official"}
