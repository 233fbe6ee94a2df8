"""PMR: its math by hand at M = 3, its step against a transcription of the official code
(fanyunfeng-bit/Modal-Imbalance-PMR @3615e48, ``main_Prototype_grad.py``) on the official
``AVClassifier`` shape, and the epoch-start pass it needs: an own loop that skips
``prepare_epoch`` fails naming it, the pass's state survives a ``weights_only`` checkpoint.

Float64 throughout: the parity comparisons hold to 1e-12 (the two sides sum the same
numbers in different orders, so they are not bitwise equal)."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn as nn
from official_example import official
from reference_m import make_batch_m, make_model_m

from balgrad.errors import ConfigError, DataError
from balgrad.strategies import create_strategy
from balgrad.strategies._base import EpochBatches
from balgrad.strategies._pmr import (
    first_tenth,
    pmr_coefficients,
    pmr_ratios,
    prototype_logits,
    prototype_loss,
    prototype_score,
    prototypes,
    update_prototypes,
)

THREE = ("audio", "visual", "text")

D = torch.float64


# -- the math, by hand -------------------------------------------------------------------
def test_prototypes_are_class_means_and_an_unseen_class_has_count_zero():
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], dtype=D)
    P, n = prototypes(h, torch.tensor([0, 1, 0, 2]), 4)
    assert P.tolist() == [[3.0, 4.0], [3.0, 4.0], [7.0, 8.0], [0.0, 0.0]]
    assert n.tolist() == [2, 1, 1, 0]


def test_prototype_logits_are_negative_euclidean_distances_not_squared():
    h = torch.zeros(1, 2, dtype=D)
    P = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]], dtype=D)
    assert prototype_logits(h, P).tolist() == [[-5.0, -1.0, -10.0]]
    known = torch.tensor([True, False, True])
    assert prototype_logits(h, P, known).tolist() == [[-5.0, -math.inf, -10.0]]


def test_the_gradient_at_distance_zero_is_zero_not_nan():
    P = torch.tensor([[1.0, 2.0], [4.0, 6.0]], dtype=D)
    h = P[:1].clone().requires_grad_(True)
    s = prototype_logits(h, P)
    s.sum().backward()
    # only the distance to P[1] (5, along (3, 4)) contributes: d(−‖h − P1‖)/dh = (P1 − h)/5
    assert h.grad.tolist() == [pytest.approx([0.6, 0.8], abs=1e-15)]


def test_scores_and_the_prototype_loss_by_hand():
    s = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]], dtype=D)
    y = torch.tensor([1, 1])
    assert float(prototype_score(s, y)) == pytest.approx(0.75 + 0.25, abs=1e-15)
    # a sample of a class without a prototype is left out of the mean
    s3 = torch.tensor([[0.0, 0.0, -math.inf], [0.0, 0.0, -math.inf]], dtype=D)
    loss = prototype_loss(s3, torch.tensor([0, 2]))
    assert float(loss) == pytest.approx(math.log(2.0), abs=1e-15)


def test_coefficients_at_three_modalities_one_versus_rest():
    # ρ = 1 / ((2+3)/2), 2 / ((1+3)/2), 3 / ((1+2)/2) = 0.4, 1, 2: only the first is slow
    rho, beta = pmr_coefficients(torch.tensor([1.0, 2.0, 3.0], dtype=D), alpha=2.0)
    assert rho.tolist() == pytest.approx([0.4, 1.0, 2.0], abs=1e-15)
    assert beta.tolist() == [2.0, 0.0, 0.0]
    rho, beta = pmr_coefficients(torch.tensor([1.0, 1.0, 4.0], dtype=D), alpha=0.5)
    assert rho.tolist() == pytest.approx([0.4, 0.4, 4.0], abs=1e-15)
    assert beta.tolist() == [0.5, 0.5, 0.0]


def test_two_modalities_are_the_official_switch_on_rho_of_the_first():
    for scores, want in (
        ([3.0, 1.0], [0.0, 1.5]),
        ([1.0, 3.0], [1.5, 0.0]),
        ([2.0, 2.0], [0.0, 0.0]),
    ):
        rho, beta = pmr_coefficients(torch.tensor(scores, dtype=D), alpha=1.5)
        assert beta.tolist() == want
        assert float(rho[0]) == scores[0] / scores[1]
    assert pmr_ratios(torch.tensor([0.0, 0.0, 0.0], dtype=D)).tolist() == [1.0, 1.0, 1.0]
    assert pmr_ratios(torch.tensor([1.0, 0.0], dtype=D)).tolist() == [math.inf, 0.0]


def test_the_moving_average_keeps_unseen_classes_and_starts_unknown_ones_fresh():
    new = torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]], dtype=D)
    counts = torch.tensor([1.0, 1.0, 0.0], dtype=D)
    old = torch.tensor([[3.0, 3.0], [4.0, 4.0], [5.0, 5.0]], dtype=D)
    known = torch.tensor([True, False, True])
    P, k = update_prototypes(new, counts, old, known, momentum=0.25, smooth=True)
    assert P.tolist() == [[1.5, 1.5], [2.0, 2.0], [5.0, 5.0]]  # 0.75·1 + 0.25·3; fresh; kept
    assert k.tolist() == [True, True, True]
    P, _ = update_prototypes(new, counts, old, known, momentum=0.25, smooth=False)
    assert P.tolist() == [[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]]
    P, k = update_prototypes(new, counts, None, None, momentum=0.25, smooth=True)
    assert k.tolist() == [True, True, False]


def test_the_pass_takes_the_first_tenth_and_at_least_one_batch():
    assert list(first_tenth(list(range(25)))) == [0, 1]
    assert list(first_tenth(list(range(9)))) == [0]
    assert list(first_tenth(iter(range(3)))) == [0, 1, 2]  # no length: taken whole

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(range(3))

    loader = torch.utils.data.DataLoader(Stream(), batch_size=None)
    assert list(first_tenth(EpochBatches(loader, lambda b: b))) == [0, 1, 2]


# -- the step at M = 3 against the loss written out --------------------------------------
def test_the_step_at_three_modalities_is_the_gradient_of_the_written_out_loss():
    model = make_model_m(THREE, seed=3, scales={"visual": 3.0})
    inputs, y = make_batch_m(THREE, seed=3)
    strategy = create_strategy("pmr", alpha=0.7)
    strategy.on_epoch_start(0, 2)
    strategy.prepare_epoch(model, [(inputs, y)])
    out = model(inputs)
    stats = strategy.backward(model, out, y)
    got = {k: p.grad.clone() for k, p in model.named_parameters()}

    # the reference: prototypes as class means by hand, L = CE(z) + α Σ_{ρ_m < 1} CE(s_m)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        h0 = model.eval()(inputs).embeddings
    model.train()
    out = model(inputs)
    loss = nn.functional.cross_entropy(out.logits, y)
    scores, ce = [], []
    for m in THREE:
        P = torch.stack([h0[m][y == c].mean(0) for c in range(4)])
        s = -torch.cdist(out.embeddings[m], P)
        scores.append(float(torch.softmax(s.detach(), -1)[torch.arange(len(y)), y].sum()))
        ce.append(nn.functional.cross_entropy(s, y))
    slow = []
    for i in range(3):
        rest = (sum(scores) - scores[i]) / 2
        if scores[i] / rest < 1:
            slow.append(THREE[i])
            loss = loss + 0.7 * ce[i]
    loss.backward()
    assert slow and len(slow) < 3  # the case tests something
    assert [m for m in THREE if float(stats[f"coef_{m}"]) > 0] == slow
    for k, p in model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-12, atol=1e-13, msg=k)


# -- parity with the official code -------------------------------------------------------
def _eu_dist(x1, x2):  # the official EU_dist, as written
    d_matrix = torch.zeros(x1.shape[0], x2.shape[0]).to(x1.device)
    for i in range(x1.shape[0]):
        for j in range(x2.shape[0]):
            d = torch.sqrt(torch.dot((x1[i] - x2[j]), (x1[i] - x2[j])))
            d_matrix[i, j] = d
    return d_matrix


def _official_prototypes(model, dataloader, n_classes, embed_dim, epoch, mu, a_old, v_old):
    """calculate_prototype (l.383-442): the first max(1, N // 10) batches, eval mode."""
    audio = torch.zeros(n_classes, embed_dim)
    visual = torch.zeros(n_classes, embed_dim)
    count = [0 for _ in range(n_classes)]
    model.eval()
    with torch.no_grad():
        sample_count = 0
        all_num = len(dataloader)
        for spec, image, label in dataloader:
            a, v, out = model(spec, image)
            for c, lab in enumerate(label):
                lab = lab.long()
                count[lab] += 1
                audio[lab, :] += a[c, :]
                visual[lab, :] += v[c, :]
            sample_count += 1  # noqa: SIM113 - the official loop, as written
            if sample_count >= all_num // 10:
                break
    for c in range(audio.shape[0]):
        audio[c, :] /= count[c]
        visual[c, :] /= count[c]
    if epoch > 0:
        audio = (1 - mu) * audio + mu * a_old
        visual = (1 - mu) * visual + mu * v_old
    return audio, visual


def _official_step(model, optimizer, spec, image, label, epoch, a_proto, v_proto, alpha, ends):
    """train_epoch's step (l.116-270), concat fusion, modulation 'Proto'."""
    criterion = nn.CrossEntropyLoss()
    softmax = nn.Softmax(dim=1)
    model.train()
    optimizer.zero_grad()
    a, v, out = model(spec, image)
    audio_sim = -_eu_dist(a, a_proto)
    visual_sim = -_eu_dist(v, v_proto)
    branch = "off"
    if 0 <= epoch <= ends:
        score_a_p = sum([softmax(audio_sim)[i][label[i]] for i in range(audio_sim.size(0))])
        score_v_p = sum([softmax(visual_sim)[i][label[i]] for i in range(visual_sim.size(0))])
        ratio_a_p = score_a_p / score_v_p
        loss_proto_a = criterion(audio_sim, label)
        loss_proto_v = criterion(visual_sim, label)
        if ratio_a_p > 1:
            beta, lam, branch = 0, 1 * alpha, "rho>1"
        elif ratio_a_p < 1:
            beta, lam, branch = 1 * alpha, 0, "rho<1"
        else:
            beta, lam, branch = 0, 0, "rho=1"
        loss = criterion(out, label) + beta * loss_proto_a + lam * loss_proto_v
    else:
        loss = criterion(out, label)
    loss.backward()
    optimizer.step()
    return branch


def _data(n_batches: int, seed: int, n: int = 6):
    """Batches (spec, frames, label) with every class in each, as the official loop's
    prototype pass needs (it divides by each class's count)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        spec = torch.randn(n, 1, 16, 12, generator=g, dtype=D)
        frames = torch.randn(n, 3, 2, 16, 16, generator=g, dtype=D)
        label = torch.arange(n) % 3
        label = label[torch.randperm(n, generator=g)]
        out.append((spec, frames, label))
    return out


@pytest.fixture
def float64_default():
    """The official code makes its distance matrix and prototypes with torch.zeros in the
    default dtype: float64 here, so that the transcription runs at the model's precision."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_the_step_equals_the_official_code_over_three_epochs(float64_default):
    """Three epochs of ten batches: two fresh prototype computations, then the moving
    average (μ = 0.5), the modulation window ending after epoch 1; SGD with the official
    momentum and weight decay. The parameters after every step agree to 1e-12, under
    ρ > 1 and ρ < 1 (the two cases are seen)."""
    alpha, mu, ends, lr, epochs = 1.5, 0.5, 1, 0.05, 3
    torch.manual_seed(0)
    av_official = official.AVClassifier(n_classes=3, width=8).double()
    av_ours = copy.deepcopy(av_official)
    model = official.declare(av_ours)
    data = [_data(10, seed=10 * e + 1) for e in range(epochs)]

    opt_official = torch.optim.SGD(av_official.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    strategy = create_strategy("pmr", alpha=alpha, momentum_coef=mu, modulation_end=ends)
    opt_ours = torch.optim.SGD(
        strategy.param_groups(model, lr), lr=lr, momentum=0.9, weight_decay=1e-4
    )

    # main() l.532-557: before training with epoch 0, after each epoch with its number
    # (here: at the start of the next, from the same weights, on that epoch's loader)
    a_proto, v_proto = _official_prototypes(av_official, data[0], 3, 8, 0, mu, None, None)
    branches = []
    for epoch in range(epochs):
        if epoch > 0:
            a_proto, v_proto = _official_prototypes(
                av_official, data[epoch], 3, 8, epoch - 1, mu, a_proto, v_proto
            )
        strategy.on_epoch_start(epoch, epochs)
        batches = [({"audio": s, "visual": f}, y) for s, f, y in data[epoch]]
        strategy.prepare_epoch(model, batches)
        torch.testing.assert_close(strategy.prototypes["audio"], a_proto, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(strategy.prototypes["visual"], v_proto, rtol=1e-12, atol=1e-13)
        for spec, frames, label in data[epoch]:
            branches.append(
                _official_step(
                    av_official, opt_official, spec, frames, label, epoch, a_proto, v_proto,
                    alpha, ends,
                )
            )  # fmt: skip
            opt_ours.zero_grad()
            stats = strategy.backward(model, model({"audio": spec, "visual": frames}), label)
            opt_ours.step()
            want = {"rho>1": [0.0, alpha], "rho<1": [alpha, 0.0]}.get(branches[-1])
            if want is not None:
                assert [float(stats["coef_audio"]), float(stats["coef_visual"])] == want
            assert float(stats["modulated"]) == float(epoch <= ends)
            for p, q in zip(av_ours.parameters(), av_official.parameters()):
                torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    assert strategy.computations == 3
    assert set(branches) == {"rho>1", "rho<1", "off"}  # both switch branches compared


# -- the epoch-start pass: never silently joint ------------------------------------------
def test_an_own_loop_that_skips_prepare_epoch_fails_naming_the_hook():
    model = make_model_m(THREE, seed=1)
    inputs, y = make_batch_m(THREE, seed=1)
    strategy = create_strategy("pmr")
    with pytest.raises(ConfigError, match=r"prepare_epoch\(model, batches\).*epoch 0 has none"):
        strategy.backward(model, model(inputs), y)
    strategy.prepare_epoch(model, [(inputs, y)])
    strategy.backward(model, model(inputs), y)  # prepared: trains
    strategy.on_epoch_start(1, 3)  # a new epoch without its pass: refused again
    with pytest.raises(ConfigError, match=r"prepare_epoch.*epoch 1 has none"):
        strategy.backward(model, model(inputs), y)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_pass_runs_in_eval_mode_without_gradients_and_restores_the_mode():
    model = make_model_m(THREE, seed=1)
    inputs, y = make_batch_m(THREE, seed=1)
    modes = []
    model.register_forward_hook(
        lambda mod, i, o: modes.append((mod.training, torch.is_grad_enabled()))
    )
    model.train()
    create_strategy("pmr").prepare_epoch(model, [(inputs, y)])
    assert modes == [(False, False)] and model.training


def test_multi_label_is_refused():
    model = make_model_m(THREE, task="multi_label", seed=0)
    inputs, y = make_batch_m(THREE, task="multi_label", seed=0)
    with pytest.raises(ConfigError, match="single-label"):
        create_strategy("pmr").prepare_epoch(model, [(inputs, y)])


def test_a_label_out_of_range_in_the_pass_is_named():
    model = make_model_m(THREE, seed=0)
    inputs, y = make_batch_m(THREE, seed=0)
    y = y.clone()
    y[2] = 7
    with pytest.raises(DataError, match=r"pmr.*\[0, 4\)"):
        create_strategy("pmr").prepare_epoch(model, [(inputs, y)])


def test_a_class_missing_from_the_first_pass_is_left_out_not_nan():
    model = make_model_m(THREE, seed=4)
    inputs, y = make_batch_m(THREE, seed=4)
    y = torch.tensor([0, 1, 0, 1, 0, 1, 2, 0])
    strategy = create_strategy("pmr")
    seen = {m: x[:6] for m, x in inputs.items()}  # classes 0 and 1 only
    strategy.prepare_epoch(model, [(seen, y[:6])])
    assert strategy.known.tolist() == [True, True, False, False]
    stats = strategy.backward(model, model(inputs), y)
    assert all(torch.isfinite(v) for v in stats.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_the_state_survives_a_weights_only_checkpoint_and_continues_identically():
    inputs, y = make_batch_m(THREE, seed=5)
    inputs2, y2 = make_batch_m(THREE, seed=6)
    model = make_model_m(THREE, seed=5)
    strategy = create_strategy("pmr", momentum_coef=0.3)
    for epoch in range(2):
        strategy.on_epoch_start(epoch, 4)
        strategy.prepare_epoch(model, [(inputs, y)])
        strategy.backward(model, model(inputs), y)
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    resumed = create_strategy("pmr", momentum_coef=0.3)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.prepared_epoch == 1 and resumed.computations == 2
    assert not resumed.needs_preparation()  # resumed inside epoch 1: its pass is there
    twin = copy.deepcopy(model)
    for s, net in ((strategy, model), (resumed, twin)):
        s.on_epoch_start(2, 4)
        s.prepare_epoch(net, [(inputs2, y2)])  # the third pass: the moving average
        net.zero_grad(set_to_none=True)
        s.backward(net, net(inputs2), y2)
    for m in THREE:
        assert torch.equal(strategy.prototypes[m], resumed.prototypes[m])
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)  # the same operations on the same numbers
