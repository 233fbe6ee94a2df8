"""Caches are keyed by content, checked on read and degrade when they cannot be written
(issue 17, items 3, 9 and 10): the frozen-feature cache, its file-hash index and the
digits ``.npz`` cache."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from balgrad.backbones._cache import FeatureCache
from balgrad.data._cache_files import CacheWarning
from balgrad.data._impairments import Condition
from balgrad.data._pipeline import InputPipeline
from balgrad.data.readers import _digits as digits
from balgrad.data.readers._builtin import load_builtin
from balgrad.data.readers._registry_disk import load_dataset_from_disk
from balgrad.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOISY = Condition("noisy_image", level=0.3, seed=2)


class MeanColour(nn.Module):
    """A frozen image encoder: the mean of each colour channel (black -> zeros)."""

    trainable = False
    identity = "mean-colour"

    def __init__(self, channels: int = 3):
        super().__init__()
        self.out_dim = channels

    def preprocess(self, image):
        return image

    def forward(self, x):
        return x.mean(dim=(2, 3))


class LiveText(nn.Module):
    trainable = True
    out_dim = 1
    identity = "live-text"
    vocab_size = 50
    special_ids = (0,)

    def tokenize(self, texts):
        ids = torch.tensor([[len(t) % 49 + 1] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def forward(self, tokens):
        return tokens["input_ids"].float()


def pipeline(cache, channels: int = 3) -> InputPipeline:
    return InputPipeline(
        {"image": MeanColour(channels), "text": LiveText()}, cache=cache, progress=False
    )


def image_features(ds, cache, condition=None) -> tuple[torch.Tensor, InputPipeline]:
    pipe = pipeline(cache, channels=ds[0].inputs["image"].shape[0])
    return pipe.features(ds, condition or Condition(), "image"), pipe


def cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, CacheWarning)]


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A private copy of the hateful_memes fixture, to change its files."""
    return Path(shutil.copytree(FIXTURES / "hateful_memes", tmp_path / "hm"))


def load(root: Path, **options):
    return load_dataset_from_disk("hateful_memes", root, "test", **options)


def replace_keeping_size_and_mtime(path: Path) -> None:
    """Overwrite ``path`` in place with a black image of the same byte size (padded after
    PNG's end chunk, which readers ignore) and the same mtime: only content and ctime differ."""
    st = path.stat()
    with Image.open(path) as im:
        size = im.size
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, "PNG")
    data = buf.getvalue()
    assert len(data) <= st.st_size
    path.write_bytes(data + b"\0" * (st.st_size - len(data)))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


# -- item 3: keyed by content ---------------------------------------------------------


def test_an_image_replaced_by_one_of_the_same_size_and_mtime_is_a_miss(data_dir, tmp_path):
    before, _ = image_features(load(data_dir), FeatureCache(tmp_path / "cache"))
    first = load(data_dir).image_paths[0]
    replace_keeping_size_and_mtime(first)
    ds = load(data_dir)
    assert ds.fingerprint == load(FIXTURES / "hateful_memes").fingerprint  # sizes only
    after, pipe = image_features(ds, FeatureCache(tmp_path / "cache"))
    assert pipe.encoded == 1  # not served from the stale entry
    fresh, _ = image_features(ds, None)
    assert torch.equal(after, fresh)
    assert torch.equal(after[0], torch.zeros(3)) and not torch.equal(before[0], after[0])
    assert torch.equal(after[1:], before[1:])


def test_unchanged_files_are_found_by_stat_key_not_read_again(data_dir, tmp_path):
    root = tmp_path / "cache"
    image_features(load(data_dir), FeatureCache(root))
    again = FeatureCache(root)
    _, pipe = image_features(load(data_dir), again)
    assert (again.file_hashes.hashed, pipe.encoded, again.hits) == (0, 0, 1)
    # a file touched (new mtime) but not changed is hashed again and still hits
    path = load(data_dir).image_paths[2]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    touched = FeatureCache(root)
    _, pipe = image_features(load(data_dir), touched)
    assert (touched.file_hashes.hashed, pipe.encoded, touched.hits) == (1, 0, 1)


def test_an_entry_under_another_entrys_name_is_a_miss_with_a_warning(data_dir, tmp_path):
    ds, root = load(data_dir), tmp_path / "cache"
    full, _ = image_features(ds, FeatureCache(root))
    noisy, _ = image_features(ds, FeatureCache(root), NOISY)
    assert full.shape == noisy.shape and not torch.equal(full, noisy)
    by_condition = {}
    for p in root.rglob("*.safetensors"):
        by_condition[json.loads(p.with_suffix(".json").read_text())["condition"]] = p
    shutil.copyfile(by_condition["noisy_image@0.3#seed2"], by_condition["full"])
    with pytest.warns(CacheWarning, match=r"stored for another request \(condition"):
        served, pipe = image_features(ds, FeatureCache(root))
    assert pipe.encoded == 1 and torch.equal(served, full)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        repaired, pipe = image_features(ds, FeatureCache(root))  # overwritten: a hit
    assert pipe.encoded == 0 and torch.equal(repaired, full)


def test_an_entry_of_another_shape_or_dtype_is_a_miss_with_a_warning(tmp_path):
    cache = FeatureCache(tmp_path)
    meta = {"dataset": "d", "condition": "full"}
    key = cache.key(**meta)
    cache.put(key, torch.ones(4, 2), meta)
    with pytest.warns(CacheWarning, match=r"shape \[4, 2\], not \[5, 2\]"):
        assert cache.get(key, expect={**meta, "shape": [5, 2]}) is None
    cache.put(key, torch.ones(5, 2, dtype=torch.float64), meta)
    with pytest.warns(CacheWarning, match="dtype float64, not float32"):
        assert cache.get(key, expect={**meta, "shape": [5, 2], "dtype": "float32"}) is None
    assert (cache.hits, cache.misses, cache.corrupt) == (0, 2, 2)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(b"\x00garbage" * 10)


def _flipped(p: Path) -> None:  # one byte of the features changed: still parses
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF
    p.write_bytes(bytes(raw))


def _meta_a_list(p: Path) -> None:
    save_file({"features": torch.ones(6, 3)}, str(p), metadata={"balgrad_meta": "[1, 2]"})


def _no_features(p: Path) -> None:
    save_file({"other": torch.ones(6, 3)}, str(p), metadata={"balgrad_meta": "{}"})


@pytest.mark.parametrize(
    "damage", [_empty, _truncated, _garbage, _flipped, _meta_a_list, _no_features]
)
def test_a_damaged_entry_is_a_miss_with_a_warning_and_is_rebuilt(data_dir, tmp_path, damage):
    ds, root = load(data_dir), tmp_path / "cache"
    good, _ = image_features(ds, FeatureCache(root))
    (entry,) = root.rglob("*.safetensors")
    damage(entry)
    with pytest.warns(CacheWarning, match=f"feature cache file {entry}"):
        served, pipe = image_features(ds, FeatureCache(root))
    assert pipe.encoded == 1 and torch.equal(served, good)
    cache = FeatureCache(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        image_features(ds, cache)
    assert cache.hits == 1


def test_an_entry_from_before_the_checksum_is_served_when_its_metadata_matches(tmp_path):
    """Entries written before ``features_sha256`` existed (e.g. of the digits dataset,
    whose keys did not change) stay valid."""
    cache = FeatureCache(tmp_path)
    meta = {"dataset": "d", "condition": "full", "shape": [2, 3], "dtype": "float32"}
    key = cache.key(dataset="d", condition="full")
    cache.path(key).parent.mkdir(parents=True)
    feats = torch.arange(6.0).view(2, 3)
    save_file({"features": feats}, str(cache.path(key)), {"balgrad_meta": json.dumps(meta)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert torch.equal(cache.get(key, expect=meta), feats)


@pytest.mark.parametrize(
    "index", [b"{not json", b"[]", b'{"version": 1, "folder": "/elsewhere", "files": {}}']
)
def test_a_damaged_file_hash_index_is_rebuilt_with_a_warning(data_dir, tmp_path, index):
    root = tmp_path / "cache"
    image_features(load(data_dir), FeatureCache(root))
    (index_file,) = (root / "files").glob("*.json")
    index_file.write_bytes(index)
    cache = FeatureCache(root)
    with pytest.warns(CacheWarning, match=f"file-hash index {index_file} is unusable"):
        _, pipe = image_features(load(data_dir), cache)
    assert pipe.encoded == 0 and cache.file_hashes.hashed == len(load(data_dir))
    again = FeatureCache(root)
    image_features(load(data_dir), again)
    assert again.file_hashes.hashed == 0  # rewritten


def test_a_missing_image_is_named_by_the_encoding_not_the_hashing(data_dir, tmp_path):
    ds = load(data_dir, check_files=False)
    ds.image_paths[1].unlink()
    with pytest.raises(DataError, match=str(ds.image_paths[1])):
        image_features(ds, FeatureCache(tmp_path / "cache"))


def test_a_subset_keys_on_the_content_of_its_own_images(data_dir, tmp_path):
    from balgrad.data._splits import SubsetDataset

    ds = load(data_dir)
    sub = SubsetDataset(ds, [0, 2], "val")
    assert sub.content_files() == [ds.image_paths[0], ds.image_paths[2]]
    before, _ = image_features(sub, FeatureCache(tmp_path / "cache"))
    replace_keeping_size_and_mtime(ds.image_paths[2])
    after, pipe = image_features(
        SubsetDataset(load(data_dir), [0, 2], "val"), FeatureCache(tmp_path / "cache")
    )
    assert pipe.encoded == 1 and torch.equal(after[1], torch.zeros(3))


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_fashion_files_rewritten_with_the_same_size_are_a_miss(tmp_path):
    folder = tmp_path / "fm"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 20)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    opts = {"data_dir": str(folder), "n_train": 10, "n_test": 10}
    ds = load_builtin("fashion", "test", **opts)
    assert ds.content_files() == [
        folder / "t10k-images-idx3-ubyte",
        folder / "t10k-labels-idx1-ubyte",
    ]
    before, _ = image_features(ds, FeatureCache(tmp_path / "cache"))
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((20, 28, 28)))  # same size
    ds = load_builtin("fashion", "test", **opts)
    after, pipe = image_features(ds, FeatureCache(tmp_path / "cache"))
    assert pipe.encoded == 1 and torch.equal(after, torch.zeros(10, 1))
    assert not torch.equal(before, after)


def test_a_subset_of_fashion_keys_on_the_whole_files_it_is_decoded_from(tmp_path):
    """The validation split carved from train (a SubsetDataset) shares train's two IDX
    files: they are not one file per example, so no index picks among them."""
    from balgrad.data._splits import train_val_split

    folder = tmp_path / "fm"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 20), ("t10k", 20)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    train = load_builtin("fashion", "train", data_dir=str(folder), n_train=20, n_test=10)
    fit, val = train_val_split(train, 0.5, seed=0)
    assert val.content_files() == fit.content_files() == train.content_files()
    before, _ = image_features(val, FeatureCache(tmp_path / "cache"))
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((20, 28, 28)))  # same size
    train = load_builtin("fashion", "train", data_dir=str(folder), n_train=20, n_test=10)
    after, pipe = image_features(
        train_val_split(train, 0.5, seed=0)[1], FeatureCache(tmp_path / "cache")
    )
    assert pipe.encoded == 1 and not torch.equal(before, after)


def test_frozen_random_towers_of_two_seeds_do_not_share_features(tmp_path):
    """A frozen SmallCNN's identity names its shape, not its (seeded) random weights: the
    cache and the in-process store key on the weights' sha256 as well."""
    from balgrad.backbones._base import freeze
    from balgrad.backbones._small import SmallCNN

    ds = load_builtin("digits", "test", n_train=20, n_test=10, image_size=16)
    memory: dict = {}
    features = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        image = freeze(SmallCNN(out_dim=4, image_size=16, width=4))
        pipe = InputPipeline(
            {"image": image, "text": LiveText()},
            cache=FeatureCache(tmp_path),
            memory=memory,
            progress=False,
        )
        features.append(pipe.features(ds, Condition(), "image"))
        assert pipe.encoded == 1
        with torch.no_grad():
            own = image(
                torch.stack([image.preprocess(ds[i].inputs["image"]) for i in range(len(ds))])
            )
        assert torch.allclose(features[-1], own)
    assert not torch.equal(*features)


# -- item 10: a cache that cannot be written --------------------------------------------


def read_only_folder(tmp_path: Path) -> Path:
    """A folder where no file can be created: permission bits, or for root (whom they do
    not stop) a kernel file system."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "cache"
    for folder in (Path("/sys/kernel"), Path("/sys")):
        try:
            os.close(os.open(folder / "balgrad-probe", os.O_CREAT | os.O_WRONLY))
        except OSError:
            return folder / "balgrad-cache"
        os.unlink(folder / "balgrad-probe")
    pytest.skip("running as root with no read-only folder to try")


def no_space(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("kind", ["a file", "under a file", "read-only", "full"])
def test_a_feature_cache_that_cannot_be_written_warns_once(data_dir, tmp_path, monkeypatch, kind):
    root = tmp_path / "cache"
    if kind in ("a file", "under a file"):
        root.write_text("not a folder")
        root = root if kind == "a file" else root / "features"
    elif kind == "read-only":
        root = read_only_folder(tmp_path)
    else:
        no_space(monkeypatch)
    ds = load(data_dir)
    cache = FeatureCache(root)
    pipe = pipeline(cache)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = [pipe.features(ds, c, "image") for c in (Condition(), NOISY, Condition())]
    (message,) = cache_warnings(record)
    assert f"feature cache {root} cannot be written" in message and "in memory" in message
    assert pipe.encoded == 2  # the third call came from memory
    for features, condition in zip(got, (Condition(), NOISY)):
        assert torch.equal(features, pipeline(None).features(ds, condition, "image"))
    if kind == "full":
        assert not [p for p in root.rglob("*") if p.is_file()]  # no temp file left behind


@pytest.mark.slow
def test_compare_with_a_cache_dir_that_is_a_file_finishes_with_one_warning(tmp_path):
    from balgrad.cli import main

    def compare(name: str, cache_dir: Path) -> dict:
        argv = [
            "compare", "--dataset", "hateful_memes", "--data-dir", str(FIXTURES / "hateful_memes"),
            "--methods", "joint", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.3",
            "--image-backbone", "cnn", "--backbone-option", "image.finetune=false",
            "--text-backbone", "small",
            "--backbone-option", "image.width=4", "--backbone-option", "image.image_size=16",
            "--embed-dim", "8", "--no-sweep", "--no-progress",
            "--out", str(tmp_path), "--name", name, "--cache-dir", str(cache_dir),
        ]  # fmt: skip
        assert main(argv) == 0
        return json.loads((tmp_path / name / "joint" / "seed0" / "eval.json").read_text())

    afile = tmp_path / "afile"
    afile.write_text("")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        degraded = compare("degraded", afile)
    (message,) = cache_warnings(record)
    assert f"feature cache {afile / 'features'} cannot be written" in message
    assert degraded["conditions"] == compare("cached", tmp_path / "cache")["conditions"]


@pytest.mark.slow
def test_evaluate_with_a_new_cache_folder_rebuilds_a_frozen_random_towers_features(tmp_path):
    """``cache_dir`` is neutral: a frozen SmallCNN is drawn again per seed, as in training,
    and its features are recomputed, not taken from another seed's tower."""
    from balgrad.cli import main

    argv = [
        "compare", "--dataset", "hateful_memes", "--data-dir", str(FIXTURES / "hateful_memes"),
        "--methods", "joint", "--seeds", "0", "1", "--epochs", "1", "--batch-size", "4",
        "--val-fraction", "0.3", "--image-backbone", "cnn",
        "--backbone-option", "image.finetune=false", "--text-backbone", "small",
        "--backbone-option", "image.width=4", "--backbone-option", "image.image_size=16",
        "--embed-dim", "8", "--no-sweep", "--no-progress",
        "--out", str(tmp_path), "--name", "run", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert main(argv) == 0
    run = tmp_path / "run"

    def scores() -> list[dict]:
        return [
            json.loads((run / "joint" / f"seed{s}" / "eval.json").read_text())["conditions"]
            for s in (0, 1)
        ]

    trained = scores()
    shutil.rmtree(tmp_path / "cache")
    assert main(["evaluate", str(run), "--no-sweep", "--no-progress"]) == 0
    assert scores() == trained


# -- items 9 and 10: the digits .npz cache ----------------------------------------------

OPTS = {"n_train": 40, "n_test": 20}


def npz_of(folder: Path) -> Path:
    (path,) = folder.glob("digits-*.npz")
    return path


def _other_seed(p: Path) -> None:  # a well-formed file of another seed under this name
    other = p.parent / "other"
    load_builtin("digits", "train", seed=1, cache_dir=str(other), **OPTS)
    shutil.copyfile(npz_of(other), p)


def _array_missing(p: Path) -> None:
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files if k != "test_texts"}
    np.savez_compressed(p, **arrays)


def _old_format(p: Path) -> None:  # no record of what it was generated from
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
    np.savez_compressed(p, **arrays)


def _wrong_shape(p: Path) -> None:
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["train_images"] = arrays["train_images"][:, :5]
    np.savez_compressed(p, **arrays)


@pytest.mark.parametrize(
    "damage",
    [_empty, _truncated, _garbage, _other_seed, _array_missing, _old_format, _wrong_shape],
)
def test_a_damaged_digits_cache_is_a_miss_with_a_warning_and_is_rewritten(
    tmp_path, monkeypatch, damage
):
    monkeypatch.setattr(digits, "_DIGITS_MEMORY", {})
    good = load_builtin("digits", "train", cache_dir=str(tmp_path), **OPTS)
    path = npz_of(tmp_path)
    damage(path)
    monkeypatch.setattr(digits, "_DIGITS_MEMORY", {})
    with pytest.warns(CacheWarning, match=f"digits cache {path} is unusable"):
        again = load_builtin("digits", "train", cache_dir=str(tmp_path), **OPTS)
    assert np.array_equal(again.images, good.images) and again.texts == good.texts
    monkeypatch.setattr(digits, "_DIGITS_MEMORY", {})
    monkeypatch.setattr(digits, "_generate_digits", lambda *a: pytest.fail("regenerated"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        test = load_builtin("digits", "test", cache_dir=str(tmp_path), **OPTS)
    assert len(test) == OPTS["n_test"]


@pytest.mark.parametrize("kind", ["a file", "read-only", "full"])
def test_a_digits_cache_that_cannot_be_written_warns_once(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(digits, "_DIGITS_MEMORY", {})
    folder = tmp_path / "datasets"
    if kind == "a file":
        folder.write_text("")
    elif kind == "read-only":
        folder = read_only_folder(tmp_path)
    else:
        folder.mkdir()
        no_space(monkeypatch)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        train = load_builtin("digits", "train", cache_dir=str(folder), **OPTS)
        test = load_builtin("digits", "test", cache_dir=str(folder), **OPTS)
    (message,) = cache_warnings(record)
    assert f"digits cache (cache_dir) {folder} cannot be written" in message
    fresh = digits._generate_digits(digits.DigitsConfig(**OPTS), 0)
    assert np.array_equal(train.images, fresh["train_images"]) and len(test) == OPTS["n_test"]
    if kind == "full":
        assert not list(folder.iterdir())  # no temp file left behind
