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
    """[h_1; ..; h_M]: no parameters.

    Args:
        dim: d, the size of every embedding.
        num_modalities: M (the output has ``M * dim`` features).
    """

    def __init__(self, dim: int, num_modalities: int = 2):
        super().__init__()
        self.dim, self.num_modalities = dim, num_modalities
        self.out_dim = num_modalities * dim

    def forward(self, *hs: torch.Tensor) -> torch.Tensor:
        """Concatenate M embeddings ``[B, d]`` into ``[B, M d]``."""
        return torch.cat(_checked(hs, self.num_modalities), dim=-1)

    def columns(self) -> list[slice]:
        """Each modality's columns of the fused vector (for a :class:`~balgrad.models._multimodal.Readout`).

        Returns:
            One slice per modality.
        """
        return [slice(i * self.dim, (i + 1) * self.dim) for i in range(self.num_modalities)]


class SumFusion(nn.Module):
    """h_1 + .. + h_M: no parameters.

    Args:
        dim: d, the size of every embedding (and of the output).
        num_modalities: M.
    """

    def __init__(self, dim: int, num_modalities: int = 2):
        super().__init__()
        self.dim, self.num_modalities = dim, num_modalities
        self.out_dim = dim

    def forward(self, *hs: torch.Tensor) -> torch.Tensor:
        """Sum M embeddings ``[B, d]``, left to right."""
        first, *rest = _checked(hs, self.num_modalities)
        return sum(rest, first)  # left to right, as h_v + h_l

    def columns(self) -> list[slice]:
        """Each modality's columns of the fused vector: all of them, for each.

        Returns:
            One slice per modality.
        """
        return [slice(0, self.dim)] * self.num_modalities


class AttentionFusion(nn.Module):
    """The M embeddings as M tokens through one self-attention layer, mean-pooled.

    A learned modality-type embedding is added to each token so the layer can tell them
    apart (a zeroed embedding then becomes its type vector, as a blank token would).

    Args:
        dim: d, the size of every embedding (and of the output).
        num_modalities: M.
        num_heads: Attention heads (1 when ``dim`` is not a multiple of it).
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
        """Fuse M embeddings ``[B, d]`` into one ``[B, d]``."""
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
    or option raises ConfigError naming it.

    Args:
        name: ``"concat"``, ``"sum"``, ``"attention"`` or a registered fusion.
        dim: d.
        num_modalities: M.
        **options: The fusion's own options (``num_heads`` for attention).

    Returns:
        The fusion module (with an ``out_dim`` attribute).

    Raises:
        ConfigError: An unknown name or option.
    """
    return FUSION_REGISTRY.create(name, dim, num_modalities, **options)
