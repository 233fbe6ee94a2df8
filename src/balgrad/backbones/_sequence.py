"""An encoder for feature sequences ``[B, L, F]`` (CMU-MOSEI/MOSI style), masked by length.

The released MOSEI/MOSI features (the MulT pickle that BalanceBenchmark, CGGM and
MultiBench read: vision ``[N, 50, 35]``, audio ``[N, 50, 74]``, text ``[N, 50, 300]``;
the MMSA pickles with per-modality lengths) are fixed-length arrays, some padded, and the
audio (COVAREP) features hold -inf entries: :func:`clean_features` makes them finite.

An input is a tensor ``[B, L, F]`` (every step valid) or a mapping with ``"features"``
``[B, L, F]`` and either ``"lengths"`` ``[B]`` or ``"mask"`` ``[B, L]`` (True = a real step;
real steps first, padding at the end). Padded steps are zeroed before anything reads
them and are never attended to or run through the GRU, so their values (NaN included)
never change the output. An empty sequence (length 0) encodes to the zero vector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from balgrad.backbones._frozen import KeepFrozen
from balgrad.errors import ConfigError
from balgrad.registry import validated


def clean_features(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """A copy of ``x`` with every NaN, +inf and -inf replaced by 0 (numpy or torch).

    MOSEI's COVAREP audio features are -inf where a descriptor is undefined (log of a zero
    energy, unvoiced frames); MulT, BalanceBenchmark and CGGM replace those by 0 before
    training, and 0 is also what the padding holds, so a cleaned entry reads as "no value".

    Args:
        x: Features.

    Returns:
        The cleaned copy, of ``x``'s kind.
    """
    if isinstance(x, torch.Tensor):
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return np.nan_to_num(np.asarray(x), copy=True, nan=0.0, posinf=0.0, neginf=0.0)


def _sinusoids(length: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """The fixed sine/cosine positions of "Attention is all you need", ``[length, dim]``."""
    pos = torch.arange(length, dtype=like.dtype, device=like.device)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, dtype=like.dtype, device=like.device) * (-math.log(10000.0) / dim)
    )
    out = torch.zeros(length, dim, dtype=like.dtype, device=like.device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


def split_input(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [B, L, F], lengths [B] int64)`` from any accepted input form.

    Args:
        inputs: A tensor ``[B, L, F]`` or a mapping with ``"features"`` and
            ``"lengths"`` or ``"mask"``.

    Returns:
        The features and lengths.

    Raises:
        ConfigError: Another form, or a mask or lengths of the wrong shape.
    """
    if isinstance(inputs, torch.Tensor):
        feats, lengths, mask = inputs, None, None
    elif isinstance(inputs, Mapping) and "features" in inputs:
        feats, lengths, mask = inputs["features"], inputs.get("lengths"), inputs.get("mask")
    else:
        raise ConfigError(
            "SequenceEncoder: expected a tensor [B, L, F] or a mapping with 'features' and "
            f"optionally 'lengths' or 'mask', got {type(inputs).__name__}"
        )
    if feats.dim() != 3:
        raise ConfigError(
            f"SequenceEncoder: 'features' must be [B, L, F], got shape {tuple(feats.shape)}"
        )
    b, n = feats.shape[:2]
    if lengths is None and mask is not None:
        mask = torch.as_tensor(mask, device=feats.device).bool()
        if mask.shape != (b, n):
            raise ConfigError(
                f"SequenceEncoder: 'mask' must be [{b}, {n}], got {tuple(mask.shape)}"
            )
        lengths = mask.sum(1)
        prefix = torch.arange(n, device=feats.device)[None] < lengths[:, None]
        if not torch.equal(mask, prefix):
            raise ConfigError(
                "SequenceEncoder: 'mask' must mark the real steps first and the padding at the "
                "end of each sequence"
            )
    if lengths is None:
        return feats, torch.full((b,), n, dtype=torch.long, device=feats.device)
    lengths = torch.as_tensor(lengths, device=feats.device).long().reshape(-1)
    if lengths.shape != (b,) or (lengths < 0).any() or (lengths > n).any():
        raise ConfigError(
            f"SequenceEncoder: 'lengths' must be {b} values in [0, {n}], got {lengths.tolist()}"
        )
    return feats, lengths


class SequenceEncoder(KeepFrozen, nn.Module):
    """A GRU or a small Transformer over a feature sequence, pooled to ``[B, out_dim]``.

    ``out_dim`` is ``hidden`` (``2 * hidden`` for a bidirectional GRU).

    Args:
        in_features: F, the features per step (required).
        kind: ``"gru"`` (the last hidden state of each real step sequence, both directions
            concatenated when ``bidirectional``) or ``"transformer"`` (a linear projection,
            fixed sinusoidal positions, pre-norm encoder layers with padding masked, then
            the mean over real steps).
        hidden: The hidden size (128).
        layers: The number of layers (1).
        heads: Attention heads (4, transformer).
        bidirectional: A bidirectional GRU (False).
        dropout: The dropout rate (0.0).
        blank: ``"empty"`` or ``"zeros"``: see :meth:`blank_input`.
    """

    trainable = True

    @validated
    def __init__(
        self,
        in_features: Annotated[int, Field(ge=1)],
        kind: Literal["gru", "transformer"] = "gru",
        hidden: Annotated[int, Field(ge=1)] = 128,
        layers: Annotated[int, Field(ge=1)] = 1,
        heads: int = 4,
        bidirectional: bool = False,
        dropout: float = 0.0,
        blank: Literal["empty", "zeros"] = "empty",
    ) -> None:
        super().__init__()
        if kind == "transformer" and hidden % (2 * heads) != 0:
            raise ConfigError(
                f"SequenceEncoder option 'hidden' ({hidden}) must be a multiple of 2 * 'heads' "
                f"({heads}) for the transformer (heads split it; sin/cos positions pair it)"
            )
        self.in_features = int(in_features)
        self.kind = kind
        self.blank = blank
        if kind == "gru":
            self.gru = nn.GRU(
                in_features,
                hidden,
                num_layers=layers,
                batch_first=True,
                bidirectional=bidirectional,
                dropout=dropout if layers > 1 else 0.0,
            )
            self.out_dim = int(hidden) * (2 if bidirectional else 1)
        else:
            self.proj = nn.Linear(in_features, hidden)
            layer = nn.TransformerEncoderLayer(
                hidden, heads, 2 * hidden, dropout, batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False
            )
            self.out_dim = int(hidden)
        self.identity = (
            f"sequence(kind={kind},in_features={in_features},hidden={hidden},layers={layers},"
            f"heads={heads if kind == 'transformer' else '-'},"
            f"bidirectional={bidirectional if kind == 'gru' else '-'})"
        )

    def blank_input(self, like: Any) -> dict[str, torch.Tensor] | torch.Tensor:
        """One missing sample, shaped like ``like``'s features.

        ``blank="empty"`` (default): a sequence of length 0, i.e. nothing observed; it
        encodes to the zero vector whatever the weights. ``blank="zeros"``: every step
        present with all-zero features, the value a cleaned or padded MOSEI entry holds,
        and what an encoder without a length sees for a missing modality.

        Args:
            like: A batch of inputs, in any accepted form.

        Returns:
            One blank sample.
        """
        feats, _ = split_input(like)
        zeros = torch.zeros_like(feats[:1])
        if self.blank == "zeros":
            return zeros if isinstance(like, torch.Tensor) else {"features": zeros}
        return {"features": zeros, "lengths": torch.zeros(1, dtype=torch.long, device=zeros.device)}

    def forward(self, inputs: Any) -> torch.Tensor:
        """Encode a batch of sequences.

        Args:
            inputs: Features ``[B, L, F]``, or a mapping with ``"features"`` and ``"lengths"``
                (or a ``"mask"``).

        Returns:
            ``[B, out_dim]``.

        Raises:
            ConfigError: The features' last dimension is not ``in_features``.
        """
        feats, lengths = split_input(inputs)
        if feats.shape[-1] != self.in_features:
            raise ConfigError(
                f"SequenceEncoder: option 'in_features' is {self.in_features} but the features "
                f"have {feats.shape[-1]}"
            )
        if not feats.is_floating_point():
            feats = feats.float()
        steps = torch.arange(feats.shape[1], device=feats.device)
        valid = steps[None] < lengths[:, None]  # [B, L]
        # zero the padding first: NaN/inf there would otherwise leak through 0 * x
        feats = feats.masked_fill(~valid[..., None], 0.0)
        empty = lengths == 0
        if self.kind == "gru":
            packed = pack_padded_sequence(
                feats, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
            )
            _, h = self.gru(packed)  # [layers * directions, B, hidden]
            directions = 2 if self.gru.bidirectional else 1
            pooled = torch.cat(list(h[-directions:]), dim=-1)
        else:
            x = self.proj(feats) + _sinusoids(feats.shape[1], self.out_dim, feats)
            # an empty row attends to its first (zeroed) step so softmax has a key; its
            # output is dropped below
            attend = valid | (empty[:, None] & (steps[None] == 0))
            y = self.transformer(x, src_key_padding_mask=~attend)
            w = valid[..., None].to(y.dtype)
            pooled = (y * w).sum(1) / w.sum(1).clamp_min(1.0)
        return pooled.masked_fill(empty[:, None], 0.0)
