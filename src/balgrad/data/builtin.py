"""Built-in datasets that need nothing but pip/Debian packages: ``digits`` and ``fashion``.

``digits`` (the project's default)
    Every sample is a random augmentation (upsampling, affine warp, stroke thickness,
    contrast, pixel noise) of one of the 1,797 real 8x8 handwritten digits that
    scikit-learn ships (``sklearn.datasets.load_digits``), paired with a generated
    caption such as ``"a rough sketch of the number seven drawn in blue ink"``. The
    1,797 source digits are split into disjoint train/test pools first, so the test
    split measures generalisation to unseen handwriting.

    A caption names its class (``"seven"``, ``"digit seven"``, ...) only with
    probability ``text_signal``; otherwise it carries one *ambiguous* shape word
    shared by two or three classes (``"round"`` is said of 0, 6 and 8), so text alone
    is informative but not perfect. Both modalities carry real signal; which one the
    joint model leans on (the *dominant* modality of the paper) is set by
    :class:`DigitsConfig`'s ``dominant`` and ``strength`` (or directly by
    ``text_signal`` and ``image_noise``).

``fashion``
    Fashion-MNIST read from its IDX files (Debian's ``dataset-fashion-mnist`` installs
    them under ``/usr/share/datasets/fashion-mnist``), a stratified, seeded subsample,
    paired with generated product titles whose words overlap between similar classes
    (shirt, T-shirt/top, pullover and coat share "top", "sleeve", "cotton", "button";
    sandal, sneaker and ankle boot share "shoe", "sole", ...). A harder benchmark.

Use :func:`load_builtin` (``load_builtin("digits", "train", seed=0, strength=0.8)``) or
the classes directly. Every dataset exposes ``texts`` (``list[str]``), ``labels``
(``int64`` numpy array) and ``images`` (``uint8`` numpy array ``[N, H, W]``) for cheap
bulk access, e.g. to fit a vocabulary on the training texts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from balgrad.data.base import MultimodalDataset
from balgrad.data.digits import DIGITS_CLASSES, DigitsConfig, DigitsDataset
from balgrad.data.fashion import DEFAULT_FASHION_DIR, FASHION_CLASSES, FashionConfig, FashionDataset
from balgrad.data.idx import read_idx
from balgrad.errors import ConfigError

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_FASHION_DIR",
    "DIGITS_CLASSES",
    "FASHION_CLASSES",
    "DigitsConfig",
    "DigitsDataset",
    "FashionConfig",
    "FashionDataset",
    "builtin_options",
    "load_builtin",
    "read_idx",
]

BUILTIN_DATASETS: dict[str, tuple[type, type]] = {
    "digits": (DigitsDataset, DigitsConfig),
    "fashion": (FashionDataset, FashionConfig),
}


def builtin_options(name: str) -> dict[str, Any]:
    """The options a built-in dataset accepts, with their defaults."""
    if name not in BUILTIN_DATASETS:
        raise ConfigError(
            f"dataset: unknown built-in dataset {name!r}; choose one of {sorted(BUILTIN_DATASETS)}"
        )
    cfg_cls = BUILTIN_DATASETS[name][1]
    return {f.name: f.default for f in dataclasses.fields(cfg_cls)}


def load_builtin(
    name: str, split: str, *, seed: int = 0, data_dir: str | None = None, **options: Any
) -> MultimodalDataset:
    """Build a built-in dataset split.

    ``name``: ``"digits"`` or ``"fashion"``; ``split``: ``"train"`` or ``"test"``;
    ``options``: fields of :class:`DigitsConfig` / :class:`FashionConfig`. ``data_dir``
    is the Fashion-MNIST folder for ``fashion``, and the ``.npz`` cache folder for
    ``digits`` (same as its ``cache_dir`` option; it needs no files). Unknown names and
    options raise :class:`ConfigError` naming them.
    """
    allowed = builtin_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"dataset option(s) {unknown} unknown for built-in dataset {name!r}; "
            f"valid options: {sorted(allowed)}"
        )
    ds_cls, cfg_cls = BUILTIN_DATASETS[name]
    opts = dict(options)
    if data_dir is not None:
        key = "data_dir" if name == "fashion" else "cache_dir"
        if key in opts and opts[key] != data_dir:
            raise ConfigError(f"data_dir and {key} disagree: {data_dir!r} vs {opts[key]!r}")
        opts[key] = str(data_dir)
    try:
        config = cfg_cls(**opts)
    except TypeError as exc:  # pragma: no cover - guarded by the option check above
        raise ConfigError(f"dataset {name!r}: {exc}") from exc
    return ds_cls(split, seed=seed, config=config)
