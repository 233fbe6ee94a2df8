"""The ``digits`` built-in dataset; see :mod:`balgrad.data.readers._builtin`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from balgrad.data._base import IMAGE_TEXT
from balgrad.data._cache_files import cached_npz_arrays, check_array_layout, load_npz_checked
from balgrad.data.readers._builtin_common import (
    _DIGITS_VERSION,
    _ArrayDataset,
    _digest,
    _stratified_labels,
)
from balgrad.data.readers._digits_options import _DigitsOptions
from balgrad.errors import DataError
from balgrad.registry import validated

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


@validated
@dataclass(frozen=True)
class DigitsConfig(_DigitsOptions):
    """Options of the ``digits`` dataset (all of them are :func:`load_builtin` options).

    The modality-balance knob:

    - ``dominant``: ``"text"`` (default) or ``"image"`` — the modality made easier to
      learn, which a jointly trained model comes to lean on.
    - ``strength`` in [0, 1] (default 0.9): how strongly it dominates. It sets the two
      signal levels below when they are left as ``None``:

      ===============  ==========================  ==========================
      dominant         ``text_signal``             ``image_noise``
      ===============  ==========================  ==========================
      ``"text"``       0.85 + 0.14 * strength      0.15 * strength
      ``"image"``      0.50 - 0.40 * strength      0.05 * (1 - strength)
      ===============  ==========================  ==========================

      The defaults (text, 0.9) give ``text_signal`` 0.976 and ``image_noise`` 0.135,
      chosen by the criteria of ``docs/default-benchmark.md`` for the default towers
      (EfficientNet-Lite0 at 112 px + MiniLM, frozen; concat fusion, Adam 1e-3, batch 64,
      8 epochs, seeds 0-4): images alone reach ~72%, text alone ~98%; the joint model
      scores ~98% on full inputs, ~95% with the image missing and ~67% with the text
      missing (Delta-Gap ~28). At strength 0.5 the same towers are balanced
      (Delta-Gap < 1); at 0.7 the gap is ~12 and varies with the seed.
      With towers trained from scratch (the ``digits-scratch`` preset: SmallCNN width 16
      without normalisation layers, 28x28, plus the word-level text encoder, strength
      0.7) text dominates completely: images alone reach ~74%, text alone ~97%, but
      the joint model's image tower never leaves chance (Delta-Gap ~86).
      ``dominant="image"`` with scratch towers needs an image tower that learns faster
      than the text one: with ``--backbone-option image.norm=batch`` (strength 0.8)
      joint training scores ~70% with the text missing and ~32% with the image
      missing; a batch-normalised CNN's response to an all-black "missing" image is out
      of distribution, so score such runs with ``missing="embedding"`` as well.

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

    cache_dir: str | None = None

    @property
    def resolved_text_signal(self) -> float:
        """The share of captions with their class word: ``text_signal``, or what ``strength`` sets."""
        if self.text_signal is not None:
            return float(self.text_signal)
        s = float(self.strength)
        return 0.85 + 0.14 * s if self.dominant == "text" else 0.50 - 0.40 * s

    @property
    def resolved_image_noise(self) -> float:
        """The image noise σ: ``image_noise``, or what ``strength`` sets."""
        if self.image_noise is not None:
            return float(self.image_noise)
        s = float(self.strength)
        return 0.15 * s if self.dominant == "text" else 0.05 * (1.0 - s)

    def content_parts(self, seed: int) -> dict:
        """Everything that determines the generated data.

        Args:
            seed: The generation seed.

        Returns:
            The parts, JSON-serialisable.
        """
        return {
            "version": _DIGITS_VERSION,
            "seed": int(seed),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "image_size": self.image_size,
            "text_signal": round(self.resolved_text_signal, 6),
            "image_noise": round(self.resolved_image_noise, 6),
            "test_source_fraction": self.test_source_fraction,
        }

    def content_key(self, seed: int) -> str:
        """A digest of :meth:`content_parts` (it names the ``.npz`` cache file).

        Args:
            seed: The generation seed.

        Returns:
            The hex digest.
        """
        return _digest(self.content_parts(seed))


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
    x = torch.from_numpy(sources).unsqueeze(1)  # [N, 1, 8, 8]
    inner = max(8, int(round(size * 20 / 28)))  # the digit's box, MNIST-like margins
    x = F.interpolate(x, size=(inner, inner), mode="bicubic", align_corners=False).clamp(0, 1)
    pad = size - inner
    x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    x = _random_affine(x, noise, rng)
    x = _stroke_and_contrast(x, rng)
    if noise > 0.2:  # occluding blotches (only for harder settings)
        x = torch.maximum(x, _blotches(len(sources), size, noise, rng).unsqueeze(1))
    if noise > 0:
        x = x + noise * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
    x = x.clamp(0, 1)
    return (x.squeeze(1).numpy() * 255.0 + 0.5).astype(np.uint8)


def _random_affine(x: torch.Tensor, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """Each image ``[N, 1, S, S]`` rotated, scaled (anisotropically), sheared and shifted,
    the more widely the more ``noise``."""
    n = len(x)
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
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _stroke_and_contrast(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each image's strokes thickened (max-pool), thinned (min-pool) or kept, blended
    partially; then its contrast stretched and a random gamma and gain applied."""
    n = len(x)
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    mode = torch.from_numpy(rng.integers(0, 3, n)).view(n, 1, 1, 1)
    amount = torch.from_numpy(rng.uniform(0.3, 1.0, n).astype(np.float32)).view(n, 1, 1, 1)
    x = torch.where(mode == 1, x + amount * (thick - x), x)
    x = torch.where(mode == 2, x + amount * (thin - x), x)
    peak = x.flatten(1).amax(1).clamp_min(1e-3).view(n, 1, 1, 1)
    x = (x / peak).clamp(0, 1)
    gamma = torch.from_numpy(rng.uniform(0.6, 1.5, n).astype(np.float32)).view(n, 1, 1, 1)
    gain = torch.from_numpy(rng.uniform(0.7, 1.0, n).astype(np.float32)).view(n, 1, 1, 1)
    return gain * x.pow(gamma)


def _blotches(n: int, size: int, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """``[n, size, size]``: up to 3 discs of random grey per image, more with more noise."""
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
    return torch.from_numpy(blot)


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
            if not len(where):  # fewer samples than classes: this class has none
                continue
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
# the .npz also holds the content parts it was generated from, checked on read
_NUM_SOURCES = 1797  # scikit-learn's load_digits()


def _digits_arrays(config: DigitsConfig, seed: int) -> dict[str, np.ndarray]:
    """The generated arrays: from memory, from the ``.npz`` cache in ``cache_dir`` (an
    unreadable or mismatched file is a miss with a warning and is overwritten) or newly
    generated (a cache folder that cannot be written: one warning, memory only)."""
    return cached_npz_arrays(
        "digits",
        config,
        seed,
        _DIGITS_MEMORY,
        lambda: _generate_digits(config, seed),
        lambda path: _read_npz(path, config, seed),
    )


def _read_npz(path: Path, config: DigitsConfig, seed: int) -> dict[str, np.ndarray]:
    """The arrays of a digits ``.npz``, checked against what ``config`` and ``seed``
    generate: the content parts it records, every array's name, dtype and shape, and the
    ranges of labels and source indices. Raises ``ValueError`` naming the difference."""
    arrays = load_npz_checked(path, config.content_parts(seed), " (written by an older balgrad?)")
    size = config.image_size
    expected = {}
    for split, n in (("train", config.n_train), ("test", config.n_test)):
        expected[f"{split}_images"] = ("u", 1, (n, size, size))
        expected[f"{split}_labels"] = ("i", 8, (n,))
        expected[f"{split}_sources"] = ("i", 8, (n,))
        expected[f"{split}_texts"] = ("U", None, (n,))
        expected[f"{split}_reveal"] = ("b", 1, (n,))
    check_array_layout(arrays, expected)
    for split in ("train", "test"):
        for name, limit in (("labels", len(DIGITS_CLASSES)), ("sources", _NUM_SOURCES)):
            a = arrays[f"{split}_{name}"]
            if a.size and (a.min() < 0 or a.max() >= limit):
                raise ValueError(f"{split}_{name} holds values outside [0, {limit})")
    return arrays


def _take_split(dataset: _ArrayDataset, arrays: dict[str, np.ndarray], split: str) -> None:
    """Give ``dataset`` the generated digits of ``split``: ``images``, ``labels``,
    ``sources``, ``reveal`` and ``texts``."""
    dataset.images = arrays[f"{split}_images"]
    dataset.labels = arrays[f"{split}_labels"]
    dataset.sources = arrays[f"{split}_sources"]  # type: ignore[attr-defined]
    dataset.reveal = arrays[f"{split}_reveal"]  # type: ignore[attr-defined]
    dataset.texts = [str(t) for t in arrays[f"{split}_texts"]]


class DigitsDataset(_ArrayDataset):
    """Augmented real handwritten digits with generated captions (see :class:`DigitsConfig`).

    Extra attributes: ``sources`` (index of each sample's source digit in scikit-learn's
    ``load_digits()``; the train and test pools are disjoint) and ``reveal`` (whether
    each caption contains its class-revealing word).

    Args:
        split: ``"train"`` or ``"test"``.
        seed: The generation seed.
        config: The :class:`DigitsConfig` (default: its defaults).

    Raises:
        ConfigError: A bad split or seed.
    """

    def __init__(self, split: str = "train", *, seed: int = 0, config: DigitsConfig | None = None):
        config = config if config is not None else DigitsConfig()
        self._start("digits", split, seed, config, DIGITS_CLASSES, IMAGE_TEXT)
        _take_split(self, _digits_arrays(self.config, self.seed), split)
        self._fingerprint = self._keyed_fingerprint()
