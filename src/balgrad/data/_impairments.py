"""Test-time impairments of SPEC sections 4 and 6: missing and noisy modalities.

A :class:`Condition` names one evaluation condition: ``full``, ``missing_<m>@r``,
``noisy_<m>@level`` or ``only_<m>`` (every other modality missing), for a modality name m
(``missing_image@0.5``, ``noisy_audio@10``). Which samples are hit, and the noise each one
gets, depend only on (seed, sample index, modality), so every method and every run sees
the same impaired test set, whatever the batch order. What "missing" and "noisy" mean for
each kind of modality is :mod:`balgrad.data._kinds`'s.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from balgrad.data._kinds import noisy_image, sample_generator
from balgrad.errors import ConfigError
from balgrad.names import parse_condition
from balgrad.registry import validated

__all__ = ["Condition", "MISSING_MODES", "noisy_image", "noisy_tokens", "sample_generator"]

#: the conditions of the image-text protocol (SPEC section 4), whose index salts the
#: choice of hit samples as it did before modalities were named
KINDS = ("full", "missing_image", "missing_text", "noisy_image", "noisy_text")
MISSING_MODES = ("input", "embedding")


def _mask_salt(kind: str) -> int:
    if kind in KINDS:
        return KINDS.index(kind)
    return 16 + int.from_bytes(hashlib.sha256(kind.encode()).digest()[:6], "big")


def _split_kind(kind: str) -> tuple[str, str | None]:
    if kind == "full":
        return "full", None
    parsed = parse_condition(kind)
    if parsed is None:
        raise ConfigError(
            f"condition: unknown kind {kind!r}; expected full, missing_<modality>, "
            "noisy_<modality> or only_<modality>"
        )
    return parsed


@validated
@dataclass(frozen=True)
class Condition:
    """One evaluation condition.

    ``kind``: ``"full"``, ``"missing_<m>"``, ``"noisy_<m>"`` or ``"only_<m>"``. ``ratio``
    is the fraction of samples impaired (exactly ``round(ratio * n)`` of them; ``only_<m>``
    hits all); ``level`` is the noise level of the noisy kinds, in the unit of m's kind
    (σ on [0, 1] pixels, token-replacement p, SNR in dB, ...). The modality's kind checks
    the level where the protocol is set up; ``noisy_image`` and ``noisy_text`` are checked
    here too, as before.
    """

    kind: str = "full"
    ratio: Annotated[float, Field(ge=0, le=1)] = 1.0
    level: Annotated[float, Field(allow_inf_nan=False)] = 0.0  # every kind's range is finite
    seed: int = 0

    def __post_init__(self):  # the rules that depend on the kind
        action, _ = _split_kind(self.kind)
        if action == "only" and self.ratio != 1.0:
            raise ConfigError(f"condition {self.kind}: only_<m> impairs every sample (ratio 1)")
        if self.kind == "noisy_text" and not 0.0 <= self.level <= 1.0:
            raise ConfigError(f"condition noisy_text: p must be in [0, 1], got {self.level}")
        if self.kind == "noisy_image" and self.level < 0:
            raise ConfigError(f"condition noisy_image: sigma must be >= 0, got {self.level}")

    @property
    def action(self) -> str:
        """``"full"``, ``"missing"``, ``"noisy"`` or ``"only"``."""
        return _split_kind(self.kind)[0]

    @property
    def modality(self) -> str | None:
        """The modality the condition names (None for ``full``)."""
        return _split_kind(self.kind)[1]

    @property
    def name(self) -> str:
        """The condition's key: ``full``, ``missing_<m>@r``, ``noisy_<m>@r``, ``only_<m>``."""
        action = self.action
        if action in ("full", "only"):
            return self.kind
        if action == "missing":
            return f"{self.kind}@{self.ratio:g}"
        suffix = "" if self.ratio == 1.0 else f"/{self.ratio:g}"
        return f"{self.kind}@{self.level:g}{suffix}"

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> Condition:
        """``"missing_image@0.5"``, ``"noisy_text@0.3"``, ``"only_audio"``, ``"full"``
        (defaults: r = 1; noise 0.5).

        Args:
            text: The condition.
            seed: The seed of its sample choice and noise.

        Returns:
            The condition.

        Raises:
            ConfigError: A malformed condition.
        """
        kind, _, arg = text.partition("@")
        kind = kind.strip()
        try:
            action, _ = _split_kind(kind)
        except ConfigError:
            raise ConfigError(
                f"condition: unknown condition {text!r}; expected full, missing_<modality>@r, "
                "noisy_<modality>@level or only_<modality>"
            ) from None
        try:
            value = float(arg) if arg else None
        except ValueError:
            raise ConfigError(f"condition {text!r}: {arg!r} is not a number") from None
        if action == "missing":
            return cls(kind, ratio=1.0 if value is None else value, seed=seed)
        if action == "noisy":
            return cls(kind, level=0.5 if value is None else value, seed=seed)
        if value is not None:
            raise ConfigError(f"condition {text!r}: {action}_<m> takes no @value")
        return cls(kind, seed=seed)

    def missing_for(self, modality: str) -> bool:
        """Whether the hit samples lose ``modality``.

        Args:
            modality: A modality.

        Returns:
            True when it does.
        """
        action, m = self.action, self.modality
        return (action == "missing" and m == modality) or (action == "only" and m != modality)

    def noisy_for(self, modality: str) -> bool:
        """Whether the hit samples get ``modality`` noisy.

        Args:
            modality: A modality.

        Returns:
            True when they do.
        """
        return self.action == "noisy" and self.modality == modality

    def hits(self, modality: str) -> bool:
        """Whether this condition changes ``modality``'s inputs at all.

        Args:
            modality: A modality.

        Returns:
            True when it does.
        """
        return self.missing_for(modality) or self.noisy_for(modality)

    def part(self, modality: str) -> str:
        """The part of this condition that changes ``modality`` (for feature-cache keys).

        Args:
            modality: A modality.

        Returns:
            The part's key.
        """
        return f"{self.name}#seed{self.seed}" if self.hits(modality) else "full"

    def mask(self, n: int) -> np.ndarray:
        """Boolean [n]: which samples this condition impairs (exact count, fixed seed).

        Args:
            n: The number of samples.

        Returns:
            The mask.
        """
        if self.kind == "full":
            return np.zeros(n, dtype=bool)
        if self.action == "only":
            return np.ones(n, dtype=bool)
        k = int(math.floor(self.ratio * n + 0.5))
        # salt by kind so missing-image and missing-text hit independent subsets
        rng = np.random.default_rng([self.seed, _mask_salt(self.kind)])
        out = np.zeros(n, dtype=bool)
        out[rng.permutation(n)[:k]] = True
        return out


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
    salt: int = 2,
) -> torch.Tensor:
    """Replace each real (non-special, non-pad) token by a random non-special vocabulary
    token with probability ``p``. 1-D ``input_ids`` of one sample; ``salt`` is the
    modality's noise stream (:func:`balgrad.data._kinds.noise_salt`; 2 for ``text``).

    Args:
        input_ids: Token ids ``[T]``.
        attention_mask: Its mask ``[T]``.
        p: The replacement probability.
        vocab_size: The vocabulary's size.
        special_ids: Ids never drawn nor replaced.
        seed: The run's noise seed.
        index: The sample's index.
        salt: The modality's salt.

    Returns:
        The noisy ids.
    """
    g = sample_generator(seed, index, salt)
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
