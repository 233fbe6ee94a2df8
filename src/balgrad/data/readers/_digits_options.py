"""The image and caption options that ``digits`` and ``keypad`` share, declared once.

No ``from __future__ import annotations`` here on purpose: the fields' types stay
objects, so a subclass's dataclass ``__init__`` (compiled in the subclass's module)
resolves them without that module importing ``Count``, ``Literal`` and the rest.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from balgrad.data.readers._builtin_common import Count, Fraction, ImageSide


@dataclass(frozen=True)
class _DigitsOptions:
    """The digits generator's options (see :class:`~balgrad.data.readers._digits.DigitsConfig`);
    a subclass adds its own after them and ``cache_dir`` last."""

    n_train: Count = 5000
    n_test: Count = 2000
    dominant: Literal["text", "image"] = "text"
    strength: Fraction = 0.9
    text_signal: Fraction | None = None
    image_noise: Fraction | None = None
    image_size: ImageSide = 28
    test_source_fraction: Annotated[float, Field(ge=0.05, le=0.95)] = 0.3
