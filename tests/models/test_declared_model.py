"""DeclaredModel: an existing model, unmodified, under the strategy contract. The model
is the official OGM-GE AVClassifier's shape (examples/declared_official_model.py)."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from balgrad.errors import ConfigError
from balgrad.models import DeclaredModel
from balgrad.strategies import create_strategy, list_strategies

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "declared_official_model.py"
_spec = importlib.util.spec_from_file_location("declared_official_model", EXAMPLE)
official = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official)


def _batch(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    spec = torch.randn(n, 1, 16, 12, generator=g, dtype=torch.float64)
    frames = torch.randn(n, 3, 2, 16, 16, generator=g, dtype=torch.float64)
    label = torch.randint(0, 6, (n,), generator=g)
    return spec, frames, label


def _av(seed: int = 0) -> official.AVClassifier:
    torch.manual_seed(seed)
    return official.AVClassifier(width=8).double()


def test_the_declared_forward_is_the_official_forward():
    av = _av()
    model = official.declare(av)
    spec, frames, _ = _batch(0)
    a, v, out = av(spec, frames)
    got = model({"audio": spec, "visual": frames})
    # the same modules on the same tensors in the same order: deterministic
    assert torch.equal(got.logits, out)
    assert torch.equal(got.embeddings["audio"], a) and torch.equal(got.embeddings["visual"], v)
    assert got.modalities == ("audio", "visual")


def test_unimodal_logits_zero_the_other_embedding_and_never_reach_the_head():
    av = _av()
    model = official.declare(av)
    spec, frames, label = _batch(1)
    out = model({"audio": spec, "visual": frames})
    a = out.embeddings["audio"]
    want = av.fusion_module.fc_out(torch.cat([a, torch.zeros_like(a)], 1))
    torch.testing.assert_close(out.unimodal["audio"], want, rtol=1e-12, atol=1e-12)
    F.cross_entropy(out.unimodal["audio"], label).backward()
    assert all(p.grad is None for p in av.fusion_module.parameters())
    assert all(p.grad is not None for p in av.audio_net.parameters())
    assert all(p.grad is None for p in av.visual_net.parameters())


def _official_ogm_step(av, optimizer, spec, frames, label, alpha):
    """One step of the official main.py with --modulation OGM (no GE noise) and concat
    fusion, transcribed (its model is wrapped in DataParallel there: names lose 'module.')."""
    optimizer.zero_grad()
    a, v, out = av(spec, frames)
    fc = av.fusion_module.fc_out
    half = fc.weight.size(1) // 2
    out_v = torch.mm(v, torch.transpose(fc.weight[:, half:], 0, 1)) + fc.bias / 2
    out_a = torch.mm(a, torch.transpose(fc.weight[:, :half], 0, 1)) + fc.bias / 2
    F.cross_entropy(out, label).backward()
    with torch.no_grad():  # the official scores are read as Python numbers
        score_v = sum(F.softmax(out_v, 1)[i][label[i]] for i in range(out_v.size(0)))
        score_a = sum(F.softmax(out_a, 1)[i][label[i]] for i in range(out_a.size(0)))
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        coeff_v, coeff_a = 1 - math.tanh(alpha * max(float(ratio_v), 0.0)), 1.0
    else:
        coeff_a, coeff_v = 1 - math.tanh(alpha * max(float(ratio_a), 0.0)), 1.0
    for name, parms in av.named_parameters():
        layer = name.split(".")[0]
        if "audio" in layer and len(parms.grad.size()) == 4:
            parms.grad *= coeff_a
        if "visual" in layer and len(parms.grad.size()) == 4:
            parms.grad *= coeff_v
    optimizer.step()
    return coeff_a, coeff_v


def test_ogm_official_semantics_on_the_declared_model_is_the_official_step():
    alpha = 0.8
    ref = _av(3)
    av = copy.deepcopy(ref)
    model = official.declare(av)
    strategy = create_strategy("ogm_ge", semantics="official", alpha=alpha, noise=False)
    opt = torch.optim.SGD(strategy.param_groups(model, lr=0.05), lr=0.05, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    coefs = []
    for seed in range(3):
        spec, frames, label = _batch(10 + seed)
        coefs.append(_official_ogm_step(ref, ref_opt, spec, frames, label, alpha))
        opt.zero_grad()
        stats = strategy.backward(model, model({"audio": spec, "visual": frames}), label)
        opt.step()
        assert float(stats["coef_audio"]) == pytest.approx(coefs[-1][0], rel=1e-12)
        assert float(stats["coef_visual"]) == pytest.approx(coefs[-1][1], rel=1e-12)
    assert any(min(c) < 1 for c in coefs)  # the modulation did act
    for (name, p), q in zip(av.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12, msg=name)


def test_a_copy_runs_its_own_modules():
    model = official.declare(_av())
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.model.fusion_module.parameters():
            p.zero_()
    spec, frames, _ = _batch(2)
    assert torch.count_nonzero(twin({"audio": spec, "visual": frames}).logits) == 0
    assert torch.count_nonzero(model({"audio": spec, "visual": frames}).logits) > 0


def _declare(av, **groups):
    return DeclaredModel(
        av,
        encoders={"audio": official.encode_audio, "visual": official.encode_visual},
        head=lambda av, h: av.fusion_module(h["audio"], h["visual"])[2],
        groups=groups,
    )


def test_contract_errors_name_the_parameter_or_group():
    av = _av()
    with pytest.raises(ConfigError, match=r"fusion_module.fc_out.weight.*no group"):
        _declare(av, audio=av.audio_net, visual=av.visual_net, head=[])
    with pytest.raises(ConfigError, match="both 'audio' and 'head'"):
        _declare(
            av, audio=av.audio_net, visual=av.visual_net, head=[av.fusion_module, av.audio_net]
        )
    with pytest.raises(ConfigError, match=r"unknown \['video'\], missing \['visual'\]"):
        _declare(av, audio=av.audio_net, video=av.visual_net, head=av.fusion_module)
    stranger = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="not in the model"):
        _declare(av, audio=[av.audio_net, stranger], visual=av.visual_net, head=av.fusion_module)


def test_frozen_parameters_need_no_group():
    av = _av()
    for p in av.visual_net.conv1.parameters():
        p.requires_grad_(False)
    model = _declare(av, audio=av.audio_net, visual=av.visual_net.conv2, head=av.fusion_module)
    assert len(model.parameter_groups()["visual"]) == 2


@pytest.mark.parametrize("name", sorted(set(list_strategies())))
def test_every_registered_strategy_trains_the_declared_model(name):
    model = official.declare(_av(4))
    strategy = create_strategy(name)
    opt = torch.optim.SGD(strategy.param_groups(model, lr=0.01), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    spec, frames, label = _batch(5)
    inputs = {"audio": spec, "visual": frames}
    if strategy.needs_epoch_pass:  # the own loop's epoch-start pass (PMR's prototypes)
        strategy.prepare_epoch(model, [(inputs, label)])
    if strategy.owns_optimizer_step:  # MLA: its own optimizer steps
        stats = strategy.train_step(model, inputs, label, opt)
    else:
        opt.zero_grad()
        stats = strategy.backward(model, model(inputs), label)
        opt.step()
    assert math.isfinite(float(stats["loss_task"]))
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert all(moved), f"{name} left parameters unchanged"


def test_the_example_trains_the_official_shape_with_official_ogm_ge(capsys):
    stats = official.main(steps=2)
    assert "coef visual" in capsys.readouterr().out
    assert (
        min(stats["coef_audio"], stats["coef_visual"])
        < 1
        <= max(stats["coef_audio"], stats["coef_visual"])
    )
