"""Per-parameter gradient plumbing for the one-backward baselines (OGM-GE, AGM).

These strategies take one gradient of one loss and rescale parts of it, so they work on
the list of per-parameter gradients ``torch.autograd.grad`` returns, never on a flat
copy, and every coefficient stays a device tensor: no host synchronisation in the step
(contract 1). Under a ``torch.amp.GradScaler`` the loss is multiplied by the scaler's
scale, read as a device tensor; anything absolute (a clipping threshold, an epsilon) is
multiplied by it too, so the result is exactly ``scale`` times the unscaled one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

Grads = list[torch.Tensor | None]


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or float64 when it already is: losses and scores are computed
    there whatever precision the forward ran in (as autocast does for its losses)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def forward_autocast(reference: torch.Tensor):
    """An autocast region like the one the model's forward ran in, judged from one of its
    outputs: re-running part of the model (a head, a tower) then gives tensors of the
    same precision whether ``backward()`` is called inside the region or after it."""
    if reference.dtype in (torch.float16, torch.bfloat16):
        return torch.autocast(reference.device.type, dtype=reference.dtype)
    return contextlib.nullcontext()


def loss_scale(strategy, like: torch.Tensor) -> torch.Tensor | None:
    """The loss scale of the GradScaler the strategy steps with, as a 0-d tensor on
    ``like``'s device (no host sync), or None without one. The scaler is read from the
    strategy's ``scaler`` attribute, which the base class sets during ``backward()``."""
    scaler = getattr(strategy, "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return None
    return scaler.scale(torch.ones((), device=like.device))


def trainable_params(model) -> list[nn.Parameter]:
    return [p for ps in model.parameter_groups().values() for p in ps if p.requires_grad]


def param_grads(loss: torch.Tensor, params: Sequence[nn.Parameter]) -> Grads:
    """d loss / d p for each parameter (None where the loss does not reach it).

    Autograd may hand one tensor to two parameters (e.g. the two operands of an add);
    such a tensor is cloned for the second, so callers may update the list in place."""
    if not params or not loss.requires_grad:
        return [None] * len(params)
    grads = list(torch.autograd.grad(loss, list(params), allow_unused=True))
    seen: set[int] = set()
    for i, g in enumerate(grads):
        if g is None or g.numel() == 0:
            continue
        if g.data_ptr() in seen:
            grads[i] = g.clone()
        else:
            seen.add(g.data_ptr())
    return grads


def sync_mean(sync, params: Sequence[nn.Parameter], grads: Grads) -> Grads:
    """All-reduce (mean) the gradients over data-parallel ranks through one flat buffer;
    the identity in a single process (no copy)."""
    if getattr(sync, "world_size", 1) <= 1:
        return grads
    filled = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    flat = sync.mean(torch.cat([g.reshape(-1) for g in filled]))
    parts = flat.split([p.numel() for p in params])
    return [part.view_as(p).to(p.dtype) for part, p in zip(parts, params)]


def add_to_grads(params: Sequence[nn.Parameter], grads: Grads) -> None:
    """Add to ``.grad`` as ``loss.backward()`` would (set where it is None); ``grads``
    must be owned by the caller (from :func:`param_grads` or :func:`sync_mean`)."""
    existing, new = [], []
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g
        else:
            existing.append(p.grad)
            new.append(g)
    if existing:
        torch._foreach_add_(existing, new)


def scaled(loss: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    return loss if scale is None else loss * scale


def loss_grads(strategy, model, loss: torch.Tensor):
    """(params, grads, scale): the trainable parameters, the gradient of ``loss`` (times
    the GradScaler's scale, if any) for each, all-reduced over ranks, and the scale."""
    params = trainable_params(model)
    scale = loss_scale(strategy, loss)
    grads = sync_mean(strategy.sync, params, param_grads(scaled(loss, scale), params))
    return params, grads, scale


def in_window(epoch: int, start: int, end: int | float) -> bool:
    """``start <= epoch <= end``: both ends inclusive, as the official OGM-GE and AGM code."""
    return start <= epoch <= end
