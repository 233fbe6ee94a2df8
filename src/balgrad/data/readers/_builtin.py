"""Built-in datasets that need nothing but pip/Debian packages: ``digits``, ``fashion``
and ``keypad``.

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

``keypad`` (three modalities: image, audio, text)
    Each sample is a ``digits`` sample (its image and caption, from the digits generator)
    plus the telephone keypad's DTMF tone pair of the digit (697/770/852/941 Hz rows x
    1209/1336/1477 Hz columns) as a 0.5 s waveform at 8 kHz, with per-sample detuning,
    onset, duration and gain jitter and white noise at ``snr_db``
    (:class:`~balgrad.data.readers._keypad.KeypadConfig`). Its audio tower defaults to
    ``efficientnet-lite0-mel``; see ``docs/three-modality-benchmark.md``.

Use :func:`load_builtin` (``load_builtin("digits", "train", seed=0, strength=0.8)``) or
the classes directly. Every dataset exposes ``texts`` (``list[str]``), ``labels``
(``int64`` numpy array) and ``images`` (``uint8`` numpy array ``[N, H, W]``) for cheap
bulk access, e.g. to fit a vocabulary on the training texts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from balgrad.data._base import MultimodalDataset
from balgrad.data._catalog import (
    DATASETS,
    IMAGE_TEXT_BACKBONES,
    IMAGE_TEXT_DATASET,
    lookup,
    register_dataset,
)
from balgrad.data.readers._digits import DIGITS_CLASSES, DigitsConfig, DigitsDataset
from balgrad.data.readers._fashion import (
    DEFAULT_FASHION_DIR,
    FASHION_CLASSES,
    FashionConfig,
    FashionDataset,
)
from balgrad.data.readers._idx import read_idx
from balgrad.data.readers._keypad import (
    KEYPAD_CLASSES,
    KEYPAD_MODALITIES,
    KeypadConfig,
    KeypadDataset,
)
from balgrad.errors import ConfigError

__all__ = [
    "DEFAULT_FASHION_DIR",
    "DIGITS_CLASSES",
    "FASHION_CLASSES",
    "SMALL_IMAGE_BACKBONE_DEFAULTS",
    "DigitsConfig",
    "DigitsDataset",
    "FashionConfig",
    "FashionDataset",
    "KEYPAD_CLASSES",
    "KeypadConfig",
    "KeypadDataset",
    "builtin_options",
    "load_builtin",
    "read_idx",
]

# encoder defaults that suit the built-in datasets' 28x28 images and short captions.
# The CNN has no normalisation layers here: with BatchNorm's running statistics an
# all-black "missing" image maps to a large out-of-distribution feature that swings the
# missing-image score between epochs and seeds; without it a blank image stays a
# near-constant, near-zero feature. EfficientNet-Lite0 sees them at 112 px (4x cheaper
# than 224 on a CPU).
SMALL_IMAGE_BACKBONE_DEFAULTS = {
    "cnn": {"image_size": 28, "channels": 1, "width": 16, "norm": "none"},
    "small": {"max_length": 24},
    "efficientnet-lite0": {"image_size": 112},
}


# the keypad's sound through the spectrogram-image tower: the 500-1700 Hz band that holds
# every DTMF tone (detuned), at 112 px like the image tower; over the full 0-4 kHz band at
# 64 px its frozen features lose where the tones are (docs/three-modality-benchmark.md)
# Both EfficientNet towers run fused (BatchNorm folded, channels-last): the same features up
# to float rounding at about 0.4x the encoding time, which keeps the first run within 3 minutes
# on two CPU cores; digits and fashion keep the plain form their recorded numbers used.
KEYPAD_BACKBONE_DEFAULTS = {
    "efficientnet-lite0": {"image_size": 112, "fused": True},
    "efficientnet-lite0-mel": {
        "sample_rate": 8000,
        "f_min": 500.0,
        "f_max": 1700.0,
        "image_size": 112,
        "fused": True,
    },
}


def _generated(ds_cls: type, cfg_cls: type, data_dir_option: str) -> Callable[..., Any]:
    """The loader of a built-in dataset: ``data_dir`` fills ``data_dir_option``."""

    def load(split: str, *, seed: int = 0, data_dir: str | None = None, **options: Any):
        if data_dir is not None:
            given = options.get(data_dir_option)
            if given is not None and given != data_dir:
                raise ConfigError(
                    f"data_dir and {data_dir_option} disagree: {data_dir!r} vs {given!r}"
                )
            options[data_dir_option] = str(data_dir)
        return ds_cls(split, seed=seed, config=cfg_cls(**options))

    return load


# name, dataset, options, the option --data-dir fills, the one balgrad's cache fills
for _name, _dataset, _config, _data_dir, _cache, _description in (
    ("digits", DigitsDataset, DigitsConfig, "cache_dir", "cache_dir",
     "scikit-learn's handwritten digits, augmented, with generated captions"),
    ("fashion", FashionDataset, FashionConfig, "data_dir", None,
     "Fashion-MNIST (Debian's dataset-fashion-mnist) with generated product titles"),
):  # fmt: skip
    register_dataset(
        _name,
        _generated(_dataset, _config, _data_dir),
        options_from=_config,
        kind="builtin",
        description=_description,
        backbone_defaults=SMALL_IMAGE_BACKBONE_DEFAULTS,
        cache_option=_cache,
        **IMAGE_TEXT_DATASET,
    )


register_dataset(
    "keypad",
    _generated(KeypadDataset, KeypadConfig, "cache_dir"),
    options_from=KeypadConfig,
    kind="builtin",
    description="digits with a sound: the phone keypad's DTMF tones, jittered and noisy (image, audio, text)",
    backbone_defaults={**SMALL_IMAGE_BACKBONE_DEFAULTS, **KEYPAD_BACKBONE_DEFAULTS},
    cache_option="cache_dir",
    modalities=dict(KEYPAD_MODALITIES),
    modality_backbones={"audio": "efficientnet-lite0-mel"},
    kind_backbones=IMAGE_TEXT_BACKBONES,
)


def builtin_options(name: str) -> dict[str, Any]:
    """The options a built-in dataset accepts, with their defaults.

    Args:
        name: A built-in dataset.

    Returns:
        ``{option: default}``.
    """
    return DATASETS.defaults(lookup(name, "builtin"))


def load_builtin(
    name: str, split: str, *, seed: int = 0, data_dir: str | None = None, **options: Any
) -> MultimodalDataset:
    """Build a built-in dataset split.

    ``name``: ``"digits"``, ``"fashion"`` or ``"keypad"``; ``split``: ``"train"`` or
    ``"test"``; ``options``: fields of :class:`DigitsConfig` / :class:`FashionConfig` /
    :class:`KeypadConfig`. ``data_dir`` is the Fashion-MNIST folder for ``fashion``, and
    the ``.npz`` cache folder for ``digits`` and ``keypad`` (same as their ``cache_dir``
    option; they need no files). Unknown names and
    options raise :class:`ConfigError` naming them.

    Args:
        name: The dataset.
        split: The split.
        seed: The generation seed.
        data_dir: The data or cache folder.
        **options: The dataset's options.

    Returns:
        The split.

    Example:
        >>> from balgrad.data.readers._builtin import load_builtin
        >>> train = load_builtin("digits", "train", n_train=64, n_test=32)
        >>> len(train), sorted(train.info.modalities)
        (64, ['image', 'text'])
    """
    key = lookup(name, "builtin")
    return DATASETS.build(key, (split,), {"seed": seed, "data_dir": data_dir}, options)
