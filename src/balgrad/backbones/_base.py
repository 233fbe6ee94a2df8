"""The encoder contract (the backbones B_v and B_l of SPEC section 1).

An image encoder maps one raw image (``[C, H, W]`` float in ``[0, 1]``) to a fixed-size
model input with :meth:`ImageEncoder.preprocess`, and a batch of those to features
``[B, out_dim]`` with ``forward``. A text encoder tokenises a list of strings with
:meth:`TextEncoder.tokenize` and maps the token batch to ``[B, out_dim]``.

``identity`` is a string that changes whenever the encoder's output would change
(name, weights, preprocessing); the feature cache keys on it. ``identity_covers_weights``
says that it pins the weights themselves (a package version, a hub commit); otherwise
(the default: a randomly initialised tower, a local checkpoint folder, a user's own
encoder) the cache also keys on a sha256 of the frozen encoder's ``state_dict``.
``trainable`` says whether the encoder's parameters belong to theta_v / theta_l
(fine-tuning) or are frozen.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageEncoder(nn.Module):
    """An image tower: :meth:`preprocess` maps one raw image to a model input of fixed
    shape, the forward maps a batch of those to features ``[B, out_dim]``."""

    out_dim: int
    identity: str
    identity_covers_weights: bool = False
    trainable: bool = True

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """One raw image ``[C, H, W]`` in [0, 1] -> one model input of fixed shape.

        Args:
            image: ``[C, H, W]`` in [0, 1].

        Returns:
            The model input.
        """
        raise NotImplementedError

    def blank_image(self) -> torch.Tensor:
        """A missing image on the raw scale (all zeros, 3 channels), before ``preprocess``.

        Returns:
            A ``[3, 32, 32]`` zero image.
        """
        return torch.zeros(3, 32, 32)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Embed a batch of preprocessed images.

        Args:
            pixels: ``[B, C, H, W]``, as :meth:`preprocess` makes them.

        Returns:
            ``[B, out_dim]``.
        """
        raise NotImplementedError


class TextEncoder(nn.Module):
    """A text tower: :meth:`tokenize` maps strings to a token batch, the forward maps
    that batch to features ``[B, out_dim]``."""

    out_dim: int
    identity: str
    identity_covers_weights: bool = False
    trainable: bool = True
    vocab_size: int
    # token ids that token noise must never replace or draw (padding, CLS, SEP, ...)
    special_ids: tuple[int, ...] = ()
    pad_id: int = 0

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Strings -> ``{"input_ids": [B, T] int64, "attention_mask": [B, T] int64}``.

        Args:
            texts: The strings.

        Returns:
            The token ids and attention mask.
        """
        raise NotImplementedError

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        """Embed a batch of tokenised texts.

        Args:
            tokens: What :meth:`tokenize` returns.

        Returns:
            ``[B, out_dim]``.
        """
        raise NotImplementedError


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients and put the module in eval mode (dropout off) for good.

    Args:
        module: The module.

    Returns:
        ``module``, frozen (``trainable = False``).
    """
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    module.trainable = False
    return module
