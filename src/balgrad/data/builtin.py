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
import gzip
import hashlib
import json
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from balgrad.data.base import DatasetInfo, Example, MultimodalDataset
from balgrad.errors import ConfigError, DataError

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

# bump whenever the generator's output for a given config and seed changes
_DIGITS_VERSION = 1
_FASHION_VERSION = 1

SPLITS = ("train", "test")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    return split


def _check_fraction(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _check_count(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stratified_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, as balanced as possible (remainder classes drawn at random), shuffled."""
    labels = np.repeat(np.arange(num_classes), n // num_classes)
    extra = rng.choice(num_classes, size=n % num_classes, replace=False)
    labels = np.concatenate([labels, extra])
    return rng.permutation(labels).astype(np.int64)


# ---------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------

DIGITS_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# class-revealing phrases (only ever used for their own class)
_DIGIT_KEYWORDS = [[f"number {w}", f"digit {w}", f"handwritten {w}", w] for w in DIGITS_CLASSES]

# ambiguous shape words: each is said of two or three classes
_DIGIT_SHAPES: dict[str, tuple[int, ...]] = {
    "round": (0, 6, 8),
    "closed": (0, 8, 9),
    "looped": (6, 9),
    "straight": (1, 4, 7),
    "thin": (1, 7),
    "curvy": (2, 3, 5),
    "flat": (2, 5, 7),
    "open": (3, 4),
}
_DIGIT_CLASS_SHAPES = [
    sorted(w for w, cs in _DIGIT_SHAPES.items() if c in cs) for c in range(len(DIGITS_CLASSES))
]
_DIGIT_SHAPE_NOUNS = ["figure", "numeral", "symbol", "character", "glyph"]
_STYLES = ["sketch", "drawing", "scribble", "doodle", "scan", "photo", "picture", "tracing"]
_STYLE_ADJ = ["rough", "quick", "neat", "messy", "faint", "bold", "small", "large", "careful"]
_INKS = ["ink", "pencil", "marker", "crayon", "chalk", "pen"]
_COLORS = ["blue", "red", "black", "green", "purple", "grey", "brown", "orange"]
_SURFACES = ["on paper", "on a napkin", "on a whiteboard", "on a notepad", "on a form", ""]


@dataclass(frozen=True)
class DigitsConfig:
    """Options of the ``digits`` dataset (all of them are :func:`load_builtin` options).

    The modality-balance knob:

    - ``dominant``: ``"text"`` (default) or ``"image"`` — the modality made easier to
      learn, which a jointly trained model comes to lean on.
    - ``strength`` in [0, 1] (default 0.7): how strongly it dominates. It sets the two
      signal levels below when they are left as ``None``:

      ===============  ==========================  ==========================
      dominant         ``text_signal``             ``image_noise``
      ===============  ==========================  ==========================
      ``"text"``       0.85 + 0.14 * strength      0.15 * strength
      ``"image"``      0.50 - 0.40 * strength      0.05 * (1 - strength)
      ===============  ==========================  ==========================

      The defaults (text, 0.7) give ``text_signal`` 0.948 and ``image_noise`` 0.105.
      Measured with the default small encoders (SmallCNN width 16, 28x28, plus the
      word-level text encoder; concat fusion, Adam 1e-3, batch 64, 8 epochs, seeds
      0-2): text alone 96-97% test accuracy, images alone 81-94%; the jointly trained
      model scores 98-99% on full inputs and 29-54% with the text missing. With the
      image missing it keeps 96-97% when the missing image is a zero *embedding*
      (Delta-Gap 43-68 points); with a blank *input* image it scores 56-97%, varying
      from epoch to epoch, because a batch-normalised CNN's response to an all-black
      image is out of distribution. ``strength=0`` gives a milder, less stable
      imbalance; ``dominant="image"`` flips it (images alone ~92%, text alone ~50%;
      joint: ~68% with the text missing, ~40% with the image missing).

    - ``text_signal``: probability that a caption contains a class-revealing word
      ("seven"); otherwise it only has one shape word shared by 2-3 classes, so the
      best possible text-only accuracy is about ``text_signal + 0.4 (1 - text_signal)``.
    - ``image_noise``: image difficulty in [0, 1]: the std of the Gaussian pixel noise
      (on the [0, 1] scale); it also widens the affine jitter and, above 0.2, adds
      random occluding blotches.

    Sizes: ``n_train`` / ``n_test`` samples (default 5,000 / 2,000, classes balanced),
    ``image_size`` (default 28) square pixels, ``test_source_fraction`` of the 1,797
    real digits reserved for the test split (default 0.3). ``cache_dir``: where to
    cache the generated arrays as ``.npz`` (``None`` = in memory only).
    """

    n_train: int = 5000
    n_test: int = 2000
    dominant: str = "text"
    strength: float = 0.7
    text_signal: float | None = None
    image_noise: float | None = None
    image_size: int = 28
    test_source_fraction: float = 0.3
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _check_count(self.n_train, "n_train")
        _check_count(self.n_test, "n_test")
        _check_count(self.image_size, "image_size", minimum=8)
        if self.dominant not in ("text", "image"):
            raise ConfigError(f"dominant: expected 'text' or 'image', got {self.dominant!r}")
        _check_fraction(self.strength, "strength")
        if self.text_signal is not None:
            _check_fraction(self.text_signal, "text_signal")
        if self.image_noise is not None:
            _check_fraction(self.image_noise, "image_noise")
        f = _check_fraction(self.test_source_fraction, "test_source_fraction")
        if not 0.05 <= f <= 0.95:
            raise ConfigError(
                f"test_source_fraction: expected a value in [0.05, 0.95], got {self.test_source_fraction!r}"
            )

    @property
    def resolved_text_signal(self) -> float:
        if self.text_signal is not None:
            return float(self.text_signal)
        s = float(self.strength)
        return 0.85 + 0.14 * s if self.dominant == "text" else 0.50 - 0.40 * s

    @property
    def resolved_image_noise(self) -> float:
        if self.image_noise is not None:
            return float(self.image_noise)
        s = float(self.strength)
        return 0.15 * s if self.dominant == "text" else 0.05 * (1.0 - s)

    def content_key(self, seed: int) -> str:
        """A digest of everything that determines the generated data."""
        return _digest(
            {
                "version": _DIGITS_VERSION,
                "seed": int(seed),
                "n_train": self.n_train,
                "n_test": self.n_test,
                "image_size": self.image_size,
                "text_signal": round(self.resolved_text_signal, 6),
                "image_noise": round(self.resolved_image_noise, 6),
                "test_source_fraction": self.test_source_fraction,
            }
        )


def _digit_caption(label: int, reveal: bool, rng: np.random.Generator) -> str:
    style = _STYLES[rng.integers(len(_STYLES))]
    ink = f"{_COLORS[rng.integers(len(_COLORS))]} {_INKS[rng.integers(len(_INKS))]}"
    surface = _SURFACES[rng.integers(len(_SURFACES))]
    if reveal:
        kws = _DIGIT_KEYWORDS[label]
        subject = f"the {kws[rng.integers(len(kws))]}"
    else:
        shapes = _DIGIT_CLASS_SHAPES[label]
        shape = shapes[rng.integers(len(shapes))]
        article = "an" if shape[0] in "aeiou" else "a"
        subject = f"{article} {shape} {_DIGIT_SHAPE_NOUNS[rng.integers(len(_DIGIT_SHAPE_NOUNS))]}"
    adj = _STYLE_ADJ[rng.integers(len(_STYLE_ADJ))]
    form = int(rng.integers(4))
    if form == 0:
        text = f"a {adj} {style} of {subject} drawn in {ink} {surface}"
    elif form == 1:
        text = f"{subject} written in {ink} {surface}, a {adj} {style}"
    elif form == 2:
        text = f"{adj} {style}: {subject} in {ink}"
    else:
        text = f"someone drew {subject} with {ink} {surface}"
    return " ".join(text.split()).replace(" ,", ",")


def _load_digit_sources() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("dataset 'digits' needs scikit-learn (pip install scikit-learn)") from exc
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def _split_sources(
    targets: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the source-digit indices into disjoint train/test pools."""
    train, test = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        k = max(1, int(round(test_fraction * len(idx))))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _augment_digits(
    sources: np.ndarray, size: int, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Random augmentations of 8x8 float digits ``[N, 8, 8]`` -> uint8 ``[N, size, size]``."""
    n = len(sources)
    x = torch.from_numpy(sources).unsqueeze(1)  # [N, 1, 8, 8]
    inner = max(8, int(round(size * 20 / 28)))  # the digit's box, MNIST-like margins
    x = F.interpolate(x, size=(inner, inner), mode="bicubic", align_corners=False).clamp(0, 1)
    pad = size - inner
    x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))

    # random affine: rotation, anisotropic scale, shear, shift (wider with more noise)
    jitter = 1.0 + 0.8 * noise
    angle = np.deg2rad(rng.uniform(-15, 15, n) * jitter)
    scale = rng.uniform(0.85, 1.12, (n, 2)) * rng.uniform(1 - 0.08 * jitter, 1, (n, 1))
    shear = rng.uniform(-0.15, 0.15, n) * jitter
    shift = rng.uniform(-0.1, 0.1, (n, 2)) * jitter
    cos, sin = np.cos(angle), np.sin(angle)
    a = np.zeros((n, 2, 3), dtype=np.float32)
    # grid_sample maps output coords to input coords, so this is the inverse transform
    a[:, 0, 0] = cos / scale[:, 0]
    a[:, 0, 1] = (-sin + shear) / scale[:, 0]
    a[:, 1, 0] = sin / scale[:, 1]
    a[:, 1, 1] = cos / scale[:, 1]
    a[:, :, 2] = shift
    grid = F.affine_grid(torch.from_numpy(a), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # stroke thickness: thicken (max-pool), thin (min-pool) or keep, blended partially
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    mode = torch.from_numpy(rng.integers(0, 3, n)).view(n, 1, 1, 1)
    amount = torch.from_numpy(rng.uniform(0.3, 1.0, n).astype(np.float32)).view(n, 1, 1, 1)
    x = torch.where(mode == 1, x + amount * (thick - x), x)
    x = torch.where(mode == 2, x + amount * (thin - x), x)

    # contrast / gamma
    peak = x.flatten(1).amax(1).clamp_min(1e-3).view(n, 1, 1, 1)
    x = (x / peak).clamp(0, 1)
    gamma = torch.from_numpy(rng.uniform(0.6, 1.5, n).astype(np.float32)).view(n, 1, 1, 1)
    gain = torch.from_numpy(rng.uniform(0.7, 1.0, n).astype(np.float32)).view(n, 1, 1, 1)
    x = gain * x.pow(gamma)

    # occluding blotches (only for harder settings)
    if noise > 0.2:
        n_blot = rng.binomial(3, min(1.0, (noise - 0.2) * 1.5), n)
        yy, xx = np.mgrid[0:size, 0:size]
        blot = np.zeros((n, size, size), dtype=np.float32)
        for i in np.flatnonzero(n_blot):
            for _ in range(n_blot[i]):
                cy, cx = rng.uniform(0, size, 2)
                r = rng.uniform(0.08, 0.16) * size
                val = rng.uniform(0.3, 1.0)
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
                blot[i][mask] = val
        x = torch.maximum(x, torch.from_numpy(blot).unsqueeze(1))

    if noise > 0:
        x = x + noise * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
    x = x.clamp(0, 1)
    return (x.squeeze(1).numpy() * 255.0 + 0.5).astype(np.uint8)


def _generate_digits(config: DigitsConfig, seed: int) -> dict[str, np.ndarray]:
    images, targets = _load_digit_sources()
    root = np.random.SeedSequence([int(seed), 0xD161])
    split_ss, train_ss, test_ss = root.spawn(3)
    train_pool, test_pool = _split_sources(
        targets, config.test_source_fraction, np.random.default_rng(split_ss)
    )
    out: dict[str, np.ndarray] = {}
    p = config.resolved_text_signal
    noise = config.resolved_image_noise
    for split, pool, n, ss in (
        ("train", train_pool, config.n_train, train_ss),
        ("test", test_pool, config.n_test, test_ss),
    ):
        label_rng, src_rng, img_rng, txt_rng = (np.random.default_rng(s) for s in ss.spawn(4))
        labels = _stratified_labels(n, len(DIGITS_CLASSES), label_rng)
        sources = np.empty(n, dtype=np.int64)
        for c in range(len(DIGITS_CLASSES)):
            # walk through shuffled copies of the class's pool, so every source digit is
            # used about equally often (all of them once n exceeds the pool)
            where = np.flatnonzero(labels == c)
            candidates = pool[targets[pool] == c]
            rounds = -(-len(where) // len(candidates))
            order = np.concatenate([src_rng.permutation(candidates) for _ in range(rounds)])
            sources[where] = order[: len(where)]
        imgs = _augment_digits(images[sources], config.image_size, noise, img_rng)
        reveal = txt_rng.random(n) < p
        texts = [_digit_caption(int(y), bool(r), txt_rng) for y, r in zip(labels, reveal)]
        out[f"{split}_images"] = imgs
        out[f"{split}_labels"] = labels
        out[f"{split}_sources"] = sources
        out[f"{split}_texts"] = np.array(texts, dtype=np.str_)
        out[f"{split}_reveal"] = reveal
    return out


_DIGITS_MEMORY: dict[str, dict[str, np.ndarray]] = {}


def _digits_arrays(config: DigitsConfig, seed: int) -> dict[str, np.ndarray]:
    key = config.content_key(seed)
    if key in _DIGITS_MEMORY:
        return _DIGITS_MEMORY[key]
    path = Path(config.cache_dir) / f"digits-{key}.npz" if config.cache_dir else None
    arrays = None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable digits cache {path}: {exc}", stacklevel=3)
            arrays = None
    if arrays is None:
        arrays = _generate_digits(config, seed)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
                np.savez_compressed(tmp, **arrays)
                os.replace(tmp, path)
            except OSError as exc:
                warnings.warn(
                    f"cache_dir: could not write digits cache {path}: {exc}", stacklevel=3
                )
    if len(_DIGITS_MEMORY) >= 4:
        _DIGITS_MEMORY.pop(next(iter(_DIGITS_MEMORY)))
    _DIGITS_MEMORY[key] = arrays
    return arrays


class _ArrayDataset(MultimodalDataset):
    """Shared storage: ``images`` uint8 [N, H, W], ``texts`` list[str], ``labels`` int64 [N]."""

    images: np.ndarray
    texts: list[str]
    labels: np.ndarray
    _fingerprint: str

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int) -> Example:
        i = int(index)
        if not 0 <= i < len(self.labels):
            raise IndexError(f"{self.info.name}/{self.split}: index {index} out of range")
        image = torch.from_numpy(self.images[i].astype(np.float32) / 255.0).unsqueeze(0)
        return Example(
            image=image,
            text=self.texts[i],
            label=torch.tensor(int(self.labels[i]), dtype=torch.int64),
            index=i,
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint


class DigitsDataset(_ArrayDataset):
    """Augmented real handwritten digits with generated captions (see :class:`DigitsConfig`).

    Extra attributes: ``sources`` (index of each sample's source digit in scikit-learn's
    ``load_digits()``; the train and test pools are disjoint) and ``reveal`` (whether
    each caption contains its class-revealing word).
    """

    def __init__(self, split: str = "train", *, seed: int = 0, config: DigitsConfig | None = None):
        self.split = _check_split(split)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed: expected an integer, got {seed!r}")
        self.seed = int(seed)
        self.config = config if config is not None else DigitsConfig()
        self.info = DatasetInfo(
            "digits", "single_label", list(DIGITS_CLASSES), "accuracy", ["accuracy"]
        )
        arrays = _digits_arrays(self.config, self.seed)
        self.images = arrays[f"{split}_images"]
        self.labels = arrays[f"{split}_labels"]
        self.sources = arrays[f"{split}_sources"]
        self.reveal = arrays[f"{split}_reveal"]
        self.texts = [str(t) for t in arrays[f"{split}_texts"]]
        self._fingerprint = (
            f"digits:{split}:{len(self.labels)}:{self.config.content_key(self.seed)}"
        )


# ---------------------------------------------------------------------------------------
# IDX files and fashion
# ---------------------------------------------------------------------------------------

DEFAULT_FASHION_DIR = "/usr/share/datasets/fashion-mnist"

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip-compressed, detected by content).

    Checks the magic number (two zero bytes, a known type code, the number of
    dimensions), ``ndim`` when given, and that the payload has exactly the announced
    size. Raises :class:`DataError` naming the file on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc}); the file may be truncated") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero0, zero1, code, dims = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or dims == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} "
            "(expected 0x0000 + type code 08/09/0B/0C/0D/0E + number of dimensions)"
        )
    if ndim is not None and dims != ndim:
        raise DataError(f"{path}: expected an IDX file with {ndim} dimension(s), found {dims}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise DataError(
            f"{path}: truncated IDX file: dimensions {list(shape)} need {expected} data bytes, "
            f"found {got}"
        )
    if got > expected:
        raise DataError(
            f"{path}: IDX file has {got - expected} trailing bytes after the data of "
            f"dimensions {list(shape)}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))  # a writable copy


FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# class-revealing words
_FASHION_KEYWORDS = [
    ["tee", "tshirt", "teeshirt"],
    ["trousers", "pants", "chinos"],
    ["pullover", "sweater", "jumper"],
    ["dress", "gown", "sundress"],
    ["coat", "overcoat", "parka"],
    ["sandal", "sandals", "slides"],
    ["shirt", "blouse", "oxford"],
    ["sneaker", "sneakers", "trainers"],
    ["bag", "handbag", "tote"],
    ["boot", "boots", "booties"],
]
# descriptive words, each shared between similar classes
_FASHION_SHARED = [
    ["top", "sleeve", "cotton", "crew", "casual", "short"],
    ["long", "waist", "leg", "slim", "pocket", "denim"],
    ["top", "sleeve", "knit", "warm", "cotton", "long"],
    ["long", "waist", "slim", "sleeve", "summer", "fitted"],
    ["sleeve", "button", "warm", "pocket", "long", "zip"],
    ["shoe", "sole", "summer", "strap", "open", "flat"],
    ["top", "sleeve", "button", "collar", "cotton", "casual"],
    ["shoe", "sole", "lace", "casual", "sport", "flat"],
    ["strap", "leather", "pocket", "zip", "carry", "button"],
    ["shoe", "sole", "leather", "heel", "zip", "lace"],
]
_FASHION_NOUNS = ["item", "piece", "style", "wear", "essential", "classic"]
_FASHION_BRANDS = ["urban", "nordic", "studio", "basic", "premium", "vintage", "modern", "daily"]
_FASHION_COLORS = ["black", "white", "navy", "grey", "beige", "olive", "red", "pink", "brown"]
_FASHION_WHO = ["womens", "mens", "unisex", "kids", ""]
_FASHION_TAIL = [
    "new season",
    "free returns",
    "size m",
    "size l",
    "size s",
    "sale",
    "bestseller",
    "",
]


@dataclass(frozen=True)
class FashionConfig:
    """Options of the ``fashion`` dataset (all of them are :func:`load_builtin` options).

    - ``n_train`` / ``n_test``: stratified subsample sizes (default 5,000 / 2,000) drawn
      with the seed from the 60,000 / 10,000 Fashion-MNIST images.
    - ``text_signal`` (default 0.5): probability that a product title contains a
      class-revealing word ("sneaker"); otherwise it only has two descriptive words
      shared between similar classes ("shoe", "sole").
    - ``data_dir``: the folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
      (default ``/usr/share/datasets/fashion-mnist``, Debian's ``dataset-fashion-mnist``).
    """

    n_train: int = 5000
    n_test: int = 2000
    text_signal: float = 0.5
    data_dir: str = DEFAULT_FASHION_DIR

    def __post_init__(self) -> None:
        _check_count(self.n_train, "n_train")
        _check_count(self.n_test, "n_test")
        _check_fraction(self.text_signal, "text_signal")
        if not isinstance(self.data_dir, (str, os.PathLike)):
            raise ConfigError(f"data_dir: expected a path, got {self.data_dir!r}")


def _fashion_file(data_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"{data_dir / (stem + '.gz')}: Fashion-MNIST file not found (nor {stem})")


_FASHION_MEMORY: dict[tuple[str, int, float], tuple[np.ndarray, np.ndarray]] = {}


def _read_fashion_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: Fashion-MNIST folder not found; install Debian's "
            "dataset-fashion-mnist or point --data-dir (option data_dir) at a folder with "
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
        )
    prefix = "train" if split == "train" else "t10k"
    img_path = _fashion_file(data_dir, f"{prefix}-images-idx3-ubyte")
    lab_path = _fashion_file(data_dir, f"{prefix}-labels-idx1-ubyte")
    stamp = []
    for p in (img_path, lab_path):
        st = p.stat()
        stamp.append(f"{p.name}:{st.st_size}")
    key = (str(img_path.resolve()), img_path.stat().st_size, img_path.stat().st_mtime)
    if key in _FASHION_MEMORY:
        images, labels = _FASHION_MEMORY[key]
    else:
        images = read_idx(img_path, ndim=3)
        labels = read_idx(lab_path, ndim=1)
        if images.dtype != np.uint8:
            raise DataError(f"{img_path}: expected unsigned-byte pixels, found {images.dtype}")
        if len(images) != len(labels):
            raise DataError(
                f"{lab_path}: {len(labels)} labels for {len(images)} images in {img_path.name}"
            )
        labels = labels.astype(np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= len(FASHION_CLASSES)))
        if len(bad):
            raise DataError(
                f"{lab_path}: label {labels[bad[0]]} at item {bad[0]} is out of range "
                f"[0, {len(FASHION_CLASSES)})"
            )
        while len(_FASHION_MEMORY) >= 2:  # keep at most the two splits of one folder
            _FASHION_MEMORY.pop(next(iter(_FASHION_MEMORY)))
        _FASHION_MEMORY[key] = (images, labels)
    return images, labels, ",".join(stamp)


def _fashion_title(label: int, reveal: bool, rng: np.random.Generator) -> str:
    shared = _FASHION_SHARED[label]
    w1, w2 = rng.choice(len(shared), size=2, replace=False)
    descr = f"{shared[w1]} {shared[w2]}"
    if reveal:
        kws = _FASHION_KEYWORDS[label]
        noun = kws[rng.integers(len(kws))]
    else:
        noun = _FASHION_NOUNS[rng.integers(len(_FASHION_NOUNS))]
    brand = _FASHION_BRANDS[rng.integers(len(_FASHION_BRANDS))]
    color = _FASHION_COLORS[rng.integers(len(_FASHION_COLORS))]
    who = _FASHION_WHO[rng.integers(len(_FASHION_WHO))]
    tail = _FASHION_TAIL[rng.integers(len(_FASHION_TAIL))]
    if rng.random() < 0.5:
        text = f"{brand} {who} {descr} {noun} in {color} {tail}"
    else:
        text = f"{who} {color} {noun}, {descr}, by {brand} {tail}"
    return " ".join(text.replace(" ,", ",").split()).strip(", ")


def _stratified_subsample(
    labels: np.ndarray, n: int, num_classes: int, rng: np.random.Generator, where: str
) -> np.ndarray:
    want = np.bincount(_stratified_labels(n, num_classes, rng), minlength=num_classes)
    picked = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if want[c] > len(idx):
            raise ConfigError(
                f"{where}: asked for {n} samples ({want[c]} of class {c}), but the file has "
                f"only {len(idx)} of that class"
            )
        picked.append(rng.choice(idx, size=want[c], replace=False))
    return rng.permutation(np.concatenate(picked)).astype(np.int64)


class FashionDataset(_ArrayDataset):
    """A seeded, stratified Fashion-MNIST subsample with generated product titles.

    Extra attributes: ``source_indices`` (each sample's position in its IDX file; train
    samples come from ``train-*``, test samples from ``t10k-*``) and ``reveal``.
    """

    def __init__(self, split: str = "train", *, seed: int = 0, config: FashionConfig | None = None):
        self.split = _check_split(split)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed: expected an integer, got {seed!r}")
        self.seed = int(seed)
        self.config = config if config is not None else FashionConfig()
        self.info = DatasetInfo(
            "fashion", "single_label", list(FASHION_CLASSES), "accuracy", ["accuracy"]
        )
        data_dir = Path(self.config.data_dir).expanduser()
        all_images, all_labels, stamp = _read_fashion_split(data_dir, split)
        n = self.config.n_train if split == "train" else self.config.n_test
        root = np.random.SeedSequence([self.seed, 0xFA5, 0 if split == "train" else 1])
        sub_rng, txt_rng = (np.random.default_rng(s) for s in root.spawn(2))
        option = "n_train" if split == "train" else "n_test"
        idx = _stratified_subsample(all_labels, n, len(FASHION_CLASSES), sub_rng, option)
        self.source_indices = idx
        self.images = all_images[idx]
        self.labels = all_labels[idx]
        self.reveal = txt_rng.random(n) < self.config.text_signal
        self.texts = [
            _fashion_title(int(y), bool(r), txt_rng) for y, r in zip(self.labels, self.reveal)
        ]
        key = _digest(
            {
                "version": _FASHION_VERSION,
                "seed": self.seed,
                "n": n,
                "text_signal": self.config.text_signal,
                "files": stamp,
            }
        )
        self._fingerprint = f"fashion:{split}:{n}:{key}"


# ---------------------------------------------------------------------------------------
# factory
# ---------------------------------------------------------------------------------------

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
