"""The strategies of this package that the precision and check tests run through."""

from __future__ import annotations

import torch
from torch import nn

from balgrad.strategies import create_strategy

#: (id, registry name, options): every engine-side strategy and preset, both fast scopes
OWNED = [
    ("joint", "joint", {}),
    ("mslr", "mslr", {"mode": "keep", "lr_scales": {"image": 2.0}}),
    ("balgrad", "balgrad", {}),
    ("balgrad_per_modality", "balgrad", {"projection_scope": "per_modality"}),
    ("projection_only", "balgrad_projection_only", {}),
    ("reweight_only", "balgrad_reweight_only", {}),
    ("unimodal_only", "balgrad_unimodal_only", {}),
    ("balgrad_fast", "balgrad_fast", {}),
    ("balgrad_fast_per_sample", "balgrad_fast", {"projection_scope": "per_sample"}),
    ("mmpareto", "mmpareto", {}),
    ("mmpareto_paper", "mmpareto", {"semantics": "paper"}),
    ("dgl", "dgl", {}),
]
IDS = [o[0] for o in OWNED]
BALGRAD_FAMILY = ("balgrad", "balgrad_fast")


def make_strategy(name: str, options: dict, head_every: int = 1):
    """The strategy, with the head-cosine diagnostic on every step for the BalGrad family
    (it is the part that used to crash under autocast)."""
    strategy = create_strategy(name, **options)
    if hasattr(strategy, "head_diagnostics_every"):
        strategy.head_diagnostics_every = head_every
    return strategy


def groups(model) -> dict[str, list[nn.Parameter]]:
    return {k: v for k, v in model.parameter_groups().items() if v}


def group_grad(params) -> torch.Tensor:
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]
    )
