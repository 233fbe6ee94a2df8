"""Fusion F of SPEC sections 1 and 6 over M embeddings: concat (default), sum, attention.

A fusion takes the M embeddings h_1..h_M (each [B, dim], in the model's modality order)
as positional arguments. A fusion whose output is a plain layout of its inputs (concat,
sum) says which of its output features each input lands in (``columns()``), so that a
linear classifier on it is additive over modalities (OGM-GE's official unimodal logits).
"""

from __future__ import annotations

import torch
from torch import nn

from balgrad.registry import Registry

#: the fusions by name; the model gives each its embedding size ``dim``
FUSION_REGISTRY = Registry("fusion", metadata={"description": ""}, skip=("dim", "num_modalities"))
#: ``@register_fusion("name", description=...)`` on an ``nn.Module`` class taking ``dim``
#: and ``num_modalities`` and setting ``out_dim``
register_fusion = FUSION_REGISTRY.register


class ConcatFusion(nn.Module):
    """[h_1; ..; h_M]: no parameters."""

    def __init__(self, dim: int, num_modalities: int = 2):
        super().__init__()
        self.dim, self.num_modalities = dim, num_modalities
        self.out_dim = num_modalities * dim

    def forward(self, *hs: torch.Tensor) -> torch.Tensor:
        return torch.cat(_checked(hs, self.num_modalities), dim=-1)

    def columns(self) -> list[slice]:
        return [slice(i * self.dim, (i + 1) * self.dim) for i in range(self.num_modalities)]


class SumFusion(nn.Module):
    """h_1 + .. + h_M: no parameters."""

    def __init__(self, dim: int, num_modalities: int = 2):
        super().__init__()
        self.dim, self.num_modalities = dim, num_modalities
        self.out_dim = dim

    def forward(self, *hs: torch.Tensor) -> torch.Tensor:
        first, *rest = _checked(hs, self.num_modalities)
        return sum(rest, first)  # left to right, as h_v + h_l

    def columns(self) -> list[slice]:
        return [slice(0, self.dim)] * self.num_modalities


class AttentionFusion(nn.Module):
    """The M embeddings as M tokens through one self-attention layer, mean-pooled.

    A learned modality-type embedding is added to each token so the layer can tell them
    apart (a zeroed embedding then becomes its type vector, as a blank token would).
    """

    def __init__(self, dim: int, num_modalities: int = 2, num_heads: int = 4):
        super().__init__()
        if dim % num_heads:
            num_heads = 1
        self.num_modalities = num_modalities
        self.type_embedding = nn.Parameter(torch.zeros(num_modalities, dim))
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, *hs: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack(_checked(hs, self.num_modalities), dim=1) + self.type_embedding
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.norm(tokens + attended).mean(dim=1)


def _checked(hs: tuple[torch.Tensor, ...], expected: int) -> tuple[torch.Tensor, ...]:
    if len(hs) != expected:
        raise ValueError(f"fusion built for {expected} modalities got {len(hs)} embeddings")
    return hs


register_fusion("concat", ConcatFusion, description="[h_1; ..; h_M]")
register_fusion("sum", SumFusion, description="h_1 + .. + h_M")
register_fusion(
    "attention", AttentionFusion, description="one self-attention layer over the M embeddings"
)
FUSIONS = tuple(FUSION_REGISTRY.names())


def create_fusion(name: str, dim: int, num_modalities: int = 2, **options) -> nn.Module:
    """A fusion of ``num_modalities`` embeddings of size ``dim``, by name; an unknown name
    or option raises ConfigError naming it."""
    return FUSION_REGISTRY.create(name, dim, num_modalities, **options)
