"""OGM-GE (SPEC section 3) against a hand transcription of the official ``main.py``
(GeWu-Lab/OGM-GE_CVPR2022, ``train_epoch``), plain autograd and noise statistics."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from baseline_helpers import (
    bf16_against_fp32,
    compute_without_host_reads,
    scaled_against_unscaled,
    step,
)
from strategy_reference import (
    TinyEncoder,
    all_params,
    forward_by_hand,
    grads_of,
    head_params,
    image_params,
    make_batch,
    make_model,
    ref_task_loss,
    text_params,
)

from balgrad.backbones._small import SmallCNN
from balgrad.errors import ConfigError
from balgrad.models import MultimodalModel
from balgrad.models._fusion import SumFusion
from balgrad.strategies import OGMGE
from balgrad.strategies import _ogm_ge as ogm_module
from balgrad.strategies._ogm_ge import ogm_coefficients

TOL = dict(rtol=1e-10, atol=1e-13)


# -- the official code, transcribed ----------------------------------------------------------
# main.py names the modalities audio (a) and visual (v); balgrad's text plays the audio's
# part. The official fusion concatenates (audio, visual); balgrad's concat is
# [h_image; h_text], so the image half of the output layer is the *first* half here.
def official_scores(out_v, out_a, label):
    softmax = torch.nn.Softmax(dim=1)
    score_v = sum([softmax(out_v)[i][label[i]] for i in range(out_v.size(0))])
    score_a = sum([softmax(out_a)[i][label[i]] for i in range(out_a.size(0))])
    return score_v, score_a


def official_coefficients(score_v, score_a, alpha):
    relu, tanh = torch.nn.ReLU(), torch.nn.Tanh()
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        coeff_v = 1 - tanh(alpha * relu(ratio_v))
        coeff_a = 1
    else:
        coeff_a = 1 - tanh(alpha * relu(ratio_a))
        coeff_v = 1
    return coeff_v, coeff_a


def official_half_bias_logits(model, v, a):
    fc_out = model.head.classifier[-1]
    if isinstance(model.head.fusion, SumFusion):
        # main.py's sum fusion has a layer per modality (fc_x, fc_y), each scored with
        # half its own bias; balgrad's sum fusion has one layer W on h_v + h_l: W for both
        w_v = w_a = fc_out.weight
    else:
        weight_size = fc_out.weight.size(1)
        w_v, w_a = fc_out.weight[:, : weight_size // 2], fc_out.weight[:, weight_size // 2 :]
    out_v = torch.mm(v, torch.transpose(w_v, 0, 1)) + fc_out.bias / 2
    out_a = torch.mm(a, torch.transpose(w_a, 0, 1)) + fc_out.bias / 2
    return out_v, out_a


def official_step(model, x_v, x_l, label, *, alpha, epoch, start, end, conv4d, half_bias):
    """One ``train_epoch`` iteration with modulation 'OGM' (no noise), on a copy of the
    model: returns {param of the copy: .grad}, (coeff_v, coeff_a) and the copy."""
    model = copy.deepcopy(model)
    model.zero_grad()
    v = model.image_embedding(model.image_encoder(x_v))
    a = model.text_embedding(model.text_encoder(x_l))
    out = model.head(v, a)
    if half_bias:
        out_v, out_a = official_half_bias_logits(model, v, a)
    else:  # balgrad's unimodal logits: the head with the other embedding zeroed
        out_v, out_a = model.head(v, torch.zeros_like(a)), model.head(torch.zeros_like(v), a)
    loss = torch.nn.CrossEntropyLoss()(out, label)
    loss.backward()
    score_v, score_a = official_scores(out_v.detach(), out_a.detach(), label)
    coeff_v, coeff_a = official_coefficients(score_v, score_a, alpha)
    if start <= epoch <= end:
        for group, coeff in ((image_params(model), coeff_v), (text_params(model), coeff_a)):
            for parms in group:
                if (len(parms.grad.size()) == 4) if conv4d else parms.grad.dim() >= 2:
                    parms.grad *= coeff
    return {p: p.grad.clone() for p in all_params(model)}, (coeff_v, coeff_a), model


def assert_same_grads(model, got, ref_model, expected):
    for p, q in zip(all_params(model), all_params(ref_model)):
        torch.testing.assert_close(got[p], expected[q], **TOL)


def conv_model(seed=0):
    """An image tower with 4-D (conv) weights and a 2-D projection, in float64."""
    torch.manual_seed(seed)
    cnn = SmallCNN(out_dim=5, image_size=8, channels=1, width=2, norm="none")
    towers = {"image": cnn, "text": TinyEncoder(7, 5)}
    return MultimodalModel(towers, num_classes=4, embed_dim=6).double()


def conv_batch(seed=0):
    g = torch.Generator().manual_seed(50 + seed)
    return (
        torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64),
        torch.randn(8, 7, generator=g, dtype=torch.float64),
        torch.randint(0, 4, (8,), generator=g),
    )


# -- coefficients ---------------------------------------------------------------------------
def test_coefficients_image_dominant():
    rho, k_v, k_l = ogm_coefficients(torch.tensor(3.0), torch.tensor(1.0), 0.1)
    assert float(rho) == pytest.approx(3.0)
    assert float(k_v) == pytest.approx(1 - math.tanh(0.3))
    assert float(k_v) == pytest.approx(0.708687, abs=1e-6)
    assert float(k_l) == 1.0


def test_coefficients_text_dominant():
    # ρ_v = 1/4: k_l = 1 − tanh(0.1 · 4), k_v = 1
    rho, k_v, k_l = ogm_coefficients(torch.tensor(1.0), torch.tensor(4.0), 0.1)
    assert float(rho) == pytest.approx(0.25)
    assert float(k_v) == 1.0
    assert float(k_l) == pytest.approx(0.620051, abs=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 2.0])
@pytest.mark.parametrize(
    "s_v,s_l", [(3.0, 1.0), (1.0, 4.0), (2.0, 2.0), (2.5, 2.4999), (0.3, 7.9), (5.7, 0.01)]
)
def test_coefficients_match_the_official_code(s_v, s_l, alpha):
    sv, sl = torch.tensor(s_v, dtype=torch.float64), torch.tensor(s_l, dtype=torch.float64)
    coeff_v, coeff_a = official_coefficients(sv, sl, alpha)
    rho, k_v, k_l = ogm_coefficients(sv, sl, alpha)
    assert float(rho) == pytest.approx(s_v / s_l, rel=1e-15)
    assert float(k_v) == pytest.approx(float(coeff_v), rel=1e-15, abs=1e-15)
    assert float(k_l) == pytest.approx(float(coeff_a), rel=1e-15, abs=1e-15)


def test_coefficients_zero_score_is_finite():
    rho, k_v, k_l = ogm_coefficients(torch.tensor(2.0), torch.tensor(0.0), 0.1)
    assert float(k_v) == pytest.approx(0.0) and float(k_l) == 1.0
    rho, k_v, k_l = ogm_coefficients(torch.tensor(0.0), torch.tensor(2.0), 0.1)
    assert float(k_v) == 1.0 and float(k_l) == pytest.approx(0.0)
    # α = 0 with an infinite ratio: still no modulation (not 0 · inf = NaN)
    assert [float(k) for k in ogm_coefficients(torch.tensor(2.0), torch.tensor(0.0), 0.0)[1:]] == [
        1.0,
        1.0,
    ]
    # both zero: balanced
    rho, k_v, k_l = ogm_coefficients(torch.tensor(0.0), torch.tensor(0.0), 0.1)
    assert float(rho) == 1.0 and float(k_v) == 1.0


# -- the modulated gradient against the official code -----------------------------------------
@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_modulated_grad_matches_the_official_code(fusion, seed):
    alpha = 0.8  # large, so k is visibly below 1
    model = make_model(fusion, seed=seed)
    x_v, x_l, y = make_batch(seed=seed)
    got, stats = step(model, OGMGE(alpha=alpha, noise=False), x_v, x_l, y)
    expected, (coeff_v, coeff_a), ref = official_step(
        model, x_v, x_l, y, alpha=alpha, epoch=0, start=0, end=0, conv4d=False, half_bias=False
    )
    assert min(float(coeff_v), float(coeff_a)) < 0.95
    assert float(stats["coef_image"]) == pytest.approx(float(coeff_v), rel=1e-10)
    assert float(stats["coef_text"]) == pytest.approx(float(coeff_a), rel=1e-10)
    assert float(stats["modulated"]) == 1.0
    assert_same_grads(model, got, ref, expected)


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_half_bias_scores_match_the_official_code(fusion):
    alpha = 0.9
    model = make_model(fusion, seed=3)
    x_v, x_l, y = make_batch(seed=3)
    got, stats = step(model, OGMGE(alpha=alpha, noise=False, fusion_bias="half"), x_v, x_l, y)
    expected, coeffs, ref = official_step(
        model, x_v, x_l, y, alpha=alpha, epoch=0, start=0, end=0, conv4d=False, half_bias=True
    )
    assert float(stats["coef_image"]) == pytest.approx(float(coeffs[0]), rel=1e-10)
    assert float(stats["coef_text"]) == pytest.approx(float(coeffs[1]), rel=1e-10)
    assert_same_grads(model, got, ref, expected)
    # and the half bias changes the coefficient here (the full-bias reading differs)
    _, full = step(model, OGMGE(alpha=alpha, noise=False), x_v, x_l, y)
    assert float(full["coef_image"]) * float(full["coef_text"]) != pytest.approx(
        float(stats["coef_image"]) * float(stats["coef_text"]), rel=1e-6
    )


@pytest.mark.parametrize(
    "options,fusion",
    [({}, "attention"), ({"head_hidden": 5}, "concat")],
)
def test_half_bias_is_an_error_where_it_is_undefined(options, fusion):
    model = make_model(fusion, seed=0, **options)
    x_v, x_l, y = make_batch(seed=0)
    with pytest.raises(ConfigError, match="fusion_bias='half'"):
        step(model, OGMGE(fusion_bias="half"), x_v, x_l, y)


@pytest.mark.parametrize("scale_params", ["conv4d", "matrices"])
def test_which_parameters_are_scaled_matches_the_official_code(scale_params):
    alpha = 0.8
    model = conv_model(seed=1)
    x_v, x_l, y = conv_batch(seed=1)
    strategy = OGMGE(alpha=alpha, noise=False, scale_params=scale_params)
    got, stats = step(model, strategy, x_v, x_l, y)
    expected, (coeff_v, coeff_a), ref = official_step(
        model,
        x_v,
        x_l,
        y,
        alpha=alpha,
        epoch=0,
        start=0,
        end=0,
        conv4d=scale_params == "conv4d",
        half_bias=False,
    )
    assert float(coeff_v) < 0.95 or float(coeff_a) < 0.95
    assert_same_grads(model, got, ref, expected)
    # conv4d scales the conv kernels only; the image tower's linear layers keep plain g
    z, _, _ = forward_by_hand(model, x_v, x_l)
    plain = grads_of(ref_task_loss(z, y, "single_label"), all_params(model))
    damped = float(coeff_v) if float(coeff_v) < 1 else float(coeff_a)
    tower = image_params(model) if float(coeff_v) < 1 else text_params(model)
    for p in tower:
        scaled = p.dim() == 4 if scale_params == "conv4d" else p.dim() >= 2
        torch.testing.assert_close(got[p], damped * plain[p] if scaled else plain[p], **TOL)


# -- the noise --------------------------------------------------------------------------------
def _big_model(seed=0):
    """The image encoder weight is 200x200 (40 000 entries) for noise statistics."""
    return make_model("concat", seed=seed, image_in=200, encoder_dim=200)


def _big_batch(seed=0):
    return make_batch(seed=seed, image_in=200, batch=16)


def _plain_grads(model, x_v, x_l, y):
    z, _, _ = forward_by_hand(model, x_v, x_l)
    return grads_of(ref_task_loss(z, y, "single_label"), all_params(model))


def test_noise_statistics_on_a_large_weight():
    model = _big_model()
    x_v, x_l, y = _big_batch()
    got, stats = step(model, OGMGE(alpha=0.5, noise=True, seed=3), x_v, x_l, y)
    plain = _plain_grads(model, x_v, x_l, y)
    w = model.image_encoder.linear.weight
    g = plain[w]
    noise = got[w] - float(stats["coef_image"]) * g
    std = g.std()
    assert std > 0
    assert abs(float(noise.mean())) < 0.05 * float(std)  # 40 000 draws: se = std / 200
    assert float(noise.std()) == pytest.approx(float(std), rel=0.03)
    # the noise is not a rescaled gradient: nearly uncorrelated with it
    assert abs(float(torch.corrcoef(torch.stack([noise.flatten(), g.flatten()]))[0, 1])) < 0.05
    # 1-dim parameters and the head are untouched
    for p in [*image_params(model), *text_params(model)]:
        if p.dim() < 2:
            torch.testing.assert_close(got[p], plain[p], **TOL)
    for p in head_params(model):
        torch.testing.assert_close(got[p], plain[p], **TOL)


def test_noise_is_the_documented_seeded_draw_with_std_before_scaling():
    """g k + (std(g) + 1e-8) z, z one standard-normal draw over the modulated parameters
    (image tower, then text tower, in the order of ``parameter_groups()``) from the
    (seed, step) generator."""
    model = make_model("concat", seed=5)
    x_v, x_l, y = make_batch(seed=5)
    strategy = OGMGE(alpha=0.6, noise=True, seed=11)
    step(model, strategy, x_v, x_l, y)  # step 0
    got, stats = step(model, strategy, x_v, x_l, y)  # step 1
    plain = _plain_grads(model, x_v, x_l, y)
    groups = model.parameter_groups()
    mats = [p for p in groups["image"] + groups["text"] if p.dim() >= 2]
    gen = torch.Generator().manual_seed(11 * 1_000_003 + 1)
    z = torch.randn(sum(p.numel() for p in mats), generator=gen, dtype=torch.float64)
    k = {id(p): float(stats["coef_image"]) for p in image_params(model)}
    k.update({id(p): float(stats["coef_text"]) for p in text_params(model)})
    for p, z_p in zip(mats, z.split([p.numel() for p in mats])):
        g = plain[p]
        expected = g * k[id(p)] + z_p.view_as(g) * (g.std() + 1e-8)
        torch.testing.assert_close(got[p], expected, **TOL)


def test_noise_is_added_where_k_is_one():
    model = _big_model(seed=1)
    x_v, x_l, y = _big_batch(seed=1)
    got, stats = step(model, OGMGE(alpha=0.5, noise=True), x_v, x_l, y)
    plain = _plain_grads(model, x_v, x_l, y)
    undamped = "text" if float(stats["coef_text"]) == 1.0 else "image"
    assert float(stats[f"coef_{undamped}"]) == 1.0
    params = text_params(model) if undamped == "text" else image_params(model)
    for p in params:
        if p.dim() >= 2:
            diff = got[p] - plain[p]
            assert diff.abs().max() > 0
            assert 0.3 < float(diff.std() / plain[p].std()) < 3.0


def test_same_seed_same_noise_and_other_seed_other_noise():
    model = _big_model(seed=2)
    x_v, x_l, y = _big_batch(seed=2)
    a, _ = step(model, OGMGE(noise=True, seed=7), x_v, x_l, y)
    b, _ = step(model, OGMGE(noise=True, seed=7), x_v, x_l, y)
    c, _ = step(model, OGMGE(noise=True, seed=8), x_v, x_l, y)
    w = model.image_encoder.linear.weight
    for p in all_params(model):
        assert torch.equal(a[p], b[p])
    assert not torch.equal(a[w], c[w])


def test_noise_changes_from_step_to_step():
    model = _big_model(seed=2)
    x_v, x_l, y = _big_batch(seed=2)
    strategy = OGMGE(noise=True, seed=7)
    a, _ = step(model, strategy, x_v, x_l, y)
    b, _ = step(model, strategy, x_v, x_l, y)
    w = model.image_encoder.linear.weight
    assert not torch.equal(a[w], b[w])


# -- the modulation window ----------------------------------------------------------------------
def _window(strategy, epochs):
    active = []
    for epoch in range(epochs):
        strategy.on_epoch_start(epoch, num_epochs=epochs)
        active.append(strategy.active())
    return active


def test_default_window_is_the_first_half_inclusive():
    # official: 0 <= epoch <= 50 of 100 epochs; ours: 0 <= epoch <= num_epochs // 2
    assert _window(OGMGE(), 10) == [True] * 6 + [False] * 4
    assert _window(OGMGE(), 100) == [e <= 50 for e in range(100)]


def test_custom_window_is_inclusive_at_both_ends():
    assert _window(OGMGE(modulation_start=2, modulation_end=4), 8) == [
        2 <= e <= 4 for e in range(8)
    ]
    assert _window(OGMGE(modulation_start=3, modulation_end=3), 5) == [
        False,
        False,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize("epoch", [1, 2, 4, 5])
def test_window_edges_in_the_step_match_the_official_code(epoch):
    model = make_model("concat", seed=4)
    x_v, x_l, y = make_batch(seed=4)
    strategy = OGMGE(alpha=0.8, noise=False, modulation_start=2, modulation_end=4)
    strategy.on_epoch_start(epoch, num_epochs=10)
    got, stats = step(model, strategy, x_v, x_l, y)
    expected, _, ref = official_step(
        model, x_v, x_l, y, alpha=0.8, epoch=epoch, start=2, end=4, conv4d=False, half_bias=False
    )
    assert float(stats["modulated"]) == float(2 <= epoch <= 4)
    assert_same_grads(model, got, ref, expected)


def test_outside_the_window_the_grad_is_plain_joint_training_even_with_noise():
    model = make_model("concat", seed=4)
    x_v, x_l, y = make_batch(seed=4)
    strategy = OGMGE(alpha=0.8, noise=True)
    strategy.on_epoch_start(6, num_epochs=10)
    got, stats = step(model, strategy, x_v, x_l, y)
    assert float(stats["modulated"]) == 0.0
    plain = _plain_grads(model, x_v, x_l, y)
    for p in all_params(model):
        torch.testing.assert_close(got[p], plain[p], **TOL)


def test_bad_options_raise():
    with pytest.raises(ConfigError, match="modulation_end"):
        OGMGE(modulation_start=5, modulation_end=2)
    with pytest.raises(ConfigError, match="alpha"):
        OGMGE(alpha=-1.0)
    with pytest.raises(ConfigError, match="scale_params"):
        OGMGE(scale_params="all")
    with pytest.raises(ConfigError, match="fusion_bias"):
        OGMGE(fusion_bias="quarter")


# -- no host sync, loss scaling, mixed precision ----------------------------------------------
def test_the_step_reads_no_tensor_value_on_the_host(monkeypatch):
    strategy = OGMGE(alpha=0.5, noise=True, fusion_bias="half")
    batch = make_batch(seed=6)
    compute_without_host_reads(monkeypatch, strategy, ogm_module, make_model(seed=6), batch)


@pytest.mark.parametrize("scale", [2.0**10, 3.0])
@pytest.mark.parametrize("noise", [True, False])
def test_a_loss_scale_scales_the_update_exactly_noise_included(scale, noise):
    def factory():
        return OGMGE(alpha=0.7, noise=noise, seed=1)

    stats, scaled = scaled_against_unscaled(make_model(seed=7), factory, make_batch(seed=7), scale)
    assert float(scaled["coef_image"]) == float(stats["coef_image"])


@pytest.mark.parametrize("backward_inside", [True, False])
@pytest.mark.parametrize("fusion_bias", ["full", "half"])
def test_bf16_autocast_grad_is_close_to_fp32(backward_inside, fusion_bias):
    def factory():
        return OGMGE(alpha=0.8, noise=True, seed=2, fusion_bias=fusion_bias)

    ref, stats = bf16_against_fp32(factory, seed=8, backward_inside=backward_inside)
    assert float(ref["coef_image"]) < 0.95 or float(ref["coef_text"]) < 0.95
    assert float(stats["coef_image"]) == pytest.approx(float(ref["coef_image"]), rel=1e-2)
    assert float(stats["coef_text"]) == pytest.approx(float(ref["coef_text"]), rel=1e-2)


def _official_main_coefficients(score_a: float, score_v: float, alpha: float):
    """The official ``main.py`` (GeWu-Lab/OGM-GE_CVPR2022), transcribed: the model's
    streams are (audio, visual) and ratio_v = score_v / score_a."""
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        return 1.0, 1 - math.tanh(alpha * max(ratio_v, 0.0))  # coeff_a, coeff_v
    return 1 - math.tanh(alpha * max(ratio_a, 0.0)), 1.0


@pytest.mark.parametrize(
    ("score_a", "score_v"), [(12.0, 12.0), (7.25, 7.25), (12.0, 9.0), (9.0, 12.0)]
)
def test_official_semantics_break_a_tie_as_the_official_main(score_a, score_v):
    alpha = 0.3
    strategy = OGMGE(alpha=alpha, semantics="official")
    s = torch.tensor([score_a, score_v], dtype=torch.float64)  # (audio, visual), as main.py
    _, k = strategy.coefficients(s)
    want_a, want_v = _official_main_coefficients(score_a, score_v, alpha)
    assert float(k[0]) == pytest.approx(want_a, rel=1e-12)
    assert float(k[1]) == pytest.approx(want_v, rel=1e-12)


def test_at_a_tie_the_default_damps_the_second_and_official_the_first():
    s = torch.tensor([5.0, 5.0], dtype=torch.float64)
    damped = 1 - math.tanh(0.3)  # 1 − tanh(α · 1)
    _, ours = OGMGE(alpha=0.3).coefficients(s)
    _, official = OGMGE(alpha=0.3, semantics="official").coefficients(s)
    assert ours.tolist() == pytest.approx([1.0, damped])
    assert official.tolist() == pytest.approx([damped, 1.0])


def test_official_semantics_imply_the_official_switches_unless_given():
    official = OGMGE(semantics="official")
    assert (official.scale_params, official.fusion_bias) == ("conv4d", "half")
    assert (OGMGE().scale_params, OGMGE().fusion_bias) == ("matrices", "full")
    mixed = OGMGE(semantics="official", scale_params="matrices")
    assert (mixed.scale_params, mixed.fusion_bias) == ("matrices", "half")
    with pytest.raises(ConfigError, match="semantics"):
        OGMGE(semantics="paper")
