"""AGM (SPEC section 3) against a hand transcription of the official training loop
(lihong2303/AGM, ``run/CREMAD_main.py`` and ``model/CREMAD_net.py``), hand-worked
coefficients and plain autograd."""

from __future__ import annotations

import copy
import dataclasses
import io
import math

import pytest
import torch
import torch.nn.functional as F
from baseline_helpers import (
    bf16_against_fp32,
    compute_without_host_reads,
    scaled_against_unscaled,
    step,
)
from strategy_reference import (
    TinyEncoder,
    all_params,
    image_params,
    make_batch,
    make_model,
    text_params,
)
from torch import nn

from balgrad.backbones import create_backbone
from balgrad.errors import ConfigError
from balgrad.models import MultimodalModel
from balgrad.strategies import AGM
from balgrad.strategies import _agm as agm_module
from balgrad.strategies._agm import agm_responses

TOL = dict(rtol=1e-10, atol=1e-13)


def _embed(model, x_v, x_l):
    return (
        model.image_embedding(model.image_encoder(x_v)),
        model.text_embedding(model.text_encoder(x_l)),
    )


# -- the official code, transcribed --------------------------------------------------------
# CREMAD_main.py names the modalities audio (a) and visual (v); balgrad's text plays the
# audio's part. GradMod.forward runs the three padded passes with the net in eval mode.
class ModalityOut(nn.Module):
    def forward(self, x):
        return x


def official_scores(out_a, out_v, label):
    softmax = nn.Softmax(dim=1)
    score_audio = 0.0
    score_visual = 0.0
    for k in range(out_a.size(0)):
        if (
            torch.isinf(torch.log(softmax(out_a)[k][label[k]]))
            or softmax(out_a)[k][label[k]] < 1e-8
        ):
            score_audio += -torch.log(torch.tensor(1e-8, dtype=out_a.dtype))
        else:
            score_audio += -torch.log(softmax(out_a)[k][label[k]])
        if (
            torch.isinf(torch.log(softmax(out_v)[k][label[k]]))
            or softmax(out_v)[k][label[k]] < 1e-8
        ):
            score_visual += -torch.log(torch.tensor(1e-8, dtype=out_v.dtype))
        else:
            score_visual += -torch.log(softmax(out_v)[k][label[k]])
    return score_audio / out_a.size(0), score_visual / out_v.size(0)


class OfficialAGM:
    """The AGM branch of ``train()`` with its state across iterations and epochs.

    Departure kept on purpose (SPEC section 3, "plain L_T after"): outside the window
    the scales are 1, where the official hooks keep the last κ they were given."""

    def __init__(self, alpha=1.0, modulation_starts=0, modulation_ends=20, zero="embedding"):
        self.alpha, self.starts, self.ends, self.zero = (
            alpha,
            modulation_starts,
            modulation_ends,
            zero,
        )
        self.train_score_a = 0.0
        self.train_score_v = 0.0
        self.iteration = 0
        self.scale_a = 1.0
        self.scale_v = 1.0

    def step(self, model, x_v, x_l, label, epoch):
        model = copy.deepcopy(model)
        m_a_o, m_v_o = ModalityOut(), ModalityOut()
        m_a_o.register_full_backward_hook(lambda m, ginp, gout: (ginp[0].clone() * self.scale_a,))
        m_v_o.register_full_backward_hook(lambda m, ginp, gout: (ginp[0].clone() * self.scale_v,))
        v, a = _embed(model, x_v, x_l)
        total_out = model.head(v, a)
        if self.zero == "input":  # the official padding: the net re-run on a zeroed input
            model.eval()
            pad_visual_out = model.head(*_embed(model, torch.zeros_like(x_v), x_l))
            pad_audio_out = model.head(*_embed(model, x_v, torch.zeros_like(x_l)))
            model.train()
        else:  # balgrad's embedding zeroing
            pad_visual_out = model.head(torch.zeros_like(v), a)
            pad_audio_out = model.head(v, torch.zeros_like(a))
        m_a = m_a_o(0.5 * (total_out - pad_audio_out + pad_visual_out))
        m_v = m_v_o(0.5 * (total_out - pad_visual_out + pad_audio_out))
        out = m_a + m_v
        loss = nn.CrossEntropyLoss()(out, label)
        out_a = 0.5 * (total_out - pad_audio_out + pad_visual_out)
        out_v = 0.5 * (total_out - pad_visual_out + pad_audio_out)
        score_audio, score_visual = official_scores(out_a, out_v, label)

        ratio_a = math.exp(score_visual.item() - score_audio.item())
        ratio_v = math.exp(score_audio.item() - score_visual.item())
        optimal_ratio_a = math.exp(self.train_score_v - self.train_score_a)
        optimal_ratio_v = math.exp(self.train_score_a - self.train_score_v)
        coeff_a = math.exp(self.alpha * (min(optimal_ratio_a - ratio_a, 10)))
        coeff_v = math.exp(self.alpha * (min(optimal_ratio_v - ratio_v, 10)))
        self.iteration += 1
        iteration = self.iteration
        self.train_score_a = (
            self.train_score_a * (iteration - 1) / iteration + score_audio.item() / iteration
        )
        self.train_score_v = (
            self.train_score_v * (iteration - 1) / iteration + score_visual.item() / iteration
        )

        if self.starts <= epoch <= self.ends:
            self.scale_a, self.scale_v = coeff_a, coeff_v
        else:
            self.scale_a = self.scale_v = 1.0
        model.zero_grad()
        loss.backward()
        fc_out = model.head.classifier[-1]
        grad_max = torch.max(fc_out.weight.grad)
        grad_min = torch.min(fc_out.weight.grad)
        clipped = bool(grad_max > 1 or grad_min < -1)
        if clipped:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        grads = {p: p.grad.clone() for p in all_params(model)}
        return grads, model, {"coeff_v": coeff_v, "coeff_a": coeff_a, "clipped": clipped}


def assert_same_grads(model, got, ref_model, expected):
    for p, q in zip(all_params(model), all_params(ref_model)):
        torch.testing.assert_close(got[p], expected[q], **TOL)


# -- the step against the official loop ------------------------------------------------------
EPOCHS = [0, 1, 1, 2, 3]  # with modulation_end=1: steps 4 and 5 are after the window


@pytest.mark.parametrize("zero", ["embedding", "input"])
@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("encoder_scale", [1.0, 40.0])  # 40: the clip triggers
def test_steps_match_the_official_training_loop(zero, fusion, encoder_scale):
    model = make_model(fusion, seed=2, encoder_scale=encoder_scale)
    official = OfficialAGM(alpha=0.7, modulation_ends=1, zero=zero)
    strategy = AGM(alpha=0.7, modulation_end=1, zero=zero)
    clipped = []
    for i, epoch in enumerate(EPOCHS):
        x_v, x_l, y = make_batch(seed=10 + i)
        strategy.on_epoch_start(epoch, num_epochs=len(EPOCHS))
        got, stats = step(model, strategy, x_v, x_l, y)
        expected, ref, info = official.step(model, x_v, x_l, y, epoch)
        inside = epoch <= 1
        assert float(stats["modulated"]) == float(inside)
        assert float(stats["kappa_image"]) == pytest.approx(info["coeff_v"] if inside else 1.0)
        assert float(stats["kappa_text"]) == pytest.approx(info["coeff_a"] if inside else 1.0)
        assert float(stats["grad_clipped"]) == float(info["clipped"])
        assert_same_grads(model, got, ref, expected)
        clipped.append(info["clipped"])
    assert strategy.running == pytest.approx([official.train_score_v, official.train_score_a])
    assert strategy.count == len(EPOCHS)
    # both branches of the clip are exercised (attention's LayerNorm undoes the scale)
    if fusion != "attention":
        assert all(clipped) if encoder_scale > 1 else not any(clipped)


def test_first_step_kappa_starts_from_zero_running_scores():
    """S = 0 before the first step: r̄ = 1 and κ_m = exp(α · min(1 − r_m, 10)), not 1."""
    alpha = 0.5
    model = make_model("concat", seed=3)
    with torch.no_grad():  # make the image half of the head dominate
        model.head.classifier[-1].weight[:, :6] *= 8
    x_v, x_l, y = make_batch(seed=3)
    _, stats = step(model, AGM(alpha=alpha, clip="none"), x_v, x_l, y)
    h_v, h_l = _embed(model, x_v, x_l)
    f = model.head(h_v, h_l)
    o_v = 0.5 * (
        f - model.head(torch.zeros_like(h_v), h_l) + model.head(h_v, torch.zeros_like(h_l))
    )
    o_l = f - o_v
    s_v, s_l = (float(F.cross_entropy(o.detach(), y)) for o in (o_v, o_l))
    r_v, r_l = math.exp(s_l - s_v), math.exp(s_v - s_l)
    assert float(stats["kappa_image"]) == pytest.approx(math.exp(alpha * min(1 - r_v, 10)))
    assert float(stats["kappa_text"]) == pytest.approx(math.exp(alpha * min(1 - r_l, 10)))
    assert float(stats["running_ratio_image"]) == 1.0
    assert abs(float(stats["kappa_image"]) - 1) > 0.01  # the old first step gave exactly 1


def test_coefficient_sequence_by_hand():
    e = math.exp
    agm = AGM(alpha=0.5)

    def coef(s_v, s_l):
        c = agm.coefficients(torch.tensor([s_v, s_l], dtype=torch.float64))
        return [
            float(c["kappa"][0]),
            float(c["kappa"][1]),
            float(c["ratio"][0]),
            float(c["rbar"][0]),
        ]

    # step 1: S = (0, 0), r̄ = 1; s = (1, 2): r_v = e, r_l = 1/e
    assert coef(1.0, 2.0) == pytest.approx([e(0.5 * (1 - e(1))), e(0.5 * (1 - e(-1))), e(1), 1.0])
    # S = (1, 2). step 2: s = (2, 1): r_v = e^-1, r̄_v = e^{2-1} = e
    k_v, k_l, r_v, rbar_v = coef(2.0, 1.0)
    assert r_v == pytest.approx(e(-1)) and rbar_v == pytest.approx(e(1))
    assert k_v == pytest.approx(e(0.5 * (e(1) - e(-1))))  # exp(0.5 · 2.3504) ≈ 3.2388
    assert k_v == pytest.approx(3.2388, abs=1e-4)
    assert k_l == pytest.approx(e(0.5 * (e(-1) - e(1))))
    # S = (1.5, 1.5). step 3: s = (0.5, 0.5): r = r̄ = 1
    assert coef(0.5, 0.5)[:2] == pytest.approx([1.0, 1.0])
    # S = (3.5/3, 3.5/3). step 4: s = (0, 3): r_v = e^3, r̄_v = 1
    k_v, k_l, _, rbar_v = coef(0.0, 3.0)
    assert rbar_v == pytest.approx(1.0)
    assert k_v == pytest.approx(e(0.5 * (1 - e(3))))
    assert k_l == pytest.approx(e(0.5 * (1 - e(-3))))
    # S = (0.875, 1.625)
    assert agm.running == pytest.approx([0.875, 1.625])
    assert agm.count == 4


def test_coefficient_gap_is_capped_at_ten():
    agm = AGM(alpha=1.0)
    agm.load_state_dict({"running": [0.0, 5.0], "count": 1})  # r̄_v = e^5 ≈ 148
    c = agm.coefficients(torch.tensor([5.0, 0.0], dtype=torch.float64))  # r_v = e^-5
    assert float(c["kappa"][0]) == pytest.approx(math.exp(10.0))
    assert float(c["kappa"][1]) == pytest.approx(math.exp(math.exp(-5) - math.exp(5)))


def test_a_non_finite_score_leaves_the_running_means_alone():
    agm = AGM()
    agm.coefficients(torch.tensor([0.4, 0.9], dtype=torch.float64))
    before = (agm.running, agm.count)
    agm.coefficients(torch.tensor([float("nan"), 0.9], dtype=torch.float64))
    assert (agm.running, agm.count) == before


# -- the modulation window ----------------------------------------------------------------------
def test_default_window_is_epochs_0_to_20_inclusive():
    agm = AGM()
    active = []
    for epoch in range(25):
        agm.on_epoch_start(epoch, num_epochs=25)
        active.append(agm.active())
    assert active == [e <= 20 for e in range(25)]


@pytest.mark.parametrize("epoch,inside", [(1, False), (2, True), (4, True), (5, False)])
def test_window_edges_in_the_step(epoch, inside):
    model = make_model("concat", seed=4)
    x_v, x_l, y = make_batch(seed=4)
    strategy = AGM(alpha=1.0, modulation_start=2, modulation_end=4, clip="none")
    strategy.load_state_dict({"running": [0.3, 1.9], "count": 3})  # κ far from 1
    strategy.on_epoch_start(epoch, num_epochs=8)
    got, stats = step(model, strategy, x_v, x_l, y)
    assert float(stats["modulated"]) == float(inside)
    h_v, h_l = _embed(model, x_v, x_l)
    loss = F.cross_entropy(model.head(h_v, h_l), y)
    plain = dict(zip(all_params(model), torch.autograd.grad(loss, all_params(model))))
    if inside:  # linear head on concat: θ_m's gradient is κ_m times the plain one
        assert abs(float(stats["kappa_image"]) - 1) > 0.1
        for group, kappa in (
            (image_params(model), "kappa_image"),
            (text_params(model), "kappa_text"),
        ):
            for p in group:
                torch.testing.assert_close(got[p], float(stats[kappa]) * plain[p], **TOL)
    else:  # plain L_T: κ = 1, scores and running means still updated
        assert float(stats["kappa_image"]) == float(stats["kappa_text"]) == 1.0
        for p in all_params(model):
            torch.testing.assert_close(got[p], plain[p], **TOL)
    assert strategy.count == 4
    assert strategy.running != pytest.approx([0.3, 1.9])


# -- responses and the blank modality ---------------------------------------------------------
@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_responses_sum_to_the_fused_output(fusion, task):
    model = make_model(fusion, task, seed=1)
    x_v, x_l, _ = make_batch(task, seed=1)
    out = model({"image": x_v, "text": x_l})
    h_v, h_l = out.embeddings["image"], out.embeddings["text"]
    f_0l = model.classify({"image": torch.zeros_like(h_v), "text": h_l})
    f_v0 = model.classify({"image": h_v, "text": torch.zeros_like(h_l)})
    o_v, o_l = agm_responses(out.logits, f_0l, f_v0)
    torch.testing.assert_close(o_v + o_l, out.logits, **TOL)
    torch.testing.assert_close(o_v, 0.5 * (out.logits - f_0l + f_v0), **TOL)


def test_concat_response_is_the_modality_half_of_the_linear_head():
    """For a linear head on [h_v; h_l], o_v = W_v h_v + b/2 and o_l = W_l h_l + b/2."""
    model = make_model("concat", seed=2)
    x_v, x_l, _ = make_batch(seed=2)
    out = model({"image": x_v, "text": x_l})
    h_v, h_l = out.embeddings["image"], out.embeddings["text"]
    o_v, o_l = agm_responses(
        out.logits,
        model.classify({"image": torch.zeros_like(h_v), "text": h_l}),
        model.classify({"image": h_v, "text": torch.zeros_like(h_l)}),
    )
    linear = model.head.classifier[-1]
    d = h_v.shape[1]
    W, b = linear.weight, linear.bias
    torch.testing.assert_close(o_v, h_v @ W[:, :d].T + b / 2, **TOL)
    torch.testing.assert_close(o_l, h_l @ W[:, d:].T + b / 2, **TOL)


class BatchNormTower(nn.Module):
    """A tower whose output depends on train/eval mode (batch statistics)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.linear, self.norm, self.out_dim = nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), d_out

    def forward(self, x):
        return self.norm(self.linear(x))


def test_blank_embeddings_run_the_towers_on_zeroed_inputs_in_eval_mode():
    torch.manual_seed(0)
    towers = {"image": BatchNormTower(5, 4), "text": TinyEncoder(7, 4)}
    model = MultimodalModel(towers, 3, embed_dim=6).double()
    x_v, x_l, _ = make_batch(seed=0)
    model(
        {"image": x_v, "text": x_l}
    )  # one training forward: running statistics move off their defaults
    model.image_encoder.eval()  # a frozen-style tower the blank pass must leave in eval
    stats = copy.deepcopy(model.image_encoder.norm.state_dict())
    model.image_encoder.train()
    model.text_encoder.eval()
    blank = model.blank_embeddings({"image": x_v, "text": x_l})
    b_v, b_l = blank["image"], blank["text"]
    assert b_v.shape == (1, 6) and b_l.shape == (1, 6)
    # the running statistics are untouched, every training flag is back
    for k, v in model.image_encoder.norm.state_dict().items():
        assert torch.equal(v, stats[k]), k
    assert model.image_encoder.training and model.image_embedding.training
    assert not model.text_encoder.training
    with torch.no_grad():
        ref = copy.deepcopy(model).eval()
        torch.testing.assert_close(
            b_v, ref.image_embedding(ref.image_encoder(torch.zeros(1, 5).double())), **TOL
        )
        torch.testing.assert_close(
            b_l, ref.text_embedding(ref.text_encoder(torch.zeros(1, 7).double())), **TOL
        )
    # gradients flow through the blank pass
    (g,) = torch.autograd.grad(b_v.sum(), model.image_encoder.linear.bias)
    assert g.abs().sum() > 0


def test_blank_text_is_the_empty_string_through_the_tokenizer():
    enc = create_backbone("text", "small", texts=["a red dog", "a blue cat"], out_dim=5)
    model = MultimodalModel({"image": TinyEncoder(5, 4), "text": enc}, 3, embed_dim=6).double()
    tokens = enc.tokenize(["a red dog", "a cat"])
    b_l = model.blank_embeddings({"image": torch.randn(2, 5, dtype=torch.float64), "text": tokens})[
        "text"
    ]
    with torch.no_grad():
        model.eval()
        expected = model.text_embedding(model.text_encoder(enc.tokenize([""])))
    torch.testing.assert_close(b_l, expected, **TOL)


def test_input_zeroing_needs_a_model_that_can_blank_its_inputs():
    model = make_model("concat", seed=0)
    x_v, x_l, y = make_batch(seed=0)
    out = model({"image": x_v, "text": x_l})
    out = dataclasses.replace(out, inputs={**out.inputs, "image": None})
    with pytest.raises(ConfigError, match="zero='input'"):
        AGM(zero="input").backward(model, out, y)


# -- clipping ------------------------------------------------------------------------------------
def _head_weight(model, grads):
    return grads[model.head.classifier[-1].weight]


def test_clip_scales_the_whole_model_to_norm_one():
    model = make_model("concat", seed=7, encoder_scale=40.0)
    x_v, x_l, y = make_batch(seed=7)
    got, stats = step(model, AGM(), x_v, x_l, y)
    raw, raw_stats = step(model, AGM(clip="none"), x_v, x_l, y)
    assert float(stats["grad_clipped"]) == 1.0 and float(raw_stats["grad_clipped"]) == 0.0
    assert _head_weight(model, raw).abs().max() > 1
    norm = math.sqrt(sum(float((raw[p] ** 2).sum()) for p in all_params(model)))
    assert norm > 1
    for p in all_params(model):  # towers included: one factor for the whole model
        torch.testing.assert_close(got[p], raw[p] / (norm + 1e-6), **TOL)


def test_no_clip_when_the_output_weight_gradient_is_within_one():
    """Tower entries beyond 1 and a total norm above 1 do not trigger it: only the
    output-layer weight's entries do."""
    model = make_model("concat", seed=1)
    with torch.no_grad():  # a large head: large tower gradients, small head-weight ones
        model.head.classifier[-1].weight.mul_(20)
    x_v, x_l, y = make_batch(seed=1)
    raw, _ = step(model, AGM(clip="none"), x_v, x_l, y)
    got, stats = step(model, AGM(), x_v, x_l, y)
    assert _head_weight(model, raw).abs().max() <= 1
    assert max(float(raw[p].abs().max()) for p in all_params(model)) > 1
    assert float(stats["grad_clipped"]) == 0.0
    for p in all_params(model):
        torch.testing.assert_close(got[p], raw[p], **TOL)


# -- multi-label and κ through the gradient ----------------------------------------------------
@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
def test_multi_label_gradient_is_scaled_by_kappa(fusion):
    alpha = 0.7
    model = make_model(fusion, "multi_label", seed=5)
    x_v, x_l, y = make_batch("multi_label", seed=5)
    strategy = AGM(alpha=alpha, clip="none")
    strategy.load_state_dict({"running": [0.2, 1.4], "count": 4})
    got, stats = step(model, strategy, x_v, x_l, y)
    h_v, h_l = _embed(model, x_v, x_l)
    f = model.head(h_v, h_l)
    f_0l, f_v0 = model.head(torch.zeros_like(h_v), h_l), model.head(h_v, torch.zeros_like(h_l))
    o_v, o_l = 0.5 * (f - f_0l + f_v0), 0.5 * (f - f_v0 + f_0l)

    def score(o):  # mean over samples of the mean over labels of −log p(true state)
        p = torch.sigmoid(o.detach())
        return float(-torch.log(torch.where(y > 0.5, p, 1 - p)).mean())

    s_v, s_l = score(o_v), score(o_l)
    k_v = math.exp(alpha * min(math.exp(1.2) - math.exp(s_l - s_v), 10))
    k_l = math.exp(alpha * min(math.exp(-1.2) - math.exp(s_v - s_l), 10))
    assert float(stats["kappa_image"]) == pytest.approx(k_v, rel=1e-10)
    assert float(stats["kappa_text"]) == pytest.approx(k_l, rel=1e-10)
    loss = F.binary_cross_entropy_with_logits(o_v + o_l, y)
    (g,) = torch.autograd.grad(loss, [o_v], retain_graph=True)
    params = all_params(model)
    expected = torch.autograd.grad([o_v, o_l], params, [k_v * g, k_l * g], allow_unused=True)
    for p, e in zip(params, expected):
        torch.testing.assert_close(got[p], torch.zeros_like(p) if e is None else e, **TOL)


# -- state, host syncs, loss scaling, mixed precision ------------------------------------------
def test_state_dict_round_trip_through_weights_only_load_is_exact():
    model = make_model("concat", seed=6)
    a = AGM(alpha=0.3)
    for i in range(3):
        step(model, a, *make_batch(seed=20 + i))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = AGM(alpha=0.3)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert b.running == a.running and b.count == a.count
    batch = make_batch(seed=30)
    ga, sa = step(model, a, *batch)
    gb, sb = step(model, b, *batch)
    assert float(sa["kappa_image"]) == float(sb["kappa_image"])
    for p in all_params(model):
        assert torch.equal(ga[p], gb[p])
    assert b.running == a.running


@pytest.mark.parametrize("zero", ["embedding", "input"])
def test_the_step_reads_no_tensor_value_on_the_host(monkeypatch, zero):
    model = make_model("concat", seed=6, encoder_scale=40.0)
    batch = make_batch(seed=6)
    stats = compute_without_host_reads(monkeypatch, AGM(zero=zero), agm_module, model, batch)
    assert float(stats["grad_clipped"]) == 1.0


@pytest.mark.parametrize("scale", [2.0**10, 3.0])
@pytest.mark.parametrize("encoder_scale", [1.0, 40.0])  # 40: the clip triggers
def test_a_loss_scale_scales_the_update_exactly_clip_included(scale, encoder_scale):
    model = make_model("concat", seed=7, encoder_scale=encoder_scale)
    stats, scaled = scaled_against_unscaled(
        model, lambda: AGM(alpha=0.8), make_batch(seed=7), scale
    )
    assert float(stats["grad_clipped"]) == float(encoder_scale > 1)
    assert float(scaled["grad_clipped"]) == float(stats["grad_clipped"])
    assert float(scaled["kappa_image"]) == float(stats["kappa_image"])


@pytest.mark.parametrize("backward_inside", [True, False])
@pytest.mark.parametrize("zero", ["embedding", "input"])
def test_bf16_autocast_grad_is_close_to_fp32(backward_inside, zero):
    def factory():
        agm = AGM(alpha=1.0, zero=zero)
        agm.load_state_dict({"running": [0.9, 1.6], "count": 5})
        return agm

    ref, stats = bf16_against_fp32(factory, seed=8, backward_inside=backward_inside)
    assert abs(float(ref["kappa_image"]) - 1) > 0.1
    assert float(stats["kappa_image"]) == pytest.approx(float(ref["kappa_image"]), rel=2e-2)


def test_bad_options_raise():
    with pytest.raises(ConfigError, match="alpha"):
        AGM(alpha=-1.0)
    with pytest.raises(ConfigError, match="clip"):
        AGM(clip="head")
    with pytest.raises(ConfigError, match="zero"):
        AGM(zero="noise")
    with pytest.raises(ConfigError, match="modulation_end"):
        AGM(modulation_start=3, modulation_end=1)


def test_prob_floor_clamps_the_true_label_probability_as_the_two_modal_code():
    # p(true) = softmax([0, -30])[1] = 1 / (1 + e^30) ≈ 9.4e-14, below the 1e-8 floor
    o = torch.tensor([[0.0, -30.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    unclamped = math.log1p(math.exp(30.0))  # −log p(true) of the first sample, by hand
    two_modal = agm_module.response_score(o, y, "single_label")
    three_modal = agm_module.response_score(o, y, "single_label", prob_floor=0.0)
    assert two_modal[0].item() == pytest.approx(-math.log(1e-8), rel=1e-12)
    assert three_modal[0].item() == pytest.approx(unclamped, rel=1e-12)
    # above the floor the two agree: −log ½
    assert two_modal[1].item() == three_modal[1].item() == pytest.approx(math.log(2.0))


def test_prob_floor_zero_scores_unclamped_in_the_multi_label_case_too():
    o = torch.tensor([[40.0, 0.0]], dtype=torch.float64)  # label 0 absent: p(absent) = σ(−40)
    y = torch.tensor([[0, 1]])
    by_hand = (math.log1p(math.exp(40.0)) + math.log(2.0)) / 2
    assert agm_module.response_score(o, y, "multi_label", prob_floor=0.0).item() == (
        pytest.approx(by_hand, rel=1e-12)
    )
    clamped = (-math.log(1e-8) + math.log(2.0)) / 2
    assert agm_module.response_score(o, y, "multi_label").item() == pytest.approx(clamped)


@pytest.mark.parametrize("bad", [-1e-9, 1.0, float("nan")])
def test_prob_floor_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ConfigError, match="prob_floor"):
        AGM(prob_floor=bad)


@pytest.mark.parametrize("prob_floor", [1e-8, 0.0])
def test_the_step_scores_with_the_chosen_prob_floor(prob_floor):
    model = make_model("concat", seed=3)
    with torch.no_grad():  # an image response so confident that some p(true) < 1e-8
        model.head.classifier[-1].weight[:, :6] *= 400
    x_v, x_l, y = make_batch(seed=3)
    _, stats = step(model, AGM(clip="none", prob_floor=prob_floor), x_v, x_l, y)
    h_v, h_l = _embed(model, x_v, x_l)
    f = model.head(h_v, h_l)
    o_v = (
        0.5
        * (
            f - model.head(torch.zeros_like(h_v), h_l) + model.head(h_v, torch.zeros_like(h_l))
        ).detach()
    )
    p_true = F.softmax(o_v.double(), -1).gather(-1, y.view(-1, 1)).squeeze(-1)
    assert float(p_true.min()) < 1e-8  # the floor matters on this batch
    expected = -torch.log(p_true.clamp_min(prob_floor) if prob_floor else p_true).mean()
    assert float(stats["agm_score_image"]) == pytest.approx(float(expected), rel=1e-5)
