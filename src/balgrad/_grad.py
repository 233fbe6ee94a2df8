"""Gradient arithmetic shared by every strategy: flatten, dot, norm, project, sync.

Strategies compute several *separate* gradients (task, unimodal, KL) as flat vectors
over the trainable parameters, combine them, and write the result to ``.grad``. Under
data-parallel training each separate gradient and each batch statistic is all-reduced
through a :class:`GradientSync` *before* any coefficient, norm or projection is
computed, so every rank applies the same update (SPEC section 3, last paragraph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

EPS = 1e-12


class GradientSync:
    """Single-process sync: every reduction is the identity."""

    world_size = 1

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t


class DistributedGradientSync(GradientSync):
    """All-reduce over the default ``torch.distributed`` process group."""

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


def default_sync() -> GradientSync:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistributedGradientSync()
    return GradientSync()


@dataclass
class ParamLayout:
    """Trainable parameters in named groups, laid out end to end in one flat vector."""

    groups: dict[str, list[nn.Parameter]]

    def __post_init__(self):
        self.params: list[nn.Parameter] = []
        self.slices: dict[str, slice] = {}
        start = 0
        for name, ps in self.groups.items():
            ps = [p for p in ps if p.requires_grad]
            self.groups[name] = ps
            self.params.extend(ps)
            n = sum(p.numel() for p in ps)
            self.slices[name] = slice(start, start + n)
            start += n
        self.size = start
        seen = set()
        for p in self.params:
            if id(p) in seen:
                raise ValueError("a parameter appears in two parameter groups")
            seen.add(id(p))

    @classmethod
    def of(cls, groups: Mapping[str, Sequence[nn.Parameter]]) -> ParamLayout:
        return cls({k: list(v) for k, v in groups.items()})

    def zeros(self) -> torch.Tensor:
        p = self.params[0] if self.params else None
        return torch.zeros(
            self.size,
            device=p.device if p is not None else None,
            dtype=p.dtype if p is not None else None,
        )

    def grad(
        self, loss: torch.Tensor, groups: Sequence[str] | None = None, retain_graph: bool = True
    ) -> torch.Tensor:
        """Flat gradient of ``loss`` w.r.t. the named groups (zeros elsewhere)."""
        names = list(self.groups) if groups is None else list(groups)
        params = [p for n in names for p in self.groups[n]]
        out = self.zeros()
        if not params or not loss.requires_grad:
            return out
        grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
        it = iter(grads)
        for n in names:
            s = self.slices[n].start
            for p in self.groups[n]:
                g = next(it)
                if g is not None:
                    out[s : s + p.numel()] = g.reshape(-1)
                s += p.numel()
        return out

    def part(self, vec: torch.Tensor, *groups: str) -> torch.Tensor:
        """The entries of ``vec`` that belong to ``groups`` (a copy), others zeroed."""
        out = torch.zeros_like(vec)
        for g in groups:
            out[self.slices[g]] = vec[self.slices[g]]
        return out

    def read_grads(self) -> torch.Tensor:
        """The current ``.grad`` of every parameter as one flat vector (None -> 0)."""
        out = self.zeros()
        s = 0
        for p in self.params:
            if p.grad is not None:
                out[s : s + p.numel()] = p.grad.reshape(-1)
            s += p.numel()
        return out

    def write_grads(self, vec: torch.Tensor) -> None:
        """Add a flat vector to ``.grad``, as ``loss.backward()`` would (zero_grad first)."""
        s = 0
        for p in self.params:
            g = vec[s : s + p.numel()].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.add_(g)
            s += p.numel()


def norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity; 0.0 when either vector is zero (no division by zero)."""
    na, nb = norm(a), norm(b)
    if na <= EPS or nb <= EPS:
        return 0.0
    return float(torch.dot(a, b) / (na * nb))


def project_conflicting(g: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """PCGrad step: remove from ``g`` its component along ``ref`` when <g, ref> < 0.

    Returns ``(g_projected, conflicted)``. A zero ``ref`` never conflicts.
    """
    d = torch.dot(g, ref)
    nr2 = torch.dot(ref, ref)
    if d < 0 and nr2 > EPS:
        out = g - (d / nr2) * ref
        # when g is nearly anti-parallel to ref, float32 rounding leaves a residual
        # <out, ref> of order eps·|g||ref|, large next to |out|: one more pass removes
        # it (Gram-Schmidt "twice is enough")
        d2 = torch.dot(out, ref)
        if d2 < 0:
            out = out - (d2 / nr2) * ref
        return out, True
    return g, False


def scale_to(v: torch.Tensor, target_norm: torch.Tensor | float) -> torch.Tensor:
    """Rescale ``v`` to ``target_norm``; a zero vector stays zero."""
    n = norm(v)
    if n <= EPS:
        return torch.zeros_like(v)
    return v * (target_norm / n)


def assert_finite_grad(name: str, vec: torch.Tensor) -> None:
    from balgrad.errors import NonFiniteLossError

    if not torch.isfinite(vec).all():
        raise NonFiniteLossError(f"gradient {name} has non-finite entries")
