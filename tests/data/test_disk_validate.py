"""``DiskDataset.validate()``: every record's image header and text, checked before training
(issue 10, item 5); ``balgrad compare`` runs it on the test split before the first epoch."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from balgrad.cli import main
from balgrad.data.disk import _images as images
from balgrad.data.disk._images import header_error
from balgrad.data.readers._registry_disk import DataWarning, load_dataset_from_disk
from balgrad.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = ["cub", "food101", "generic", "hateful_memes", "memotion", "mmimdb"]
SPLITS = {"food101": ("train", "test"), "cub": ("train", "test"), "memotion": ("train", "test")}


def write_image(path: Path, fmt: str, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, fmt)
    return path


def truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.fixture
def no_decoding(monkeypatch):
    """Make any full decode an error, to show a check read headers only."""

    def refuse(path):
        raise AssertionError(f"{path} was decoded")

    monkeypatch.setattr(images, "decode_error", refuse)


# ----------------------------------------------------------------------------- header_error

FORMATS = ["JPEG", "PNG", "GIF", "BMP"] + (["WEBP"] if features.check("webp") else [])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_complete_image_passes_without_being_decoded(tmp_path, fmt, no_decoding):
    assert header_error(write_image(tmp_path / f"x.{fmt.lower()}", fmt)) is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_truncated_image_with_an_intact_header_fails(tmp_path, fmt):
    path = write_image(tmp_path / f"x.{fmt.lower()}", fmt)
    truncate(path, 0.8)
    if fmt != "WEBP":  # PIL reads a whole WebP file when it opens it
        with Image.open(path) as im:  # the header alone looks fine ...
            assert im.size == (64, 64)
    err = header_error(path)  # ... the missing end gives it away
    assert err is not None and isinstance(err, OSError | SyntaxError | ValueError | EOFError)


def test_trailing_bytes_after_a_valid_image_are_not_an_error(tmp_path):
    path = write_image(tmp_path / "x.jpg", "JPEG")
    path.write_bytes(path.read_bytes() + b"camera maker notes")
    assert header_error(path) is None  # decoded to decide: it is fine


@pytest.mark.parametrize(
    "content", [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20]
)
def test_garbage_and_empty_files_fail(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    assert header_error(path) is not None


def test_a_missing_file_fails(tmp_path):
    assert isinstance(header_error(tmp_path / "nowhere.jpg"), FileNotFoundError)


# ----------------------------------------------------------------------------- validate()


@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_split_validates_cleanly_from_headers_alone(name, no_decoding):
    for split in SPLITS.get(name, ("train", "val", "test")):
        ds = load_dataset_from_disk(name, FIXTURES / name, split)
        before = (ds.fingerprint, len(ds))
        assert ds.validate() == []
        assert (ds.fingerprint, len(ds)) == before


@pytest.fixture
def copy(tmp_path):
    def _copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(FIXTURES / name, dst)
        return dst

    return _copy


@pytest.mark.parametrize(
    "name,image,where",
    [
        ("food101", "images/test/apple_pie/apple_pie_100.jpg", "test_titles.csv line 1"),
        ("hateful_memes", "img/10016.png", "test_seen.jsonl line 2"),
    ],
)
def test_a_truncated_test_image_is_named_with_its_record(copy, name, image, where):
    root = copy(name)
    truncate(root / image, 0.7)
    ds = load_dataset_from_disk(name, root, "test")  # construction only stats the files
    with pytest.raises(DataError) as e:
        ds.validate()
    msg = str(e.value)
    assert where in msg and Path(image).name in msg and "cannot be read" in msg


def _write_jsonl(path: Path, texts: dict[int, str]) -> None:
    lines = path.read_text().splitlines()
    for i, text in texts.items():
        obj = json.loads(lines[i])
        obj["text"] = text
        lines[i] = json.dumps(obj)  # "\ud800" stays an escape in the file
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("split", ["train", "test"])
def test_undecodable_or_binary_text_is_named_with_its_line_at_construction(copy, split):
    # any split, before validate(): a text the tokenizer rejects never reaches training
    root = copy("generic")
    _write_jsonl(root / f"{split}.jsonl", {1: "half a surrogate \ud800 pair"})
    with pytest.raises(DataError, match=rf"{split}\.jsonl line 2: text is not valid Unicode"):
        load_dataset_from_disk("generic", root, split)
    _write_jsonl(root / f"{split}.jsonl", {1: "bytes\u0000of a binary file"})
    with pytest.raises(DataError, match=rf"{split}\.jsonl line 2: text holds a NUL"):
        load_dataset_from_disk("generic", root, split)


def test_text_length_limit(copy):
    root = copy("generic")
    _write_jsonl(root / "test.jsonl", {2: "word " * 30_000})  # stripped: 149999
    ds = load_dataset_from_disk("generic", root, "test")
    with pytest.raises(DataError, match=r"test\.jsonl line 3: text of 149999 characters"):
        ds.validate()
    assert ds.validate(max_text_chars=200_000) == []


def test_skip_bad_drops_invalid_records_with_one_counted_warning(copy):
    root = copy("generic")
    _write_jsonl(root / "test.jsonl", {0: "word " * 30_000, 3: "long " * 30_000})
    ds = load_dataset_from_disk("generic", root, "test", skip_bad=True)
    fingerprint, n = ds.fingerprint, len(ds)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        dropped = ds.validate()
    ours = [x for x in w if issubclass(x.category, DataWarning)]
    assert len(ours) == 1 and "skipped 2 bad record(s)" in str(ours[0].message)
    assert ours[0].filename == __file__  # points at the caller of validate()
    assert len(dropped) == 2 and "line 1" in dropped[0] and "line 4" in dropped[1]
    assert len(ds) == n - 2 and ds.skipped == dropped
    assert len(ds.texts) == len(ds.labels) == len(ds.image_paths) == n - 2
    assert ds.fingerprint != fingerprint and ds.fingerprint.startswith(f"generic:test:{n - 2}:")
    # the fingerprint is the one a dataset holding only the kept records gets
    lines = (root / "test.jsonl").read_text().splitlines()
    (root / "test.jsonl").write_text("\n".join(lines[1:3] + lines[4:]) + "\n")
    fresh = load_dataset_from_disk("generic", root, "test")
    assert [r.text for r in fresh.records] == ds.texts


def test_skip_bad_with_nothing_left_is_an_error(copy):
    root = copy("generic")
    _write_jsonl(root / "test.jsonl", {i: "word " * 30_000 for i in range(4)})
    ds = load_dataset_from_disk("generic", root, "test", skip_bad=True)
    with pytest.raises(DataError, match="no usable records"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.validate()


# ----------------------------------------------------------------------------- compare


@pytest.mark.parametrize("name", NAMES)
def test_compare_fails_before_training_on_a_corrupt_test_image(copy, tmp_path, capsys, name):
    root = copy(name)
    test = load_dataset_from_disk(name, root, "test")
    bad, record = test.image_paths[-1], test.records[-1].source
    truncate(bad, 0.6)
    out = tmp_path / "out"
    argv = [
        "compare", "--dataset", name, "--data-dir", str(root), "--methods", "joint",
        "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.3",
        "--image-backbone", "cnn", "--text-backbone", "small",
        "--backbone-option", "image.width=4", "--backbone-option", "image.image_size=16",
        "--embed-dim", "8", "--no-sweep", "--no-progress",
        "--out", str(out), "--name", "run", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and record in err
    assert not list(out.rglob("epochs.jsonl")) and not list(out.rglob("metrics.jsonl"))
