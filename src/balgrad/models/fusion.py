"""Fusion F of SPEC section 1: concat (default), sum, attention."""

from __future__ import annotations

import torch
from torch import nn

from balgrad.errors import ConfigError

FUSIONS = ("concat", "sum", "attention")


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


def create_fusion(name: str, dim: int) -> nn.Module:
    if name == "concat":
        return ConcatFusion(dim)
    if name == "sum":
        return SumFusion(dim)
    if name == "attention":
        return AttentionFusion(dim)
    raise ConfigError(f"fusion: unknown fusion {name!r}; expected one of {FUSIONS}")
