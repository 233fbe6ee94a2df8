"""Test-time impairments of SPEC section 4: missing and noisy modalities.

A :class:`Condition` names one evaluation condition (``full``, ``missing_image@r``,
``missing_text@r``, ``noisy_image@σ``, ``noisy_text@p``). Which samples are hit, and
the noise each one gets, depend only on (seed, sample index), so every method and every
run sees the same impaired test set, whatever the batch order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from balgrad.errors import ConfigError

KINDS = ("full", "missing_image", "missing_text", "noisy_image", "noisy_text")
MISSING_MODES = ("input", "embedding")


@dataclass(frozen=True)
class Condition:
    """One evaluation condition.

    ``ratio`` is the fraction of samples impaired (exactly ``round(ratio * n)`` of them);
    ``level`` is σ (pixel-noise std on the [0, 1] scale) or p (token-replacement
    probability) for the noisy kinds.
    """

    kind: str = "full"
    ratio: float = 1.0
    level: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"condition: unknown kind {self.kind!r}; expected one of {KINDS}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"condition {self.kind}: ratio must be in [0, 1], got {self.ratio}")
        if self.kind == "noisy_text" and not 0.0 <= self.level <= 1.0:
            raise ConfigError(f"condition noisy_text: p must be in [0, 1], got {self.level}")
        if self.kind == "noisy_image" and self.level < 0:
            raise ConfigError(f"condition noisy_image: sigma must be >= 0, got {self.level}")

    @property
    def name(self) -> str:
        if self.kind == "full":
            return "full"
        if self.kind.startswith("missing"):
            return f"{self.kind}@{self.ratio:g}"
        suffix = "" if self.ratio == 1.0 else f"/{self.ratio:g}"
        return f"{self.kind}@{self.level:g}{suffix}"

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> Condition:
        """``"missing_image@0.5"``, ``"noisy_text@0.3"``, ``"full"`` (defaults: r = 1,
        σ = 0.5, p = 0.5)."""
        kind, _, arg = text.partition("@")
        kind = kind.strip()
        if kind not in KINDS:
            raise ConfigError(
                f"condition: unknown condition {text!r}; expected one of {KINDS} with an optional @value"
            )
        try:
            value = float(arg) if arg else None
        except ValueError:
            raise ConfigError(f"condition {text!r}: {arg!r} is not a number") from None
        if kind.startswith("missing"):
            return cls(kind, ratio=1.0 if value is None else value, seed=seed)
        if kind.startswith("noisy"):
            return cls(kind, level=0.5 if value is None else value, seed=seed)
        return cls("full", seed=seed)

    @property
    def hits_image(self) -> bool:
        return self.kind in ("missing_image", "noisy_image")

    @property
    def hits_text(self) -> bool:
        return self.kind in ("missing_text", "noisy_text")

    def image_part(self) -> str:
        """The part of this condition that changes images (for feature-cache keys)."""
        return f"{self.name}#seed{self.seed}" if self.hits_image else "full"

    def text_part(self) -> str:
        return f"{self.name}#seed{self.seed}" if self.hits_text else "full"

    def mask(self, n: int) -> np.ndarray:
        """Boolean [n]: which samples this condition impairs (exact count, fixed seed)."""
        if self.kind == "full":
            return np.zeros(n, dtype=bool)
        k = int(math.floor(self.ratio * n + 0.5))
        # salt by kind so missing-image and missing-text hit independent subsets
        rng = np.random.default_rng([self.seed, KINDS.index(self.kind)])
        out = np.zeros(n, dtype=bool)
        out[rng.permutation(n)[:k]] = True
        return out


def sample_generator(seed: int, index: int, salt: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + index * 7919 + salt) % (2**63 - 1))
    return g


def noisy_image(image: torch.Tensor, sigma: float, seed: int, index: int) -> torch.Tensor:
    """Gaussian pixel noise with std ``sigma`` on the [0, 1] scale, clipped to [0, 1]."""
    noise = torch.randn(image.shape, generator=sample_generator(seed, index, 1), dtype=image.dtype)
    return (image + sigma * noise).clamp_(0.0, 1.0)


def blank_image(image: torch.Tensor) -> torch.Tensor:
    """A missing image: all zeros, same shape as the original."""
    return torch.zeros_like(image)


def noisy_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    p: float,
    vocab_size: int,
    special_ids: tuple[int, ...],
    seed: int,
    index: int,
) -> torch.Tensor:
    """Replace each real (non-special, non-pad) token by a random non-special vocabulary
    token with probability ``p``. 1-D ``input_ids`` of one sample."""
    g = sample_generator(seed, index, 2)
    ids = input_ids.clone()
    special = torch.tensor(sorted(set(special_ids)), dtype=ids.dtype)
    real = attention_mask.bool() & ~torch.isin(ids, special)
    hit = (torch.rand(ids.shape, generator=g) < p) & real
    n = int(hit.sum())
    if n:
        allowed = torch.ones(vocab_size, dtype=torch.bool)
        allowed[special[special < vocab_size]] = False
        pool = allowed.nonzero().squeeze(1)
        ids[hit] = pool[torch.randint(len(pool), (n,), generator=g)].to(ids.dtype)
    return ids
