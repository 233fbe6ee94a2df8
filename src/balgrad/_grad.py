"""Gradient arithmetic shared by the strategies: per-parameter lists, foreach ops, sync.

Strategies compute several *separate* gradients (task, unimodal, KL) with
``torch.autograd.grad``. They keep them as lists of per-parameter tensors, in the
gradients' own dtype and device, and combine them in place with ``torch._foreach_*`` ops:
no full-size flat copies, and no host synchronisation (coefficients and conflict flags
are 0-d device tensors, chosen with ``torch.where``).

Under data-parallel training each separate gradient and each batch statistic is
all-reduced through a :class:`GradientSync` *before* any coefficient, norm or projection
is computed, so every rank applies the same update (SPEC section 3, last paragraph).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from balgrad.tasks import LOW_PRECISION, widen

#: absolute threshold below which a norm counts as zero (not scale-invariant: docs/spec.md)
EPS = 1e-12
#: all-reduce buckets hold at most this many elements (about 100 MB in float32)
BUCKET_NUMEL = 25 * 2**20


class GradientSync:
    """Single-process sync: every reduction is the identity."""

    world_size = 1

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def mean_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Average a list of tensors over ranks, in place."""

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank."""


class DistributedGradientSync(GradientSync):
    """All-reduce over a ``torch.distributed`` process group (the default one)."""

    def __init__(self, group=None):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DistributedGradientSync needs torch.distributed initialised")
        self.group = group
        self.world_size = dist.get_world_size(group)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.sum(t) / self.world_size

    def mean_(self, tensors: Sequence[torch.Tensor]) -> None:
        # the collective needs contiguous buffers: one flat copy per bucket, as DDP does
        for bucket in _buckets(tensors):
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
            flat.div_(self.world_size)
            for t, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                t.copy_(reduced)

    def broadcast_buffers(self, module: nn.Module) -> None:
        src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        with torch.no_grad():
            for bucket in _buckets(list(module.buffers())):
                flat = _flatten_dense_tensors(bucket)
                dist.broadcast(flat, src=src, group=self.group)
                for t, value in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                    t.copy_(value)


def _buckets(tensors: Sequence[torch.Tensor]) -> Iterable[list[torch.Tensor]]:
    """Tensors grouped by (dtype, device), in buckets of at most BUCKET_NUMEL elements."""
    by_kind: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        by_kind.setdefault((t.dtype, t.device), []).append(t)
    for group in by_kind.values():
        bucket, size = [], 0
        for t in group:
            if bucket and size + t.numel() > BUCKET_NUMEL:
                yield bucket
                bucket, size = [], 0
            bucket.append(t)
            size += t.numel()
        if bucket:
            yield bucket


def default_sync() -> GradientSync:
    """The sync for the current process: all-reduce when torch.distributed runs on > 1 rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistributedGradientSync()
    return GradientSync()


@dataclass
class ParamLayout:
    """Trainable parameters in named groups, in one list (group after group);
    ``index[name]`` is the group's range in ``params``."""

    groups: dict[str, list[nn.Parameter]]

    def __post_init__(self):
        self.params: list[nn.Parameter] = []
        self.index: dict[str, slice] = {}
        for name, ps in self.groups.items():
            ps = [p for p in ps if p.requires_grad]
            self.groups[name] = ps
            self.index[name] = slice(len(self.params), len(self.params) + len(ps))
            self.params.extend(ps)
        seen = set()
        for p in self.params:
            if id(p) in seen:
                raise ValueError("a parameter appears in two parameter groups")
            seen.add(id(p))

    @classmethod
    def of(cls, groups: Mapping[str, Sequence[nn.Parameter]]) -> ParamLayout:
        return cls({k: list(v) for k, v in groups.items()})


# -- per-parameter lists ------------------------------------------------------------------
def grads_of(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    grad_outputs: Sequence[torch.Tensor | None] | None = None,
    retain_graph: bool = True,
    materialize: bool = True,
) -> list[torch.Tensor | None]:
    """d outputs / d params as a list: zeros where unused, or None with
    ``materialize=False`` (as ``loss.backward()`` leaves such a ``.grad`` alone).

    Each tensor is contiguous and owned by the caller, so it is safe to modify in place:
    no two share memory, though autograd may hand one tensor to two parameters (both
    operands of an add get the incoming gradient itself)."""
    if not params:
        return []
    outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    if not any(o.requires_grad for o in outs):
        return [torch.zeros_like(p) if materialize else None for p in params]
    grads = torch.autograd.grad(
        outs,
        list(params),
        grad_outputs=grad_outputs,
        retain_graph=retain_graph,
        allow_unused=True,
        materialize_grads=materialize,
    )
    return _owned(grads)


def _owned(grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """``grads`` made contiguous (autograd may hand back expanded, stride-0 views, which
    in-place ops reject), with a copy of any tensor handed out before."""
    out: list[torch.Tensor | None] = []
    seen: set[int] = set()
    for g in grads:
        if g is not None and g.numel():
            g = g if g.is_contiguous() else g.contiguous()
            if g.data_ptr() in seen:
                g = g.clone()
            seen.add(g.data_ptr())
        out.append(g)
    return out


def _empty(like: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros(0) if like is None else like.new_zeros(0, dtype=widen(like).dtype)


def dots(
    a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], like: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-tensor inner products <a_i, b_i> as one 1-D tensor (float32 at least); empty
    lists give an empty tensor on ``like``'s device."""
    if not a:
        return _empty(like)
    return torch.stack(
        [torch.dot(widen(x).reshape(-1), widen(y).reshape(-1)) for x, y in zip(a, b)]
    )


def sq_norms(ts: Sequence[torch.Tensor], like: torch.Tensor | None = None) -> torch.Tensor:
    """Per-tensor squared norms |t_i|² as one 1-D tensor (float32 at least)."""
    if not ts:
        return _empty(like)
    wide = torch.float32 if ts[0].dtype in LOW_PRECISION else None
    return torch.stack(torch._foreach_norm(list(ts), 2, dtype=wide)).square()


def group_sums(
    values: torch.Tensor, sizes: Sequence[int], like: torch.Tensor
) -> list[torch.Tensor]:
    """Sums of consecutive runs of ``values`` (``sizes`` long each; entries after the
    last run are ignored), as 0-d tensors; zeros for an empty ``values``."""
    if values.numel() == 0:
        return [like.new_zeros((), dtype=widen(like).dtype) for _ in sizes]
    rest = values.numel() - sum(sizes)
    return [part.sum() for part in values.split([*sizes, rest])[: len(sizes)]]


def axpy_(ys: Sequence[torch.Tensor], xs: Sequence[torch.Tensor], coefs: torch.Tensor) -> None:
    """ys[i] += coefs[i] * xs[i] in place, with coefs a 1-D device tensor (no host sync)."""
    if ys:
        c = coefs.to(ys[0].dtype)
        torch._foreach_addcmul_(list(ys), list(xs), list(c.unbind()))


def add_to_grads_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    """Add to ``.grad`` as ``loss.backward()`` does; ``grads`` (owned) become ``.grad``
    where there was none; a None gradient leaves its parameter alone."""
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    existing = [(p.grad, g) for p, g in pairs if p.grad is not None]
    for p, g in pairs:
        if p.grad is None:
            p.grad = g
    if existing:
        torch._foreach_add_([e for e, _ in existing], [g for _, g in existing])


def cosine(dot: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor) -> torch.Tensor:
    """dot / (|a| |b|); 0 when either norm is zero (no division by zero, no host sync)."""
    ok = (norm_a > EPS) & (norm_b > EPS)
    return torch.where(ok, dot / torch.where(ok, norm_a * norm_b, 1.0), 0.0)


@dataclass
class Projection:
    """Outcome of :func:`project_conflicting_` (0-d tensors)."""

    conflict: torch.Tensor  # bool: <g, r> < 0 and r non-zero, so g was projected
    dot: torch.Tensor  # <g, r> before
    ref_sq_norm: torch.Tensor  # |r|²
    dot_after: torch.Tensor  # <g⊥, r>
    correction: torch.Tensor  # coefficient of the second pass, g⊥ = g' − correction · r


def project_conflicting_(
    g: Sequence[torch.Tensor],
    ref: Sequence[torch.Tensor],
    scale: torch.Tensor,
    apply_correction: bool = True,
) -> Projection:
    """PCGrad step in place over parameter lists: with r = scale ⊙ ref (``scale[i]``
    multiplies ``ref[i]``), g ← g − <g, r>/|r|² r when <g, r> < 0 and r ≠ 0.

    A second pass removes what float32 rounding leaves of <g, r> when g is nearly
    anti-parallel to r: that residual, of order eps·|g||r|, is large next to |g⊥|
    (Gram-Schmidt: "twice is enough"). It runs every step with a coefficient that is
    zero when there is nothing to correct, so nothing waits on the device; with
    ``apply_correction=False`` the caller folds ``correction`` into its own next update
    of g (one pass over the gradients fewer).
    """
    d = (scale * dots(g, ref, scale)).sum()
    r2 = (scale.square() * sq_norms(ref, scale)).sum()
    conflict = (d < 0) & (r2 > EPS)
    safe_r2 = torch.where(conflict, r2, 1.0)
    axpy_(g, ref, -torch.where(conflict, d / safe_r2, 0.0) * scale)
    d2 = (scale * dots(g, ref, scale)).sum()
    alpha2 = torch.where(conflict & (d2 < 0), d2 / safe_r2, 0.0)
    if apply_correction:
        axpy_(g, ref, -alpha2 * scale)
    return Projection(conflict, d, r2, d2 - alpha2 * r2, alpha2)


def full_precision(device: torch.device):
    """A context with autocast off on ``device``: ``backward()`` may be called inside an
    autocast region, and the strategies' own arithmetic must not run in low precision."""
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4
        enabled = (
            torch.is_autocast_enabled()
            if device.type == "cuda"
            else device.type == "cpu" and torch.is_autocast_cpu_enabled()
        )
    return torch.autocast(device.type, enabled=False) if enabled else contextlib.nullcontext()


def forward_autocast(reference: torch.Tensor):
    """An autocast region like the one the model's forward ran in, judged from one of its
    outputs: re-running part of the model (a head, a tower) then gives tensors of the
    same precision whether ``backward()`` is called inside the region or after it."""
    if reference.dtype in LOW_PRECISION:
        return torch.autocast(reference.device.type, dtype=reference.dtype)
    return contextlib.nullcontext()
