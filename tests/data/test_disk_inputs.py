"""Inputs are decoded faithfully or refused by name (issue 17, items 4, 5, 7, 14).

- every PIL mode reaches [0, 1] by its real range, or is refused naming file and mode;
- index files decode per record: one byte that is not UTF-8 is an error (or one skip)
  for its own record, never a re-decoding of the whole file;
- a field of the wrong JSON type is an error naming file, line and field;
- the ``generic`` class set is pinned (option, ``classes.txt``, or the union of splits
  with a warning for a class only one split names);
- a symlink loop is an error naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from balgrad.cli import main
from balgrad.data.disk._images import ImageModeError, header_error, load_image
from balgrad.data.readers._registry_disk import DataWarning, load_dataset_from_disk
from balgrad.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def copy(tmp_path):
    def _copy(name: str) -> Path:
        dst = tmp_path / "data" / name
        shutil.copytree(FIXTURES / name, dst)
        return dst

    return _copy


# ----------------------------------------------------------------------------- image modes

RAMP = np.linspace(0.0, 1.0, 16, dtype=np.float64).reshape(4, 4)  # the true grey levels


def _grey(mode: str) -> Image.Image:
    """RAMP in ``mode``, written the way PIL itself builds such an image."""
    if mode in ("I;16", "I;16B", "I;16L"):
        dtype = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2"}[mode]
        data = (RAMP * 65535).round().astype(dtype).tobytes()
        return Image.frombytes(mode, RAMP.shape[::-1], data)
    if mode == "I":
        return Image.fromarray((RAMP * 65535).round().astype(np.int32))
    if mode == "F":
        return Image.fromarray(RAMP.astype(np.float32))
    return Image.fromarray((RAMP * 255).round().astype(np.uint8)).convert(mode)


# mode -> (file format, the largest error on the 8-bit grey ramp after conversion)
GREY_MODES = {
    "1": ("PNG", None),  # two levels: checked for 0/1 only
    "L": ("PNG", 0.0),
    "LA": ("PNG", 0.0),
    "P": ("PNG", 0.0),
    "RGB": ("PNG", 0.0),
    "RGBA": ("PNG", 0.0),
    "CMYK": ("TIFF", 0.0),
    "YCbCr": ("TIFF", 2 / 255),  # a colour transform, rounded in 8 bits
    "LAB": ("TIFF", 3 / 255),
    "HSV": (None, 0.0),  # no file format stores HSV: loaded from memory
    "I;16": ("PNG", 1e-6),  # a 16-bit PNG
    "I;16B": ("TIFF", 1e-6),
    "I": ("TIFF", 1e-6),  # 16-bit data in PIL's 32-bit container (PGM, TIFF)
    "F": ("TIFF", 1e-6),
}


@pytest.mark.parametrize("mode", sorted(GREY_MODES))
def test_every_mode_is_scaled_by_its_real_range(tmp_path, mode, monkeypatch):
    fmt, tol = GREY_MODES[mode]
    im = _grey(mode)
    if fmt is None:
        path = tmp_path / "x.png"
        Image.new("L", (4, 4)).save(path)
        monkeypatch.setattr(Image, "open", lambda _p, *a, **k: _grey(mode))
    else:
        path = tmp_path / f"x.{fmt.lower()}"
        im.save(path, format=fmt)
        with Image.open(path) as back:
            assert back.mode == mode, f"{fmt} stored {mode} as {back.mode}"
    x = load_image(path)
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    if tol is None:
        assert set(x.unique().tolist()) <= {0.0, 1.0} and x.max() == 1.0
        return
    expected = torch.from_numpy(RAMP).float()
    # "I;16", "I", "F" keep every level; 8-bit modes the 8-bit ones
    levels = expected if mode in ("I;16", "I;16B", "I", "F") else (expected * 255).round() / 255
    err = (x - levels).abs().max().item()
    assert err <= tol + 1e-6, f"{mode}: max error {err}"
    assert x[0, 0, 0] < 0.01 and x[0, 3, 3] > 0.99  # not saturated: a real ramp


def test_a_16_bit_png_is_not_white(tmp_path):
    # the reported case: PIL's convert("RGB") clips I;16 to 255 everywhere
    path = tmp_path / "x16.png"
    Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)).save(path)
    x = load_image(path)
    assert torch.allclose(x, torch.full_like(x, 1000 / 65535))


@pytest.mark.parametrize(
    "values, why",
    [
        (np.array([[-5.0, 0.5]], np.float32), r"mode 'F' .* outside \[0, 1\]"),
        (np.array([[0.0, 255.0]], np.float32), r"mode 'F' .* outside \[0, 1\]"),
        (np.array([[0.0, np.nan]], np.float32), r"mode 'F'"),
        (np.array([[-1, 7]], np.int32), r"mode 'I' .* only \[0, 65535\]"),
        (np.array([[0, 70000]], np.int32), r"mode 'I' .* only \[0, 65535\]"),
    ],
)
def test_a_mode_without_a_known_range_is_refused(tmp_path, values, why):
    path = tmp_path / "x.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(ImageModeError, match=why):
        load_image(path)
    # validate() finds it too: the range is decoded for "I" and "F"
    assert isinstance(header_error(path), ImageModeError)


def test_an_unsupported_mode_is_refused_by_the_header_check(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    Image.new("L", (2, 2)).save(path)
    # no file format stores premultiplied "La", and PIL cannot convert it: from memory
    monkeypatch.setattr(Image, "open", lambda *a, **k: Image.new("La", (2, 2)))
    assert isinstance(header_error(path), ImageModeError)
    with pytest.raises(ImageModeError, match="mode 'La' is not supported"):
        load_image(path)


def test_a_refused_image_is_named_with_its_record(copy):
    root = copy("generic")
    target = root / "images" / "train_0.png"
    target.unlink()
    Image.fromarray(np.full((4, 4), 9.0, np.float32)).save(target, format="TIFF")
    ds = load_dataset_from_disk("generic", root, "train")
    with pytest.raises(
        DataError, match=r"train\.jsonl line 1: image file .*train_0\.png is refused"
    ):
        ds[0]
    with pytest.raises(DataError, match="mode 'F'"):
        ds.validate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        kept = load_dataset_from_disk("generic", root, "train", skip_bad=True)
    assert len(kept.skipped) == 1 and "refused" in kept.skipped[0]


# ----------------------------------------------------------------------------- UTF-8 per record


def _replace(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1, (path, old)
    path.write_bytes(data.replace(old, new))


def inject(root: Path, name: str) -> tuple[str, tuple[str, ...], str]:
    """Give one record the UTF-8 text 'café' and another a raw latin-1 byte; returns
    (dataset, the splits to load, the locator the error must name)."""
    bad = b"caf\xe9 latin-1"
    if name == "generic_jsonl":
        _replace(root / "train.jsonl", b"a photo of a cat #0", "café #0".encode())
        _replace(root / "train.jsonl", b"a photo of a dog #1", bad)
        return "generic", ("train",), "train.jsonl line 2"
    if name == "generic_csv":
        text = (root / "val.csv").read_bytes().splitlines()
        _replace(root / "val.csv", text[1].split(b",")[1], "café #0".encode())
        _replace(root / "val.csv", text[2].split(b",")[1], bad)
        return "generic", ("val",), "val.csv line 3"
    if name == "hateful_memes":
        path = root / "train.jsonl"
        _replace(path, b'puppy"}\n{"id": 10002', 'puppy café"}\n{"id": 10002'.encode())
        _replace(path, b'rid of them"}\n{"id": 10003', bad + b'"}\n{"id": 10003')
        return name, ("train",), "train.jsonl line 2"
    if name == "food101":
        path = root / "texts" / "train_titles.csv"
        _replace(path, b"classic - page 0", "café".encode())
        _replace(path, b"classic - page 1", bad)
        return name, ("train",), "train_titles.csv line 2"
    if name == "memotion":  # the rows may fall in either split
        _replace(root / "labels.csv", b"when you see meme 0 level", "café".encode())
        _replace(root / "labels.csv", b"when you see meme 1 level", bad)
        return name, ("train", "test"), "labels.csv line 3"
    if name == "mmimdb":
        _replace(root / "dataset" / "0100000.json", b"a loss, told", "café, told".encode())
        _replace(root / "dataset" / "0100037.json", b'"plot": ["', b'"plot": ["' + bad)
        return name, ("train",), "0100037.json line 1"
    if name == "cub":
        texts = root / "text_c10" / "001.Black_footed_Albatross"
        first = texts / "Black_footed_Albatross_0001_701.txt"
        first.write_bytes("café\n".encode() + first.read_bytes())
        third = texts / "Black_footed_Albatross_0003_703.txt"
        third.write_bytes(bad + b"\n" + third.read_bytes())
        return name, ("train",), "images.txt line 3"
    raise AssertionError(name)


INJECT = ["generic_jsonl", "generic_csv", "hateful_memes", "food101", "memotion", "mmimdb", "cub"]


@pytest.mark.parametrize("fmt", INJECT)
def test_one_invalid_byte_fails_its_record_only(copy, fmt):
    root = copy(fmt.split("_")[0] if fmt.startswith("generic") else fmt)
    name, splits, where = inject(root, fmt)
    with pytest.raises(DataError) as e:
        for s in splits:
            load_dataset_from_disk(name, root, s)
    assert where in str(e.value) and "not valid UTF-8 (byte 0xE9" in str(e.value)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        loaded = [load_dataset_from_disk(name, root, s, skip_bad=True) for s in splits]
    assert sum(len(ds.skipped) for ds in loaded) == 1
    assert sum(issubclass(x.category, DataWarning) for x in w) == 1
    texts = [t for ds in loaded for t in ds.texts]
    assert any("café" in t for t in texts)  # decoded faithfully, not as latin-1
    assert not any("Ã" in t or "\udce9" in t for t in texts)


def test_an_invalid_byte_in_a_structural_file_names_its_line(copy):
    root = copy("cub")
    _replace(root / "CUB_200_2011" / "classes.txt", b"001.", b"\xff01.")
    with pytest.raises(DataError, match=r"classes\.txt line 1: not valid UTF-8 \(byte 0xFF"):
        load_dataset_from_disk("cub", root, "train")
    # a record's line of images.txt is one record: skipped with skip_bad, the split loads
    _replace(root / "CUB_200_2011" / "classes.txt", b"\xff01.", b"001.")
    _replace(root / "CUB_200_2011" / "images.txt", b"3 001.", b"3 \xe901.")
    with pytest.raises(DataError, match=r"images\.txt line 3: not valid UTF-8 \(byte 0xE9"):
        load_dataset_from_disk("cub", root, "train")
    with pytest.warns(DataWarning, match="skipped 1 bad record"):
        load_dataset_from_disk("cub", root, "train", skip_bad=True)
    assert len(load_dataset_from_disk("cub", root, "test")) > 0  # line 3 is a train image
    root = copy("mmimdb")
    _replace(root / "split.json", b'"train"', b'"tr\xe9in"')
    with pytest.raises(DataError, match=r"split\.json line 1: not valid UTF-8"):
        load_dataset_from_disk("mmimdb", root, "train")


# ----------------------------------------------------------------------------- JSON types


def _set_field(path: Path, line: int, field: str, value) -> None:
    lines = path.read_text().splitlines()
    obj = json.loads(lines[line])
    obj[field] = value
    lines[line] = json.dumps(obj)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "name, field, value, kind",
    [
        ("generic", "text", ["a", "list"], "array"),
        ("generic", "text", {"an": "object"}, "object"),
        ("generic", "text", 42, "number"),
        ("generic", "image", ["images/train_0.png"], "array"),
        ("generic", "label", ["cat"], "array"),
        ("generic", "label", True, "boolean"),
        ("hateful_memes", "text", ["a", "list"], "array"),
        ("hateful_memes", "text", {"an": "object"}, "object"),
        ("generic", "label", 1.5, "number"),
        ("hateful_memes", "img", 7, "number"),
        ("hateful_memes", "label", True, "boolean"),
        ("hateful_memes", "label", [1], "array"),
    ],
)
def test_a_wrong_json_type_names_file_line_and_field(copy, name, field, value, kind):
    root = copy(name)
    _set_field(root / "train.jsonl", 1, field, value)
    with pytest.raises(DataError) as e:
        load_dataset_from_disk(name, root, "train")
    msg = str(e.value)
    assert "train.jsonl line 2" in msg and f"'{field}'" in msg and kind in msg


def test_hateful_memes_id_of_a_wrong_type_is_refused(copy):
    root = copy("hateful_memes")
    lines = (root / "train.jsonl").read_text().splitlines()
    obj = json.loads(lines[0])
    del obj["img"]
    obj["id"] = [1, 2]
    lines[0] = json.dumps(obj)
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl line 1: field 'id' must be .* array"):
        load_dataset_from_disk("hateful_memes", root, "train")


@pytest.mark.parametrize(
    "field, value", [("plot", ["ok", {"a": 1}]), ("plot", {"a": 1}), ("genres", [["Drama"]])]
)
def test_mmimdb_fields_of_a_wrong_type_are_refused(copy, field, value):
    root = copy("mmimdb")
    meta = root / "dataset" / "0100000.json"
    obj = json.loads(meta.read_text())
    obj[field] = value
    meta.write_text(json.dumps(obj))
    with pytest.raises(
        DataError, match=rf"0100000\.json .*field '{field}' must be a list of strings"
    ):
        load_dataset_from_disk("mmimdb", root, "train")


def test_mmimdb_an_id_of_a_wrong_type_is_refused(copy):
    root = copy("mmimdb")
    splits = json.loads((root / "split.json").read_text())
    splits["train"][1] = {"id": "0100037"}
    (root / "split.json").write_text(json.dumps(splits))
    with pytest.raises(
        DataError, match=r"'train' entry 1: an id must be a string or a number, got object"
    ):
        load_dataset_from_disk("mmimdb", root, "train")


# ----------------------------------------------------------------------------- generic classes


def _generic_with_typo(root: Path) -> None:
    _set_field(root / "train.jsonl", 2, "label", "dgo")  # a typo of "dog"


def test_a_label_typo_is_named_by_a_warning(copy):
    root = copy("generic")
    _generic_with_typo(root)
    with pytest.warns(DataWarning, match=r"'dgo' \(only in train\.jsonl\).*classes option"):
        ds = load_dataset_from_disk("generic", root, "test")
    # the class set is the union of every split file, the same from each split
    assert ds.info.classes == ["cat", "dgo", "dog"]
    with pytest.warns(DataWarning, match="'dgo'"):
        assert load_dataset_from_disk("generic", root, "train").info.classes == ds.info.classes


def test_the_classes_option_pins_the_class_set(copy):
    root = copy("generic")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        clean = load_dataset_from_disk("generic", root, "train")  # no lonely class, no warning
        pinned = load_dataset_from_disk("generic", root, "train", classes=["dog", "cat"])
    assert clean.info.classes == ["cat", "dog"] and pinned.info.classes == ["dog", "cat"]
    assert [pinned.info.classes[i] for i in pinned.labels] == [
        clean.info.classes[i] for i in clean.labels
    ]
    _generic_with_typo(root)
    with pytest.raises(DataError, match=r"train\.jsonl line 3: unknown label 'dgo'"):
        load_dataset_from_disk("generic", root, "train", classes=["cat", "dog"])
    with pytest.raises(DataError, match=r"option classes: duplicate class names \['cat'\]"):
        load_dataset_from_disk("generic", root, "train", classes=["cat", "cat"])


def test_a_classes_file_pins_the_class_set_without_a_warning(copy):
    root = copy("generic")
    _generic_with_typo(root)
    (root / "classes.txt").write_text("cat\ndog\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        with pytest.raises(DataError, match="unknown label 'dgo'"):
            load_dataset_from_disk("generic", root, "train")
        assert load_dataset_from_disk("generic", root, "test").info.classes == ["cat", "dog"]


# ----------------------------------------------------------------------------- symlink loops


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
@pytest.mark.parametrize("check_files", [True, False])
def test_an_image_path_that_is_a_symlink_loop_is_named(copy, check_files):
    root = copy("generic")
    image = root / "images" / "train_0.png"
    image.unlink()
    other = root / "images" / "loop"
    os.symlink(other, image)
    os.symlink(image, other)
    with pytest.raises(DataError, match=r"train\.jsonl line 1: image file .*train_0\.png"):
        load_dataset_from_disk("generic", root, "train", check_files=check_files)


# ----------------------------------------------------------------------------- the CLI


def _lone_surrogate_text(root: Path) -> None:
    _set_field(root / "train.jsonl", 2, "text", "half a surrogate \ud800 pair")


def _symlink_loop_image(root: Path) -> None:
    image = root / "images" / "train_2.png"
    image.unlink()
    os.symlink(root / "images" / "loop", image)
    os.symlink(image, root / "images" / "loop")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
@pytest.mark.parametrize("fault", [_lone_surrogate_text, _symlink_loop_image])
def test_compare_names_a_bad_training_record_before_training(copy, tmp_path, capsys, fault):
    root = copy("generic")
    fault(root)
    out = tmp_path / "out"
    argv = [
        "compare", "--dataset", "generic", "--data-dir", str(root), "--methods", "joint",
        "--epochs", "1", "--batch-size", "4", "--image-backbone", "cnn",
        "--text-backbone", "small", "--backbone-option", "image.width=4",
        "--backbone-option", "image.image_size=16", "--embed-dim", "8", "--no-sweep",
        "--no-progress", "--out", str(out), "--name", "run",
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "balgrad: error:" in err and "train.jsonl line 3" in err and "Traceback" not in err
    assert not list(out.rglob("metrics.jsonl"))


@pytest.mark.parametrize("check_files", [True, False])
@pytest.mark.parametrize("name", ["nul\u0000.png", "lone\ud800.png"])
def test_an_image_path_that_cannot_name_a_file_is_named(copy, check_files, name):
    root = copy("generic")
    _set_field(root / "train.jsonl", 0, "image", name)
    with pytest.raises(
        DataError, match=r"train\.jsonl line 1: image file .* is not a valid file name"
    ):
        load_dataset_from_disk("generic", root, "train", check_files=check_files)


def test_line_separators_inside_a_record_are_text_not_line_ends(copy):
    # str.splitlines() would cut these records apart (U+2028, U+0085, form feed)
    root = copy("generic")
    texts = {0: "one\u2028two", 1: "nel\u0085inside", 2: "form\x0cfeed"}
    lines = (root / "train.jsonl").read_text().splitlines()
    for i, text in texts.items():
        obj = json.loads(lines[i])
        obj["text"] = text
        lines[i] = json.dumps(obj, ensure_ascii=False)  # the characters raw in the file
    lines[3] = lines[3].replace('"label": ', '"label": ["not a label"], "x": ')
    (root / "train.jsonl").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    with pytest.raises(DataError, match=r"train\.jsonl line 4: field 'label'"):
        load_dataset_from_disk("generic", root, "train")  # the line numbers stay right
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = load_dataset_from_disk("generic", root, "train", skip_bad=True)
    assert ds.texts[:3] == list(texts.values())


def test_a_utf16_index_file_is_named(copy):
    root = copy("generic")
    path = root / "train.jsonl"
    path.write_bytes(path.read_text().encode("utf-16"))
    with pytest.raises(DataError, match=r"train\.jsonl: UTF-16 text .* save it as UTF-8"):
        load_dataset_from_disk("generic", root, "train")


def test_multi_label_classes_are_the_union_of_the_splits_too(copy):
    root = copy("generic")
    (root / "val.csv").unlink()
    for split, labels in (("train", [["a", "b"], ["b"]]), ("test", [["a"], ["c", "a"]])):
        rows = [
            {"image": f"images/{split}_{i}.png", "text": f"t{i}", "labels": ls}
            for i, ls in enumerate(labels)
        ]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(DataWarning, match=r"'c' \(only in test\.jsonl\)"):
        train = load_dataset_from_disk("generic", root, "train")
    assert train.info.task == "multi_label" and train.info.classes == ["a", "b", "c"]
    assert train.labels == [[1, 1, 0], [0, 1, 0]]
