"""The ``fashion`` built-in dataset (Fashion-MNIST + generated titles); see :mod:`balgrad.data.readers._builtin`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balgrad.data._base import IMAGE_TEXT
from balgrad.data.readers._builtin_common import (
    _FASHION_VERSION,
    Count,
    Fraction,
    _ArrayDataset,
    _digest,
    _stratified_labels,
)
from balgrad.data.readers._idx import read_idx
from balgrad.errors import ConfigError, DataError
from balgrad.registry import validated

DEFAULT_FASHION_DIR = "/usr/share/datasets/fashion-mnist"

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


@validated
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

    n_train: Count = 5000
    n_test: Count = 2000
    text_signal: Fraction = 0.5
    data_dir: str | Path = DEFAULT_FASHION_DIR


def _fashion_file(data_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"{data_dir / (stem + '.gz')}: Fashion-MNIST file not found (nor {stem})")


_FASHION_MEMORY: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _read_fashion_split(
    data_dir: Path, split: str
) -> tuple[np.ndarray, np.ndarray, str, list[Path]]:
    """The split's images and labels, the files' ``name:size`` stamp (in the fingerprint)
    and the two files (their content goes into feature-cache keys)."""
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
    stamp, key = [], []
    for p in (img_path, lab_path):
        st = p.stat()
        stamp.append(f"{p.name}:{st.st_size}")
        # the memory copy is used while neither file was rewritten, touched or replaced
        key.append((str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    key = tuple(key)
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
    return images, labels, ",".join(stamp), [img_path, lab_path]


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

    Args:
        split: ``"train"`` or ``"test"``.
        seed: The subsample's seed.
        config: The :class:`FashionConfig` (default: its defaults).

    Raises:
        ConfigError: A bad split or seed.
        DataError: The Fashion-MNIST files are missing or damaged.
    """

    def __init__(self, split: str = "train", *, seed: int = 0, config: FashionConfig | None = None):
        config = config if config is not None else FashionConfig()
        self._start("fashion", split, seed, config, FASHION_CLASSES, IMAGE_TEXT)
        data_dir = Path(self.config.data_dir).expanduser()
        all_images, all_labels, stamp, self._files = _read_fashion_split(data_dir, split)
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

    def content_files(self) -> list[Path]:
        """The two IDX files (the fingerprint holds their sizes, not their content)."""
        return list(self._files)
