"""Dataset fingerprints and feature-cache keys survive refactoring.

A fingerprint goes into every feature-cache key built on a dataset: if it changed, every
user's cache would silently be recomputed. The expected values below are the ones the
code of commit f829246 (before the loaders became declarations and ``pipeline.py`` was
split, issue 9) computed on these fixtures, obtained with::

    git archive f829246 | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src python -c 'from balgrad.data.readers._registry_disk import \\
        load_dataset_from_disk as L; print(L(name, "tests/fixtures/" + name, split,
        **options).fingerprint)'

and, for the keys, the file names a pipeline with a frozen ``SmallCNN`` wrote into its
cache at that commit. Besides, the fingerprint and the key are recomputed here
independently from their documented recipes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from balgrad.backbones._base import freeze
from balgrad.backbones._cache import FeatureCache
from balgrad.backbones._small import SmallCNN, SmallTextEncoder
from balgrad.data._impairments import Condition
from balgrad.data._pipeline import InputPipeline
from balgrad.data.readers._builtin import load_builtin
from balgrad.data.readers._registry_disk import load_dataset_from_disk

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# (name, split, options) -> fingerprint computed at commit f829246
AT_F829246 = [
    ("food101", "train", {}, "food101:train:9:3588600b4921aa1d"),
    ("food101", "test", {}, "food101:test:6:50ff89d29a4bb6f9"),
    ("food101", "train", {"check_files": False}, "food101:train:9:6ff195ee83f085e3"),
    ("hateful_memes", "train", {}, "hateful_memes:train:8:b2e971828ec520bb"),
    ("hateful_memes", "val", {}, "hateful_memes:val:6:2c22fb7e4c705349"),
    ("hateful_memes", "val", {"skip_bad": True}, "hateful_memes:val:6:2c22fb7e4c705349"),
    ("hateful_memes", "test", {}, "hateful_memes:test:4:f2641d641e47f524"),
    (
        "hateful_memes",
        "train",
        {"allow_empty_text": True},
        "hateful_memes:train:8:0a2113e03d269469",
    ),
    ("mmimdb", "train", {}, "mmimdb:train:10:18d930f4d7267b82"),
    ("mmimdb", "val", {}, "mmimdb:val:5:cbe238897ec802be"),
    ("mmimdb", "test", {}, "mmimdb:test:5:bcbefa3b9bf61c8b"),
    ("mmimdb", "train", {"plot": "first"}, "mmimdb:train:10:5d1519ba698338a6"),
    ("memotion", "train", {}, "memotion:train:16:7cbfe8ffb1c28458"),
    ("memotion", "test", {}, "memotion:test:4:66793401a23591e5"),
    ("memotion", "val", {"val_fraction": 0.2, "seed": 3}, "memotion:val:4:d81fb29df9a7672d"),
    ("cub", "train", {}, "cub:train:6:b942f0310046ede4"),
    ("cub", "test", {}, "cub:test:6:4cbdea3f296b4486"),
    ("cub", "train", {"sentence": "random", "seed": 2}, "cub:train:6:9a492ce78947ae8b"),
    ("cub", "test", {"sentence": 1}, "cub:test:6:4c0dd1668bb5c353"),
    ("generic", "train", {}, "generic:train:8:106d291b6531ac9a"),
    ("generic", "val", {}, "generic:val:4:2aea9c7822dfe77a"),
    ("generic", "test", {}, "generic:test:4:5179528ee3b0c51e"),
    (
        "generic",
        "train",
        {"dataset_name": "mine", "task": "single_label"},
        "mine:train:8:106d291b6531ac9a",
    ),
]


@pytest.mark.parametrize("name,split,options,expected", AT_F829246)
def test_fingerprint_equals_the_one_before_the_refactoring(name, split, options, expected):
    assert load_dataset_from_disk(name, FIXTURES / name, split, **options).fingerprint == expected


def _chunks_hash(*chunks: bytes | str) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c.encode() if isinstance(c, str) else c)
        h.update(b"\0")
    return h.hexdigest()


def test_fingerprint_recomputed_from_its_recipe():
    """``name:split:count:hash``: sha256 over the content hash (the split file's bytes, its
    name, the content options) and, per record, relative image path, text, label and
    image file size (docs/datasets.md)."""
    root = FIXTURES / "hateful_memes"
    raw = (root / "train.jsonl").read_bytes()
    content = _chunks_hash(raw, "train.jsonl", json.dumps({"allow_empty_text": False}))
    h = hashlib.sha256(content.encode())
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    for row in rows:
        size = (root / row["img"]).stat().st_size
        h.update(f"{row['img']}\0{row['text']}\0{row['label']}\0{size}\n".encode())
    expected = f"hateful_memes:train:{len(rows)}:{h.hexdigest()[:16]}"
    assert load_dataset_from_disk("hateful_memes", root, "train").fingerprint == expected


def _content_digest(paths: list[Path]) -> str:
    """The documented recipe of ``FileHashes.digest``: sha256 over each file's path
    (relative to the files' common folder) and the sha256 of its bytes, in order."""
    common = Path(os.path.commonpath([p.parent for p in paths]))
    h = hashlib.sha256()
    for p in paths:
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        h.update(f"{p.relative_to(common).as_posix()}\0{sha}\n".encode())
    return h.hexdigest()


def _weights_digest(module) -> str:
    """The documented recipe of ``weights_digest``: sha256 over the state_dict's names,
    dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode() + t.numpy().tobytes())
    return h.hexdigest()


def test_feature_cache_keys_follow_their_recipe(tmp_path):
    ds = load_dataset_from_disk("hateful_memes", FIXTURES / "hateful_memes", "test")
    torch.manual_seed(0)
    image = freeze(SmallCNN(out_dim=4, image_size=16, width=4))
    text = SmallTextEncoder.fit(ds.texts, out_dim=4, embed_dim=4, hidden=4)  # live: no key
    pipe = InputPipeline(
        {"image": image, "text": text}, cache=FeatureCache(tmp_path), progress=False
    )
    for condition in (
        Condition(),
        Condition("noisy_image", level=0.3, seed=2),
        Condition("missing_image", ratio=0.5, seed=1),  # blank shortcut: reuses "full"
    ):
        list(pipe.loader(ds, condition, batch_size=4))
    written = sorted(p.stem for p in tmp_path.rglob("*.safetensors"))
    # the key recipe: the sorted parts dataset, tower, encoder identity, condition, missing
    # and content (the sha256 of the images' bytes: the fingerprint holds only their sizes)
    parts = dict(
        dataset=ds.fingerprint,
        tower="image",
        encoder=image.identity,
        weights=_weights_digest(image),  # a SmallCNN's identity does not pin its weights
        missing="input",
        content=_content_digest(ds.image_paths),
    )
    recomputed = sorted(
        hashlib.sha256(
            json.dumps({**parts, "condition": c}, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        for c in ("full", "noisy_image@0.3#seed2")
    )
    assert written == recomputed
    # Changed on purpose (issue 17): the keys of a dataset whose images are files now
    # include the sha256 of their content, so an image replaced by another of the same
    # size is a miss; and those of an encoder whose identity does not pin its weights (a
    # frozen SmallCNN, randomly initialised per seed) the sha256 of its weights. At
    # commit f829246 (and until this change) the two files were 9d77e835...b9c6e and
    # f0770587...06983; those entries are no longer found (each is encoded once more).
    # Keys of datasets without content_files() (digits, a user's own dataset class) with
    # encoders whose identity pins the weights (the default benchmark's) are unchanged:
    # see the next test.
    assert written == [
        "023d415a55c2718444fcf2aa9e7473f82e09342ae5d8cfc72355b4903dd530f2",
        "3b32264b8120b9452bed938df598cfbf64b2869d73cf451762c46c03b32b53ef",
    ]


class PinnedCNN(SmallCNN):
    """A SmallCNN standing in for an encoder whose identity pins its weights (as the
    default benchmark's EfficientNet-Lite0 and MiniLM, by package version)."""

    identity_covers_weights = True


def test_digits_feature_cache_keys_are_unchanged(tmp_path):
    """A generated dataset has no content_files(): its fingerprint (a digest of every
    generation option) is its content; with an encoder whose identity pins its weights
    its keys are those of commit 94872c8, before the content and weight digests
    (obtained as in the module docstring, with this test's code)."""
    from balgrad.backbones._pretrained_pip import EfficientNetLite0Encoder, MiniLMTextEncoder

    assert EfficientNetLite0Encoder.identity_covers_weights
    assert MiniLMTextEncoder.identity_covers_weights
    ds = load_builtin("digits", "test", n_train=20, n_test=10, image_size=16)
    torch.manual_seed(0)
    image = freeze(PinnedCNN(out_dim=4, image_size=16, width=4))
    text = SmallTextEncoder.fit(ds.texts, out_dim=4, embed_dim=4, hidden=4)
    pipe = InputPipeline(
        {"image": image, "text": text}, cache=FeatureCache(tmp_path), progress=False
    )
    list(pipe.loader(ds, Condition("noisy_image", level=0.3, seed=2), batch_size=4))
    assert sorted(p.stem for p in tmp_path.rglob("*.safetensors")) == [
        "a8186af7b78f6abad02f590f02bbb67fd41bd4270abee5984dfa81e815e129d6"
    ]
