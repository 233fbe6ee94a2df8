"""balgrad._grad: parameter layouts, per-parameter list arithmetic and PCGrad, against
hand-worked values and plain autograd."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from balgrad import _grad
from balgrad._grad import (
    GradientSync,
    ParamLayout,
    add_to_grads_,
    axpy_,
    cosine,
    dots,
    full_precision,
    grads_of,
    group_sums,
    project_conflicting_,
    sq_norms,
)


def _params():
    a = nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # 4 entries
    b = nn.Parameter(torch.tensor([5.0]))  # 1
    c = nn.Parameter(torch.tensor([6.0, 7.0, 8.0]))  # 3
    return a, b, c


# -- the layout ---------------------------------------------------------------------------
def test_layout_lists_groups_in_order_with_their_index_ranges():
    a, b, c = _params()
    layout = ParamLayout.of({"x": [a, b], "y": [c]})
    assert layout.params == [a, b, c]
    assert layout.index == {"x": slice(0, 2), "y": slice(2, 3)}
    assert layout.params[layout.index["y"]] == [c]


def test_layout_skips_frozen_parameters():
    a, b, c = _params()
    b.requires_grad_(False)
    layout = ParamLayout.of({"x": [a, b], "y": [c]})
    assert layout.params == [a, c] and layout.groups["x"] == [a]
    assert layout.index == {"x": slice(0, 1), "y": slice(1, 2)}


def test_a_parameter_in_two_groups_is_rejected():
    a, b, _ = _params()
    with pytest.raises(ValueError, match="two parameter groups"):
        ParamLayout.of({"x": [a], "y": [a, b]})


# -- per-parameter lists -----------------------------------------------------------------
def test_grads_of_matches_autograd_and_fills_unused_with_zeros():
    a, b, c = _params()
    loss = (a * a).sum() + 3 * b.sum()  # c unused
    ga, gb, gc = grads_of(loss, [a, b, c])
    assert ga.tolist() == [[2, 4], [6, 8]]
    assert gb.tolist() == [3]
    assert gc.tolist() == [0, 0, 0]
    # a loss that needs no grad: zeros, and no error
    assert [g.tolist() for g in grads_of(torch.tensor(1.0), [b])] == [[0.0]]


def test_grads_of_returns_writable_tensors():
    """autograd returns ``ones.expand(shape)`` (stride 0) for a sum; in-place ops need
    a real tensor."""
    a, _, _ = _params()
    raw = torch.autograd.grad(a.sum(), a)[0]
    assert raw.stride() == (0, 0)
    (g,) = grads_of(a.sum(), [a])
    g.mul_(2)  # would raise on the expanded view
    assert g.tolist() == [[2, 2], [2, 2]]


def test_grads_of_never_hands_out_one_tensor_twice():
    """Both operands of an add get the incoming gradient itself from autograd; each
    parameter must get its own tensor, so that scaling one leaves the other alone."""
    a, _, _ = _params()
    b = nn.Parameter(torch.ones(2, 2))
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    raw = torch.autograd.grad(((a + b) * w).sum(), [a, b])
    assert raw[0] is raw[1]  # what autograd does
    ga, gb = grads_of(((a + b) * w).sum(), [a, b])
    assert ga.data_ptr() != gb.data_ptr()
    ga.mul_(10)
    assert ga.tolist() == [[10, 20], [30, 40]] and gb.tolist() == [[1, 2], [3, 4]]


def test_grads_of_without_materialising_gives_none_where_unused():
    a, b, c = _params()
    ga, gb, gc = grads_of(2 * a.sum() + b.sum(), [a, b, c], materialize=False)
    assert ga.tolist() == [[2, 2], [2, 2]] and gb.tolist() == [1] and gc is None
    assert grads_of(torch.tensor(1.0), [a, b], materialize=False) == [None, None]


def test_grads_of_several_roots_with_cotangents():
    x = nn.Parameter(torch.tensor([1.0, 2.0]))
    h = 3 * x  # an intermediate root
    loss = (h * h).sum()  # d/dx = 18 x
    (g,) = grads_of([loss, h], [x], [None, torch.tensor([1.0, -1.0])])
    assert g.tolist() == [18 * 1 + 3, 18 * 2 - 3]


def test_dots_norms_and_group_sums_by_hand():
    a = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    b = [torch.tensor([4.0, -1.0]), torch.tensor([[2.0]])]
    assert dots(a, b).tolist() == [2.0, 6.0]
    assert sq_norms(a).tolist() == pytest.approx([5.0, 9.0])
    assert [float(v) for v in group_sums(torch.tensor([1.0, 2.0, 3.0, 4.0]), [1, 2], a[0])] == [
        1.0,
        5.0,
    ]
    empty = group_sums(torch.zeros(0), [1, 2], torch.zeros((), dtype=torch.float64))
    assert [float(v) for v in empty] == [0.0, 0.0] and empty[0].dtype == torch.float64
    like = torch.zeros((), dtype=torch.float64)
    assert dots([], [], like).dtype == torch.float64 and sq_norms([], like).numel() == 0


def test_low_precision_reductions_run_in_float32():
    a = [torch.full((1000,), 0.1, dtype=torch.bfloat16)]
    assert dots(a, a).dtype == torch.float32
    assert sq_norms(a).dtype == torch.float32
    exact = 1000 * float(torch.tensor(0.1, dtype=torch.bfloat16)) ** 2
    assert float(sq_norms(a)[0]) == pytest.approx(exact, rel=1e-5)


def test_axpy_and_add_to_grads():
    ys = [torch.tensor([1.0, 1.0]), torch.tensor([2.0])]
    axpy_(ys, [torch.tensor([1.0, 2.0]), torch.tensor([3.0])], torch.tensor([10.0, -1.0]))
    assert [y.tolist() for y in ys] == [[11.0, 21.0], [-1.0]]
    a, b, _ = _params()
    b.grad = torch.tensor([1.0])
    ga, gb = torch.ones(2, 2), torch.tensor([2.0])
    add_to_grads_([a, b], [ga, gb])
    assert a.grad is ga  # no grad yet: the owned tensor becomes .grad, without a copy
    assert b.grad.tolist() == [3.0]
    _, _, c = _params()
    add_to_grads_([b, c], [None, None])  # None: as backward() for an unreached parameter
    assert b.grad.tolist() == [3.0] and c.grad is None


def test_cosine_is_zero_for_zero_vectors():
    assert float(cosine(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(2.0))) == 0.0
    assert float(cosine(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0))) == 0.0
    # (1, 0) vs (1, 1)
    c = cosine(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(math.sqrt(2)))
    assert float(c) == pytest.approx(1 / math.sqrt(2))


# -- projection ------------------------------------------------------------------------------
def _split(v):  # one vector as a two-tensor parameter list
    return [v[:1].clone(), v[1:].clone()]


def test_project_conflicting_by_hand():
    # g = (1, 0), ref = (−1, 1): <g, ref> = −1, |ref|² = 2 -> g − (−½)(−1, 1) = (½, ½)
    g = _split(torch.tensor([1.0, 0.0]))
    out = project_conflicting_(g, _split(torch.tensor([-1.0, 1.0])), torch.ones(2))
    assert bool(out.conflict) and float(out.dot) == -1.0 and float(out.ref_sq_norm) == 2.0
    assert torch.cat(g).tolist() == [0.5, 0.5]
    assert float(out.dot_after) == 0.0
    # per-tensor scale: r = (0·3, 2·1) = (0, 2) for g = (3, −4): <g, r> = −8, |r|² = 4
    g = _split(torch.tensor([3.0, -4.0]))
    out = project_conflicting_(g, _split(torch.tensor([3.0, 1.0])), torch.tensor([0.0, 2.0]))
    assert bool(out.conflict) and torch.cat(g).tolist() == [3.0, 0.0]


def test_project_leaves_agreeing_orthogonal_and_zero_reference_alone():
    for ref in ([1.0, 0.0], [1.0, -1.0], [0.0, 0.0]):
        g = _split(torch.tensor([1.0, 1.0]))
        out = project_conflicting_(g, _split(torch.tensor(ref)), torch.ones(2))
        assert not bool(out.conflict)
        assert torch.cat(g).tolist() == [1.0, 1.0]


def test_projection_of_a_nearly_anti_parallel_float32_vector_leaves_no_conflict():
    g = torch.Generator().manual_seed(4)  # a seed where one pass leaves cos ~ -2e-3
    ref = torch.randn(200_000, generator=g)
    # -ref plus a tiny orthogonal part: the first-order projection loses it to rounding
    noise = torch.randn(200_000, generator=g) * 1e-3
    noise -= torch.dot(noise, ref) / torch.dot(ref, ref) * ref
    v = -3.0 * ref + noise
    parts = [v[:120_000].clone(), v[120_000:].clone()]
    out = project_conflicting_(parts, [ref[:120_000], ref[120_000:]], torch.ones(2))
    assert bool(out.conflict)
    res = torch.cat(parts).double()
    cos = torch.dot(res, ref.double()) / (res.norm() * ref.double().norm())
    assert cos > -1e-6


# -- sync and precision -------------------------------------------------------------------
def test_single_process_sync_is_identity():
    t = torch.tensor([1.0, 2.0])
    sync = GradientSync()
    assert torch.equal(sync.mean(t), t) and torch.equal(sync.sum(t), t)
    ts = [t.clone()]
    sync.mean_(ts)
    assert torch.equal(ts[0], t)


def test_buckets_group_by_dtype_and_size(monkeypatch):
    monkeypatch.setattr(_grad, "BUCKET_NUMEL", 5)
    ts = [torch.zeros(3), torch.zeros(2, dtype=torch.float64), torch.zeros(3), torch.zeros(9)]
    buckets = [[t.numel() for t in b] for b in _grad._buckets(ts)]
    assert buckets == [[3], [3], [9], [2]]


def test_full_precision_turns_autocast_off_inside_a_region_only():
    x = torch.randn(3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
        with full_precision(torch.device("cpu")):
            assert (x @ x).dtype == torch.float32
    with full_precision(torch.device("cpu")):
        assert (x @ x).dtype == torch.float32
