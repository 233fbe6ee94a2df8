"""Every file a dataset reads stays inside the data folder (issue 10, item 6; issue 17,
item 26: options that name a file or folder, index files, listed folders).

A record whose image path leads outside ``data_dir`` (``../..``, an absolute path, or a
symlink inside the folder pointing out) is a DataError naming the index file and line,
or one counted skip with ``skip_bad=True``; the outside file is never opened.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import typing
import warnings
from pathlib import Path

import pytest

from balgrad.data._catalog import DATASETS
from balgrad.data.disk._loader import path_options
from balgrad.data.readers._registry_disk import (
    DataWarning,
    disk_dataset_names,
    load_dataset_from_disk,
)
from balgrad.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def data(tmp_path):
    """A copy of a fixture at tmp_path/data/<name>, and a readable image outside it."""
    outside = tmp_path / "OUTSIDE.jpg"
    shutil.copy(FIXTURES / "generic" / "images" / "train_0.png", outside)

    def _copy(name: str) -> Path:
        dst = tmp_path / "data" / name
        shutil.copytree(FIXTURES / name, dst)
        return dst

    return _copy, outside


def _edit_jsonl(path: Path, field: str, value: str) -> None:
    lines = path.read_text().splitlines()
    obj = json.loads(lines[0])
    obj[field] = value
    lines[0] = json.dumps(obj)
    path.write_text("\n".join(lines) + "\n")


def _edit_csv(path: Path, column: str, value: str) -> None:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    rows[1][rows[0].index(column)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue())


def point_first_record_at(root: Path, fmt: str, value: str) -> tuple[str, str, tuple[str, ...]]:
    """Make the first record of ``fmt``'s index name ``value`` as its image; returns
    (dataset name, the locator the error must name, the splits to load)."""
    if fmt == "hateful_memes":
        _edit_jsonl(root / "train.jsonl", "img", value)
        return fmt, "train.jsonl line 1", ("train",)
    if fmt == "generic_jsonl":
        _edit_jsonl(root / "train.jsonl", "image", value)
        return "generic", "train.jsonl line 1", ("train",)
    if fmt == "generic_csv":
        _edit_csv(root / "val.csv", "image", value)
        return "generic", "val.csv line 2", ("val",)
    if fmt == "memotion":  # the row may fall in either split
        _edit_csv(root / "labels.csv", "image_name", value)
        return fmt, "labels.csv line 2", ("train", "test")
    if fmt == "cub":
        path = root / "CUB_200_2011" / "images.txt"
        lines = path.read_text().splitlines()
        lines[0] = f"1 {value}"  # image id 1 is a train image
        path.write_text("\n".join(lines) + "\n")
        return fmt, "images.txt line 1", ("train",)
    if fmt == "mmimdb":  # the id names <id>.json and <id>.jpeg under dataset/
        splits = json.loads((root / "split.json").read_text())
        splits["train"][0] = value
        (root / "split.json").write_text(json.dumps(splits))
        return fmt, "'train' entry 0", ("train",)
    raise AssertionError(fmt)


FORMATS = ["hateful_memes", "generic_jsonl", "generic_csv", "memotion", "cub", "mmimdb"]
FOLDER = {"generic_jsonl": "generic", "generic_csv": "generic"}


def load_all(name: str, root: Path, splits: tuple[str, ...], **kw) -> list:
    return [load_dataset_from_disk(name, root, s, **kw) for s in splits]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("escape", ["relative", "absolute", "etc_hostname"])
def test_index_path_outside_the_data_folder_is_an_error_naming_the_record(data, fmt, escape):
    copy, outside = data
    root = copy(FOLDER.get(fmt, fmt))
    if escape == "relative":  # enough ../ to climb out of any sub-folder of the fixture
        value = "../../../../OUTSIDE" if fmt == "mmimdb" else "../../../../OUTSIDE.jpg"
    elif escape == "absolute":
        value = str(outside.with_suffix("")) if fmt == "mmimdb" else str(outside)
    else:
        value = "/etc/hostname"
    name, where, splits = point_first_record_at(root, fmt, value)
    with pytest.raises(DataError) as e:
        load_all(name, root, splits)
    msg = str(e.value)
    assert where in msg and "outside the data folder" in msg
    assert str(root.resolve()) in msg

    # skip_bad: one counted skip, the other records load
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        loaded = load_all(name, root, splits, skip_bad=True)
    ours = [x for x in w if issubclass(x.category, DataWarning)]
    assert len(ours) == 1 and "skipped 1 bad record(s)" in str(ours[0].message)
    assert sum(len(ds.skipped) for ds in loaded) == 1
    assert "outside the data folder" in next(s for ds in loaded for s in ds.skipped)
    kept = [p for ds in loaded for p in ds.image_paths]
    assert all(p.resolve().is_relative_to(root.resolve()) for p in kept)


LINKED_IMAGE = {
    "food101": ("images/train/apple_pie/apple_pie_0.jpg", "train", "train_titles.csv line 1"),
    "hateful_memes": ("img/10001.png", "train", "train.jsonl line 1"),
    "generic": ("images/train_0.png", "train", "train.jsonl line 1"),
    "memotion": ("images/image_1.png", None, "labels.csv line 2"),
    "cub": (
        "CUB_200_2011/images/001.Black_footed_Albatross/Black_footed_Albatross_0001_701.jpg",
        "train",
        "images.txt line 1",
    ),
    "mmimdb": ("dataset/0100000.jpeg", "train", "'train' entry 0"),
}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
@pytest.mark.parametrize("name", sorted(LINKED_IMAGE))
def test_symlink_inside_the_folder_pointing_outside_is_an_error(data, name):
    copy, outside = data
    root = copy(name)
    rel, split, where = LINKED_IMAGE[name]
    link = root / rel
    link.unlink()
    link.symlink_to(outside)
    splits = ("train", "test") if split is None else (split,)
    with pytest.raises(DataError) as e:
        load_all(name, root, splits)
    msg = str(e.value)
    assert where in msg and link.name in msg and str(outside) in msg
    assert "outside the data folder" in msg
    with pytest.warns(DataWarning, match=r"skipped 1 bad record"):
        loaded = load_all(name, root, splits, skip_bad=True)
    assert link not in [p for ds in loaded for p in ds.image_paths]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_symlinks_that_stay_inside_and_a_linked_data_dir_are_fine(data, tmp_path):
    copy, _ = data
    root = copy("hateful_memes")
    # an image that links to another image of the same folder
    (root / "img" / "10001.png").unlink()
    (root / "img" / "10001.png").symlink_to(root / "img" / "10002.png")
    # data_dir itself reached through a link: the folder is compared after resolving it
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    ds = load_dataset_from_disk("hateful_memes", alias, "train")
    assert len(ds) == 8 and ds[0].inputs["image"].shape == (3, 16, 16)


def test_food101_takes_only_the_file_name_so_a_row_cannot_leave_its_class_folder(data):
    copy, _ = data
    root = copy("food101")
    path = root / "texts" / "train_titles.csv"
    lines = path.read_text().splitlines()
    lines[0] = "../../../../OUTSIDE.jpg" + lines[0][lines[0].index(",") :]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load_dataset_from_disk("food101", root, "train")
    inside = root / "images" / "train" / "apple_pie" / "OUTSIDE.jpg"
    assert f"image file {inside} is missing" in str(e.value)


def test_check_files_false_still_keeps_paths_inside(data):
    copy, _ = data
    root = copy("generic")
    _edit_jsonl(root / "train.jsonl", "image", "/etc/hostname")
    with pytest.raises(DataError, match="outside the data folder"):
        load_dataset_from_disk("generic", root, "train", check_files=False)


# ------------------------------------------------- every file a dataset reads (issue 17, item 26)


def _loader(name: str):
    return DATASETS.get(name).load()


def _path_options() -> list[tuple[str, str, str]]:
    return [
        (name, field, kind)
        for name in disk_dataset_names(image_text_only=True)
        for field, kind in path_options(_loader(name).Options).items()
    ]


PATH_OPTIONS = _path_options()
PATHLIKE_NAMES = ("_file", "_dir", "_folder", "_path", "file", "dir", "path")


def test_every_option_that_names_a_path_is_declared_as_one():
    # the containment tests below cover an option only when it is a path_option
    assert {(n, f) for n, f, _ in PATH_OPTIONS} >= {
        ("hateful_memes", "split_file"),
        ("cub", "text_dir"),
    }
    for name in disk_dataset_names(image_text_only=True):
        options = _loader(name).Options
        hints = typing.get_type_hints(options)
        for f in dataclasses.fields(options):
            looks_like_a_path = f.name.endswith(PATHLIKE_NAMES) or "PathLike" in str(hints[f.name])
            if looks_like_a_path:
                assert "path" in f.metadata, f"{name}: option {f.name} is not a path_option"


def _outside_target(tmp_path: Path, kind: str) -> Path:
    target = tmp_path / ("OUTSIDE.jsonl" if kind == "file" else "OUTSIDE_DIR")
    if kind == "file":
        shutil.copy(FIXTURES / "hateful_memes" / "train.jsonl", target)
    else:
        target.mkdir()
    return target


@pytest.mark.parametrize("name, field, kind", PATH_OPTIONS)
@pytest.mark.parametrize("escape", ["relative", "absolute", "etc", "symlink"])
def test_a_path_option_leading_outside_is_refused_before_anything_is_read(
    data, tmp_path, monkeypatch, name, field, kind, escape
):
    copy, _ = data
    root = copy(name)
    target = _outside_target(tmp_path, kind)
    if escape == "relative":
        value = os.path.relpath(target, root)  # the data folder is data_dir for both
    elif escape == "absolute":
        value = str(target)
    elif escape == "etc":
        value = "/etc/hostname" if kind == "file" else "/etc"
    else:
        if not hasattr(os, "symlink"):
            pytest.skip("no symlinks on this platform")
        (root / "link").symlink_to(target)
        value = "link"

    def must_not_parse(*a, **k):
        raise AssertionError("parse ran: the option was not checked first")

    monkeypatch.setattr(_loader(name), "parse", must_not_parse)
    with pytest.raises(DataError) as e:
        load_dataset_from_disk(name, root, "train", **{field: value})
    msg = str(e.value)
    assert f"option {field}=" in msg and "outside the data folder" in msg


def test_path_options_inside_the_data_folder_work_from_any_working_directory(data, monkeypatch):
    copy, _ = data
    hm, cub = copy("hateful_memes"), copy("cub")
    monkeypatch.chdir("/")  # relative options are taken under the data folder, not the cwd
    assert len(load_dataset_from_disk("hateful_memes", hm, "train", split_file="dev.jsonl")) > 0
    ds = load_dataset_from_disk("cub", cub, "train", text_dir="text_c10")
    assert ds.text_dir == cub / "text_c10" and all(ds.texts)


# the fixed index files and listed folders of each dataset
FIXED_FILES = {
    "hateful_memes": "train.jsonl",
    "generic": "train.jsonl",
    "food101": "texts/train_titles.csv",
    "memotion": "labels.csv",
    "mmimdb": "split.json",
    "cub": "CUB_200_2011/images.txt",
}
LISTED_FOLDERS = {"food101": "images/train", "memotion": "images", "cub": "text_c10"}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
@pytest.mark.parametrize(
    "name, rel",
    [*FIXED_FILES.items(), *LISTED_FOLDERS.items()],
)
def test_an_index_file_or_folder_linked_outside_is_refused(data, tmp_path, name, rel):
    copy, _ = data
    root = copy(name)
    inside = root / rel
    outside = tmp_path / "moved" / inside.name
    outside.parent.mkdir()
    shutil.move(inside, outside)  # the same, valid content, now outside the folder
    inside.symlink_to(outside)
    with pytest.raises(DataError) as e:
        load_dataset_from_disk(name, root, "train")
    assert inside.name in str(e.value) and "outside the data folder" in str(e.value)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_a_nested_dataset_folder_linked_outside_is_refused(data, tmp_path):
    copy, _ = data
    real = copy("hateful_memes")
    data_dir = tmp_path / "holder"
    data_dir.mkdir()
    (data_dir / "hateful_memes").symlink_to(real)  # a nested root, outside data_dir
    with pytest.raises(
        DataError, match=r"dataset folder .*hateful_memes .*outside the data folder"
    ):
        load_dataset_from_disk("hateful_memes", data_dir, "train")
    assert len(load_dataset_from_disk("hateful_memes", real, "train")) == 8
