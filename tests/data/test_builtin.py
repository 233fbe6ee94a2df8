"""The built-in datasets: digits (generated from scikit-learn's real digits) and fashion (IDX)."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from balgrad.data._base import Example, MultimodalDataset
from balgrad.data.readers import _digits as digits
from balgrad.data.readers import _fashion as fashion
from balgrad.data.readers._builtin import (
    DEFAULT_FASHION_DIR,
    DIGITS_CLASSES,
    DigitsConfig,
    DigitsDataset,
    FashionConfig,
    FashionDataset,
    load_builtin,
    read_idx,
)
from balgrad.errors import ConfigError, DataError

SMALL = {"n_train": 600, "n_test": 300}


@pytest.fixture(scope="module")
def small_digits() -> tuple[DigitsDataset, DigitsDataset]:
    return load_builtin("digits", "train", **SMALL), load_builtin("digits", "test", **SMALL)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


# ------------------------------------------------------------------------- digits


def test_digits_default_sizes_and_contract():
    train = load_builtin("digits", "train")
    test = load_builtin("digits", "test")
    assert isinstance(train, MultimodalDataset)
    assert (len(train), len(test)) == (5000, 2000)
    assert train.info.name == "digits" and train.info.task == "single_label"
    assert train.info.num_classes == 10 and train.info.primary_metric == "accuracy"
    assert train.split == "train" and test.split == "test"
    ex = train[3]
    assert isinstance(ex, Example) and ex.index == 3
    assert ex.inputs["image"].shape == (1, 28, 28) and ex.inputs["image"].dtype == torch.float32
    assert float(ex.inputs["image"].min()) >= 0.0 and float(ex.inputs["image"].max()) <= 1.0
    assert ex.label.dtype == torch.int64 and ex.label.dim() == 0
    assert int(ex.label) == int(train.labels[3]) and ex.inputs["text"] == train.texts[3]
    assert isinstance(train.texts, list) and len(train.texts) == 5000
    assert train.images.dtype == np.uint8 and train.images.shape == (5000, 28, 28)
    # balanced classes
    assert np.bincount(train.labels, minlength=10).tolist() == [500] * 10
    with pytest.raises(IndexError):
        train.get(5000)


def test_digits_deterministic_by_seed(small_digits):
    train, _ = small_digits
    cfg = DigitsConfig(**SMALL)
    again = digits._generate_digits(cfg, 0)  # bypasses the in-memory cache
    assert np.array_equal(again["train_images"], train.images)
    assert np.array_equal(again["train_labels"], train.labels)
    assert [str(t) for t in again["train_texts"]] == train.texts
    other = load_builtin("digits", "train", seed=1, **SMALL)
    assert not np.array_equal(other.images, train.images)
    assert other.texts != train.texts
    assert other.fingerprint != train.fingerprint


def test_digits_fingerprint_follows_config(small_digits):
    train, test = small_digits
    assert train.fingerprint != test.fingerprint
    same = load_builtin("digits", "train", **SMALL)
    assert same.fingerprint == train.fingerprint
    for change in (
        {"strength": 0.2},
        {"dominant": "image"},
        {"image_noise": 0.3},
        {"n_train": 601},
    ):
        ds = load_builtin("digits", "train", **{**SMALL, **change})
        assert ds.fingerprint != train.fingerprint, change


def test_digits_labels_and_disjoint_sources(small_digits):
    from sklearn.datasets import load_digits

    train, test = small_digits
    target = load_digits().target
    for ds in (train, test):
        assert ds.labels.dtype == np.int64
        assert ds.labels.min() >= 0 and ds.labels.max() < len(DIGITS_CLASSES)
        assert set(ds.labels.tolist()) == set(range(10))
        # every sample is an augmentation of a real digit of its own class
        assert np.array_equal(target[ds.sources], ds.labels)
    assert not set(train.sources.tolist()) & set(test.sources.tolist())
    # source digits are used evenly: 300 test samples from ~540 test sources are distinct
    assert len(set(test.sources.tolist())) == len(test)
    full_train, full_test = load_builtin("digits", "train"), load_builtin("digits", "test")
    pool_train, pool_test = set(full_train.sources.tolist()), set(full_test.sources.tolist())
    assert not pool_train & pool_test
    assert len(pool_train | pool_test) == len(target)  # every real digit is used
    assert 0.25 < len(pool_test) / len(target) < 0.35


def test_digits_captions_reveal_class_only_sometimes(small_digits):
    train, _ = small_digits
    names = set(DIGITS_CLASSES)
    p = DigitsConfig().resolved_text_signal
    assert abs(train.reveal.mean() - p) < 0.05
    for text, label, reveal in zip(train.texts, train.labels, train.reveal):
        found = _words(text) & names
        if reveal:
            assert found == {DIGITS_CLASSES[label]}, text
        else:
            assert not found, text
            assert set(digits._DIGIT_CLASS_SHAPES[label]) & _words(text), text


def test_digits_each_modality_carries_signal():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    opts = {"n_train": 1000, "n_test": 400, "strength": 0.0}  # text_signal 0.85
    train = load_builtin("digits", "train", **opts)
    test = load_builtin("digits", "test", **opts)

    vec = CountVectorizer().fit(train.texts)
    clf = LogisticRegression(max_iter=500).fit(vec.transform(train.texts), train.labels)
    text_acc = clf.score(vec.transform(test.texts), test.labels)
    assert text_acc > 0.8  # chance is 0.1; the best possible is about 0.91

    # without the class word, shape words still narrow it down to 2-3 classes
    hidden = ~test.reveal
    hidden_acc = clf.score(
        vec.transform([t for t, h in zip(test.texts, hidden) if h]), test.labels[hidden]
    )
    assert 0.2 < hidden_acc < 0.8

    def pixels(ds):
        x = torch.from_numpy(ds.images).float().unsqueeze(1) / 255.0
        return torch.nn.functional.avg_pool2d(x, 4).flatten(1).numpy()  # 7x7

    # images of the default (noisier) config, on unseen handwriting
    train = load_builtin("digits", "train", n_train=1000, n_test=400)
    test = load_builtin("digits", "test", n_train=1000, n_test=400)
    clf = LogisticRegression(max_iter=300).fit(pixels(train), train.labels)
    assert clf.score(pixels(test), test.labels) > 0.5  # chance is 0.1


def test_digits_dominance_knob():
    text = DigitsConfig()
    image = DigitsConfig(dominant="image")
    assert text.resolved_text_signal > 0.9 and image.resolved_text_signal < 0.5
    assert image.resolved_image_noise < text.resolved_image_noise
    weak, strong = DigitsConfig(strength=0.0), DigitsConfig(strength=1.0)
    assert weak.resolved_text_signal < strong.resolved_text_signal <= 1.0
    assert weak.resolved_image_noise < strong.resolved_image_noise
    weak_i, strong_i = (
        DigitsConfig(dominant="image", strength=0.0),
        DigitsConfig(dominant="image", strength=1.0),
    )
    assert weak_i.resolved_text_signal > strong_i.resolved_text_signal >= 0.0
    explicit = DigitsConfig(text_signal=0.3, image_noise=0.0)
    assert (explicit.resolved_text_signal, explicit.resolved_image_noise) == (0.3, 0.0)


def test_digits_npz_cache(tmp_path, monkeypatch):
    opts = {"n_train": 50, "n_test": 30}
    first = load_builtin("digits", "train", cache_dir=str(tmp_path), **opts)
    files = list(tmp_path.glob("digits-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(digits, "_DIGITS_MEMORY", {})

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(digits, "_generate_digits", fail)
    again = load_builtin("digits", "train", data_dir=str(tmp_path), **opts)  # data_dir = cache
    assert np.array_equal(first.images, again.images) and first.texts == again.texts
    test = load_builtin("digits", "test", cache_dir=str(tmp_path), **opts)
    assert len(test) == 30


def test_load_builtin_rejects_bad_names_and_options():
    with pytest.raises(ConfigError, match="mnist"):
        load_builtin("mnist", "train")
    with pytest.raises(ConfigError, match="colour"):
        load_builtin("digits", "train", colour="red")
    with pytest.raises(ConfigError, match="strength"):
        load_builtin("digits", "train", strength=1.5)
    with pytest.raises(ConfigError, match="dominant"):
        load_builtin("digits", "train", dominant="audio")
    with pytest.raises(ConfigError, match="n_train"):
        load_builtin("digits", "train", n_train=0)
    with pytest.raises(ConfigError, match="split"):
        load_builtin("digits", "val", **SMALL)
    with pytest.raises(ConfigError, match="text_signal"):
        load_builtin("fashion", "train", text_signal=-0.1)


# ------------------------------------------------------------------------- IDX reader


def _idx_bytes(array: np.ndarray) -> bytes:
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.tobytes()


def test_read_idx_plain_and_gzip(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = tmp_path / "x-idx3-ubyte"
    plain.write_bytes(_idx_bytes(data))
    packed = tmp_path / "x-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(_idx_bytes(data)))
    for path in (plain, packed):
        out = read_idx(path)
        assert out.dtype == np.uint8 and np.array_equal(out, data)
        out[0, 0, 0] = 7  # a writable array
    labels = tmp_path / "y-idx1-ubyte"
    labels.write_bytes(_idx_bytes(np.array([1, 2, 3], dtype=np.uint8)))
    assert read_idx(labels, ndim=1).tolist() == [1, 2, 3]
    with pytest.raises(DataError, match="y-idx1-ubyte.*3 dimension"):
        read_idx(labels, ndim=3)


def test_read_idx_errors_name_the_file(tmp_path):
    data = np.zeros((4, 5, 5), dtype=np.uint8)
    raw = _idx_bytes(data)
    truncated = tmp_path / "short-idx3-ubyte"
    truncated.write_bytes(raw[:-7])
    with pytest.raises(DataError, match="short-idx3-ubyte.*truncated"):
        read_idx(truncated)
    gz_cut = tmp_path / "cut-idx3-ubyte.gz"
    gz_cut.write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(DataError, match="cut-idx3-ubyte.gz"):
        read_idx(gz_cut)
    bad = tmp_path / "magic-idx3-ubyte"
    bad.write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(DataError, match="magic-idx3-ubyte.*magic"):
        read_idx(bad)
    header_cut = tmp_path / "head-idx3-ubyte"
    header_cut.write_bytes(raw[:9])
    with pytest.raises(DataError, match="head-idx3-ubyte.*header"):
        read_idx(header_cut)
    with pytest.raises(DataError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ------------------------------------------------------------------------- fashion


def _fake_fashion(folder: Path, n_train: int = 60, n_test: int = 30) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels  # lets the test match images to labels
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))  # plain


def test_fashion_on_a_tiny_idx_folder(tmp_path):
    _fake_fashion(tmp_path / "fm")
    train = load_builtin("fashion", "train", data_dir=str(tmp_path / "fm"), n_train=40, n_test=20)
    test = load_builtin("fashion", "test", data_dir=str(tmp_path / "fm"), n_train=40, n_test=20)
    assert (len(train), len(test)) == (40, 20)
    assert np.bincount(train.labels, minlength=10).tolist() == [4] * 10
    assert np.array_equal(train.images[:, 0, 0], train.labels)
    ex = test[0]
    assert ex.inputs["image"].shape == (1, 28, 28) and ex.label.dtype == torch.int64
    assert train.info.name == "fashion" and train.info.classes[9] == "Ankle boot"
    again = load_builtin("fashion", "train", data_dir=str(tmp_path / "fm"), n_train=40)
    assert np.array_equal(again.source_indices, train.source_indices)
    assert again.texts == train.texts and again.fingerprint == train.fingerprint
    other = load_builtin("fashion", "train", seed=3, data_dir=str(tmp_path / "fm"), n_train=40)
    assert other.fingerprint != train.fingerprint
    with pytest.raises(ConfigError, match="n_train"):
        load_builtin("fashion", "train", data_dir=str(tmp_path / "fm"), n_train=70)


def test_fashion_missing_or_broken_files(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        FashionDataset("train", config=FashionConfig(data_dir=str(tmp_path / "absent")))
    folder = tmp_path / "fm"
    _fake_fashion(folder)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_builtin("fashion", "test", data_dir=str(folder), n_test=10)
    img = folder / "train-images-idx3-ubyte.gz"
    img.write_bytes(img.read_bytes()[:-40])
    fashion._FASHION_MEMORY.clear()
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_builtin("fashion", "train", data_dir=str(folder), n_train=10)


@pytest.mark.skipif(
    not (Path(DEFAULT_FASHION_DIR) / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_real_files_carry_signal():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    train = load_builtin("fashion", "train", n_train=1000, n_test=400)
    test = load_builtin("fashion", "test", n_train=1000, n_test=400)
    assert (len(train), len(test)) == (1000, 400)
    assert np.bincount(train.labels, minlength=10).tolist() == [100] * 10
    vec = CountVectorizer().fit(train.texts)
    clf = LogisticRegression(max_iter=500).fit(vec.transform(train.texts), train.labels)
    assert clf.score(vec.transform(test.texts), test.labels) > 0.6

    def pixels(ds):
        x = torch.from_numpy(ds.images).float().unsqueeze(1) / 255.0
        return torch.nn.functional.avg_pool2d(x, 4).flatten(1).numpy()  # 7x7

    clf = LogisticRegression(max_iter=200).fit(pixels(train), train.labels)
    assert clf.score(pixels(test), test.labels) > 0.5
    # similar classes share words, so one word seldom gives the class away
    shared = {"shoe", "sole"}
    boots_and_sneakers = [t for t, y in zip(train.texts, train.labels) if y in (7, 9)]
    assert sum(bool(_words(t) & shared) for t in boots_and_sneakers) > len(boots_and_sneakers) / 3
