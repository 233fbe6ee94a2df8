"""Fusion F of SPEC section 1: concat (default), sum, attention."""

from __future__ import annotations

import torch
from torch import nn

from balgrad.registry import Registry

#: the fusions by name; the model gives each its embedding size ``dim``
FUSION_REGISTRY = Registry("fusion", metadata={"description": ""}, skip=("dim",))
#: ``@register_fusion("name", description=...)`` on an ``nn.Module`` class taking ``dim``
#: and setting ``out_dim``
register_fusion = FUSION_REGISTRY.register


class ConcatFusion(nn.Module):
    """[h_v; h_l]: no parameters."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = 2 * dim

    def forward(self, h_v: torch.Tensor, h_l: torch.Tensor) -> torch.Tensor:
        return torch.cat([h_v, h_l], dim=-1)


class SumFusion(nn.Module):
    """h_v + h_l: no parameters."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, h_v: torch.Tensor, h_l: torch.Tensor) -> torch.Tensor:
        return h_v + h_l


class AttentionFusion(nn.Module):
    """The two embeddings as two tokens through one self-attention layer, mean-pooled.

    A learned modality-type embedding is added to each token so the layer can tell them
    apart (a zeroed embedding then becomes its type vector, as a blank token would).
    """

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__()
        if dim % num_heads:
            num_heads = 1
        self.type_embedding = nn.Parameter(torch.zeros(2, dim))
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, h_v: torch.Tensor, h_l: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([h_v, h_l], dim=1) + self.type_embedding
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.norm(tokens + attended).mean(dim=1)


register_fusion("concat", ConcatFusion, description="[h_v; h_l]")
register_fusion("sum", SumFusion, description="h_v + h_l")
register_fusion(
    "attention", AttentionFusion, description="one self-attention layer over the two embeddings"
)
FUSIONS = tuple(FUSION_REGISTRY.names())


def create_fusion(name: str, dim: int, **options) -> nn.Module:
    """A fusion by name; an unknown name or option raises ConfigError naming it."""
    return FUSION_REGISTRY.create(name, dim, **options)
