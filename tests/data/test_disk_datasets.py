"""On-disk dataset loaders: each on its fixture, plus broken copies of the fixtures."""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from balgrad.data._base import MultimodalDataset
from balgrad.data.readers._mmimdb import GENRES
from balgrad.data.readers._registry_disk import (
    DataWarning,
    MissingSplitError,
    disk_dataset_names,
    disk_dataset_options,
    load_dataset_from_disk,
)
from balgrad.errors import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(name: str) -> Path:
    return FIXTURES / name


@pytest.fixture
def copy(tmp_path):
    """Copy a fixture into tmp_path so a test can break it."""

    def _copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(fixture(name), dst)
        return dst

    return _copy


def load(name, data_dir, split, **kw):
    return load_dataset_from_disk(name, str(data_dir), split, **kw)


def truncate(path: Path, keep: int = 40) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


# ----------------------------------------------------------------------------- happy path

CASES = [
    # name, split, n, num_classes, task, primary metric
    ("food101", "train", 9, 3, "single_label", "accuracy"),
    ("food101", "test", 6, 3, "single_label", "accuracy"),
    ("hateful_memes", "train", 8, 2, "single_label", "auroc"),
    ("hateful_memes", "val", 6, 2, "single_label", "auroc"),
    ("hateful_memes", "test", 4, 2, "single_label", "auroc"),
    ("mmimdb", "train", 10, 23, "multi_label", "f1_macro"),
    ("mmimdb", "val", 5, 23, "multi_label", "f1_macro"),
    ("mmimdb", "test", 5, 23, "multi_label", "f1_macro"),
    ("memotion", "train", 16, 4, "single_label", "accuracy"),
    ("memotion", "test", 4, 4, "single_label", "accuracy"),
    ("cub", "train", 6, 3, "single_label", "accuracy"),
    ("cub", "test", 6, 3, "single_label", "accuracy"),
    ("generic", "train", 8, 2, "single_label", "accuracy"),
    ("generic", "val", 4, 2, "single_label", "accuracy"),
    ("generic", "test", 4, 2, "single_label", "accuracy"),
]


@pytest.mark.parametrize("name,split,n,k,task,primary", CASES)
def test_loader_on_fixture(name, split, n, k, task, primary):
    ds = load(name, fixture(name), split)
    assert isinstance(ds, MultimodalDataset)
    assert len(ds) == n
    assert ds.info.name == name
    assert ds.info.task == task
    assert ds.info.num_classes == k
    assert ds.info.primary_metric == primary
    assert primary in ds.info.metrics
    assert len(ds.texts) == len(ds.labels) == n
    assert all(isinstance(t, str) and t for t in ds.texts)
    fp = ds.fingerprint
    assert name in fp and ds.split in fp and str(n) in fp
    if task == "single_label":
        assert len(set(ds.labels)) >= 2  # at least two classes represented
    for i in range(len(ds)):
        ex = ds[i]
        assert ex.index == i
        assert ex.inputs["image"].dtype == torch.float32
        assert ex.inputs["image"].shape == (3, 16, 16)
        assert float(ex.inputs["image"].min()) >= 0.0 and float(ex.inputs["image"].max()) <= 1.0
        assert ex.inputs["text"] == ds.texts[i]
        if task == "single_label":
            assert ex.label.dtype == torch.int64 and ex.label.dim() == 0
            assert int(ex.label) == ds.labels[i]
            assert 0 <= int(ex.label) < k
        else:
            assert ex.label.dtype == torch.float32 and ex.label.shape == (k,)
            assert ex.label.tolist() == [float(v) for v in ds.labels[i]]
            assert ex.label.sum() >= 1


def test_fingerprint_is_stable_and_split_specific():
    a = load("food101", fixture("food101"), "train")
    b = load("food101", fixture("food101"), "train")
    c = load("food101", fixture("food101"), "test")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_fingerprint_changes_with_index_file(copy):
    root = copy("hateful_memes")
    before = load("hateful_memes", root, "train").fingerprint
    path = root / "train.jsonl"
    lines = path.read_text().splitlines()
    obj = json.loads(lines[0])
    obj["text"] = "a different caption"
    lines[0] = json.dumps(obj)
    path.write_text("\n".join(lines) + "\n")
    assert load("hateful_memes", root, "train").fingerprint != before


def test_dataset_pickles_for_worker_processes():
    ds = load("cub", fixture("cub"), "train")
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds) and torch.equal(clone[0].inputs["image"], ds[0].inputs["image"])


def test_food101_classes_are_sorted_folders_and_no_val():
    ds = load("food101", fixture("food101"), "train")
    assert ds.info.classes == ["apple_pie", "baklava", "sushi"]
    assert ds.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # quoted comma kept inside the text
    assert ds.texts[0].startswith("apple pie recipe with cinnamon, easy")
    with pytest.raises(MissingSplitError, match="no official validation split"):
        load("food101", fixture("food101"), "val")


def test_food101_tolerates_header_row(copy):
    root = copy("food101")
    path = root / "texts" / "train_titles.csv"
    path.write_text("image,text,label\n" + path.read_text())
    assert len(load("food101", root, "train")) == 9


def test_hateful_memes_test_without_labels_is_a_clear_error(copy):
    # the fixture has both the public unlabeled test.jsonl and the labeled test_seen.jsonl
    assert load("hateful_memes", fixture("hateful_memes"), "test").labels == [0, 1, 0, 1]
    with pytest.raises(DataError) as e:
        load("hateful_memes", fixture("hateful_memes"), "test", split_file="test.jsonl")
    msg = str(e.value)
    assert "test.jsonl" in msg and "no labels" in msg and "dev" in msg
    # the public release alone (no test_seen.jsonl): split 'test' is test.jsonl
    root = copy("hateful_memes")
    (root / "test_seen.jsonl").unlink()
    with pytest.raises(DataError, match=r"test\.jsonl has no labels"):
        load("hateful_memes", root, "test")


def test_hateful_memes_dev_seen_names(copy):
    root = copy("hateful_memes")
    (root / "dev.jsonl").rename(root / "dev_seen.jsonl")
    assert len(load("hateful_memes", root, "dev")) == 6
    assert len(load("hateful_memes", root, "dev_seen")) == 6
    with pytest.raises(MissingSplitError, match="dev_unseen.jsonl"):
        load("hateful_memes", root, "dev_unseen")


def test_mmimdb_multi_hot_and_ignored_genres():
    ds = load("mmimdb", fixture("mmimdb"), "train")
    assert ds.info.classes == GENRES and len(GENRES) == 23
    assert GENRES[:3] == ["Drama", "Comedy", "Romance"] and GENRES[-1] == "Film-Noir"
    # movie 5 is Drama + Comedy + News: News is outside the 23 and ignored
    assert ds[5].label.tolist()[:2] == [1.0, 1.0] and ds[5].label.sum() == 2
    assert ds.ignored_genres == {"News": 1}
    # movie 4 is Horror + Thriller
    assert {GENRES[i] for i, v in enumerate(ds.labels[4]) if v} == {"Horror", "Thriller"}


def test_mmimdb_plot_modes():
    longest = load("mmimdb", fixture("mmimdb"), "train")
    first = load("mmimdb", fixture("mmimdb"), "train", plot="first")
    joined = load("mmimdb", fixture("mmimdb"), "train", plot="join")
    assert longest.texts[0].endswith("one long summer")
    assert first.texts[0] == "a family struggles after a loss."
    assert joined.texts[0] == first.texts[0] + " " + longest.texts[0]
    assert longest.fingerprint != first.fingerprint
    with pytest.raises(ConfigError, match="plot"):
        load("mmimdb", fixture("mmimdb"), "train", plot="shortest")


def test_memotion_split_is_stratified_disjoint_and_seeded():
    tr = load("memotion", fixture("memotion"), "train")
    te = load("memotion", fixture("memotion"), "test")
    assert tr.info.classes == ["not_funny", "funny", "very_funny", "hilarious"]
    names_tr = {p.name for p in tr.image_paths}
    names_te = {p.name for p in te.image_paths}
    assert not names_tr & names_te and len(names_tr | names_te) == 20
    assert sorted(te.labels) == [0, 1, 2, 3]  # 20% of each class of 5
    again = load("memotion", fixture("memotion"), "test")
    assert {p.name for p in again.image_paths} == names_te
    other = [
        {p.name for p in load("memotion", fixture("memotion"), "test", seed=s).image_paths}
        for s in range(1, 6)
    ]
    assert any(o != names_te for o in other)
    big = load("memotion", fixture("memotion"), "test", test_fraction=0.4)
    assert len(big) == 8
    val = load("memotion", fixture("memotion"), "val", val_fraction=0.2)
    assert len(val) == 4
    with pytest.raises(MissingSplitError):
        load("memotion", fixture("memotion"), "val")


def test_memotion_text_falls_back_to_ocr():
    both = [load("memotion", fixture("memotion"), s) for s in ("train", "test")]
    texts = {p.name: t for ds in both for p, t in zip(ds.image_paths, ds.texts)}
    assert texts["image_4.jpg"] == "WHEN YOU SEE MEME 3 LEVEL HILARIOUS"  # empty text_corrected
    assert texts["image_2.jpg"] == "when you see meme 1 level funny"


def test_memotion_other_label_column():
    ds = load("memotion", fixture("memotion"), "train", label_column="sarcasm")
    assert ds.info.classes[1] == "general" and set(ds.labels) == {1}


def test_cub_sentence_options_and_root_variants():
    root = fixture("cub")
    joined = load("cub", root, "train")
    assert joined.texts[0].count("this bird has") == 10
    first = load("cub", root, "train", sentence="first")
    assert first.texts[0].endswith("number 0")
    third = load("cub", root, "train", sentence=2)
    assert third.texts[0].endswith("number 2")
    r1 = load("cub", root, "train", sentence="random", seed=1)
    r2 = load("cub", root, "train", sentence="random", seed=1)
    assert r1.texts == r2.texts and all(t.count("this bird") == 1 for t in r1.texts)
    # data_dir may point at CUB_200_2011 itself (text_c10 is then found next to it)
    direct = load("cub", root / "CUB_200_2011", "train")
    assert direct.texts == joined.texts and direct.labels == joined.labels
    assert joined.info.classes[0] == "001.Black_footed_Albatross"
    with pytest.raises(ConfigError, match="sentence"):
        load("cub", root, "train", sentence="last")


def test_generic_multilabel_and_classes_txt(tmp_path):
    src = fixture("generic")
    shutil.copytree(src / "images", tmp_path / "images")
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    recs = [
        {"image": "images/train_0.png", "text": "cat and dog", "labels": ["cat", "dog"]},
        {"image": "images/train_1.png", "text": "a bird", "labels": ["bird"]},
        {"image": "images/train_2.png", "text": "dog", "labels": [1]},
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (tmp_path / "test.csv").write_text(
        'image,text,labels\nimages/test_0.png,two,cat|bird\nimages/test_1.png,one,"[""dog""]"\n'
    )
    tr = load("generic", tmp_path, "train")
    assert tr.info.task == "multi_label" and tr.info.classes == ["cat", "dog", "bird"]
    assert tr.info.primary_metric == "f1_macro"
    assert tr.labels == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]
    assert tr[0].label.tolist() == [1.0, 1.0, 0.0]
    te = load("generic", tmp_path, "test")
    assert te.labels == [[1, 0, 1], [0, 1, 0]]


def test_generic_infers_integer_classes(tmp_path):
    shutil.copytree(fixture("generic") / "images", tmp_path / "images")
    recs = [{"image": f"images/train_{k}.png", "text": f"t{k}", "label": k % 3} for k in range(6)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    ds = load("generic", tmp_path, "train", dataset_name="mine", metrics=["accuracy", "auroc"])
    assert ds.info.classes == ["0", "1", "2"] and ds.info.name == "mine"
    assert ds.info.metrics == ["accuracy", "auroc"]


# ----------------------------------------------------------------------------- registry


def test_registry_names_aliases_and_options():
    image_text = ["food101", "hateful_memes", "mmimdb", "memotion", "cub", "generic"]
    assert disk_dataset_names(image_text_only=True) == image_text
    # the audio-visual readers register in their own modules: where they stand in the list
    # depends on which of those a process imported first, so only membership is checked
    everything = disk_dataset_names()
    assert [n for n in everything if n in image_text] == image_text
    assert set(everything) == {*image_text, "cremad", "mosei", "mosi", "kinetics_sounds"}
    assert len(load("UPMC-Food101", fixture("food101"), "train")) == 9
    assert "test_fraction" in disk_dataset_options("memotion")
    assert "allow_empty_text" in disk_dataset_options("cub")
    with pytest.raises(ConfigError, match="unknown on-disk dataset"):
        load("imagenet", fixture("food101"), "train")
    with pytest.raises(ConfigError, match="unknown option.*bogus"):
        load("food101", fixture("food101"), "train", bogus=1)


# ----------------------------------------------------------------------------- bad input


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load("food101", tmp_path / "nowhere", "train")


@pytest.mark.parametrize(
    "name,remove,expect",
    [
        ("food101", "texts", "'texts'"),
        ("hateful_memes", "img", "'img'"),
        ("mmimdb", "split.json", "'split.json'"),
        ("memotion", "labels.csv", "'labels.csv'"),
        ("cub", "CUB_200_2011/train_test_split.txt", "'train_test_split.txt'"),
        ("cub", "text_c10", "text_c10"),
    ],
)
def test_wrong_layout_names_what_is_missing(copy, name, remove, expect):
    root = copy(name)
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError) as e:
        load(name, root, "train")
    msg = str(e.value)
    assert expect in msg and "expected layout" in msg.lower()


@pytest.mark.parametrize(
    "name,split,remove,expect",
    [
        ("food101", "test", "texts/test_titles.csv", "test_titles.csv"),
        ("hateful_memes", "val", "dev.jsonl", "dev.jsonl"),
        ("generic", "val", "val.csv", "val.jsonl"),
    ],
)
def test_missing_split_file(copy, name, split, remove, expect):
    root = copy(name)
    (root / remove).unlink()
    with pytest.raises(DataError, match=expect):
        load(name, root, split)


def test_mmimdb_split_json_without_split(copy):
    root = copy("mmimdb")
    splits = json.loads((root / "split.json").read_text())
    del splits["test"]
    (root / "split.json").write_text(json.dumps(splits))
    with pytest.raises(MissingSplitError, match=r"split\.json.*no split 'test'"):
        load("mmimdb", root, "test")


def test_missing_image_names_image_and_line(copy):
    root = copy("hateful_memes")
    (root / "img" / "10003.png").unlink()
    with pytest.raises(DataError) as e:
        load("hateful_memes", root, "train")
    msg = str(e.value)
    assert "10003.png" in msg and "train.jsonl line 3" in msg and "missing" in msg


@pytest.mark.parametrize(
    "name,split,image,where",
    [
        ("food101", "train", "images/train/baklava/baklava_1.jpg", "train_titles.csv line 5"),
        ("hateful_memes", "train", "img/10002.png", "train.jsonl line 2"),
        ("cub", "train", None, "images.txt line 1"),
        ("generic", "val", "images/val_1.png", "val.csv line 3"),
    ],
)
def test_truncated_image_fails_in_get_naming_image_and_line(copy, name, split, image, where):
    root = copy(name)
    if image is None:  # cub: first listed image
        first = (root / "CUB_200_2011" / "images.txt").read_text().split()[1]
        image = f"CUB_200_2011/images/{first}"
    truncate(root / image)
    ds = load(name, root, split)  # lazily loaded: construction succeeds
    bad = next(i for i, p in enumerate(ds.image_paths) if p.name == Path(image).name)
    with pytest.raises(DataError) as e:
        ds[bad]
    msg = str(e.value)
    assert Path(image).name in msg and where in msg and "cannot be read" in msg
    # every other record still loads
    for i in range(len(ds)):
        if i != bad:
            ds[i]


def test_garbage_image_bytes(copy):
    root = copy("memotion")
    (root / "images" / "image_6.png").write_bytes(b"this is not an image at all")
    both = [load("memotion", root, s) for s in ("train", "test")]
    ds = next(d for d in both if any(p.name == "image_6.png" for p in d.image_paths))
    i = next(i for i, p in enumerate(ds.image_paths) if p.name == "image_6.png")
    with pytest.raises(DataError, match=r"labels\.csv line 7: image file .*image_6\.png cannot"):
        ds[i]


def test_skip_bad_validates_images_up_front_with_one_counted_warning(copy):
    root = copy("food101")
    truncate(root / "images/train/baklava/baklava_1.jpg")
    (root / "images/train/sushi/sushi_0.jpg").unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = load("food101", root, "train", skip_bad=True)
    ours = [x for x in w if issubclass(x.category, DataWarning)]
    assert len(ours) == 1
    msg = str(ours[0].message)
    assert "skipped 2 bad record(s)" in msg
    assert "train_titles.csv line 5" in msg and "train_titles.csv line 7" in msg
    assert len(ds) == 7 and len(ds.skipped) == 2
    for i in range(len(ds)):
        ds[i]


def test_skip_bad_counts_every_kind_of_bad_record(copy):
    root = copy("hateful_memes")
    lines = (root / "train.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-5]  # malformed JSON
    obj = json.loads(lines[2])
    obj["label"] = 2
    lines[2] = json.dumps(obj)  # label out of range
    obj = json.loads(lines[3])
    obj["text"] = "   "
    lines[3] = json.dumps(obj)  # empty text
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "img" / "10005.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # corrupt
    with pytest.warns(DataWarning, match=r"skipped 4 bad record\(s\)") as rec:
        ds = load("hateful_memes", root, "train", skip_bad=True)
    assert len([r for r in rec if issubclass(r.category, DataWarning)]) == 1
    assert len(ds) == 4
    assert any("line 2: malformed JSON" in s for s in ds.skipped)
    assert any("line 3" in s and "out of range" in s for s in ds.skipped)
    assert any("line 4: empty text" in s for s in ds.skipped)
    assert any("10005.png" in s and "line 5" in s for s in ds.skipped)


def test_skip_bad_warning_lists_only_the_first_few(copy):
    root = copy("generic")
    path = root / "train.jsonl"
    lines = [json.loads(s) for s in path.read_text().splitlines()]
    for r in lines[:7]:
        r["label"] = "horse"
    # keep classes known: add classes.txt so 'horse' is unknown rather than a new class
    (root / "classes.txt").write_text("cat\ndog\n")
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    with pytest.warns(DataWarning, match=r"skipped 7 bad record\(s\).*and 2 more"):
        ds = load("generic", root, "train", skip_bad=True)
    assert len(ds) == 1


def test_all_bad_is_an_error_even_with_skip_bad(copy):
    root = copy("generic")
    for p in (root / "images").glob("test_*.png"):
        p.unlink()
    with pytest.raises(DataError, match="no usable records"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load("generic", root, "test", skip_bad=True)


def test_malformed_json_line_names_file_and_line(copy):
    root = copy("hateful_memes")
    path = root / "dev.jsonl"
    lines = path.read_text().splitlines()
    lines[4] = '{"id": 1, "img": "img/1.png", "label": 0, "text": '
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"dev\.jsonl line 5: malformed JSON"):
        load("hateful_memes", root, "val")


def test_mmimdb_broken_metadata(copy):
    root = copy("mmimdb")
    ids = json.loads((root / "split.json").read_text())["train"]
    (root / "dataset" / f"{ids[1]}.json").write_text('{"plot": ["x"], "genres": [')
    with pytest.raises(DataError, match=rf"{ids[1]}\.json line 1: malformed JSON"):
        load("mmimdb", root, "train")
    meta = {"plot": ["some plot"], "genres": ["News", "Reality-TV"]}
    (root / "dataset" / f"{ids[1]}.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=rf"{ids[1]}\.json.*none of the 23"):
        load("mmimdb", root, "train")
    (root / "dataset" / f"{ids[2]}.jpeg").unlink()
    with pytest.warns(DataWarning, match="skipped 2"):
        ds = load("mmimdb", root, "train", skip_bad=True)
    assert len(ds) == 8


@pytest.mark.parametrize(
    "name,split,file,line,old,new,expect",
    [
        (
            "food101",
            "train",
            "texts/train_titles.csv",
            4,
            ",baklava",
            ",pizza",
            "unknown class 'pizza'",
        ),
        ("memotion", "train", "labels.csv", 3, ",funny,", ",rofl,", "unknown humour label 'rofl'"),
        ("cub", "train", "CUB_200_2011/image_class_labels.txt", 1, "1 1", "1 9", "out of range"),
        ("generic", "train", "train.jsonl", 2, '"dog"', '"horse"', "unknown label 'horse'"),
        ("generic", "test", "test.jsonl", 3, '"label": 0', '"label": 7', "out of range"),
        ("hateful_memes", "train", "train.jsonl", 6, '"label": 1', '"label": "yes"', "not 0 or 1"),
    ],
)
def test_bad_label_names_file_and_line(copy, name, split, file, line, old, new, expect):
    root = copy(name)
    path = root / file
    lines = path.read_text().splitlines()
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new)
    path.write_text("\n".join(lines) + "\n")
    if name == "generic" and split == "train":
        (root / "classes.txt").write_text("cat\ndog\n")
    if name == "memotion":  # line 3 (image_2) may fall in either split
        with pytest.raises(DataError) as e:
            for s in ("train", "test"):
                load(name, root, s)
    else:
        with pytest.raises(DataError) as e:
            load(name, root, split)
    msg = str(e.value)
    assert f"{Path(file).name} line {line}" in msg and expect in msg


@pytest.mark.parametrize(
    "name,split,file,line,old,new",
    [
        ("food101", "test", "texts/test_titles.csv", 2, "apple pie", ""),
        ("generic", "train", "train.jsonl", 4, "a photo of a dog #3", ""),
    ],
)
def test_empty_text_is_an_error_unless_allowed(copy, name, split, file, line, old, new):
    root = copy(name)
    path = root / file
    lines = path.read_text().splitlines()
    raw = lines[line - 1]
    if name == "food101":  # empty the whole text field
        fields = raw.split(",")
        raw = ",".join([fields[0], '""', fields[-1]])
    else:
        raw = raw.replace(old, new)
    lines[line - 1] = raw
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load(name, root, split)
    assert f"{Path(file).name} line {line}: empty text" in str(e.value)
    ds = load(name, root, split, allow_empty_text=True)
    assert "" in ds.texts


def test_cub_missing_text_file(copy):
    root = copy("cub")
    rel = (root / "CUB_200_2011" / "images.txt").read_text().splitlines()[2].split()[1]
    (root / "text_c10" / Path(rel).with_suffix(".txt")).unlink()
    with pytest.raises(DataError, match=r"images\.txt line 3: text file .* is missing"):
        load("cub", root, "train")


def test_csv_with_wrong_field_count(copy):
    root = copy("food101")
    path = root / "texts" / "train_titles.csv"
    lines = path.read_text().splitlines()
    lines[6] = "sushi_0.jpg"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train_titles\.csv line 7: expected 3 fields"):
        load("food101", root, "train")


def test_memotion_missing_column(copy):
    root = copy("memotion")
    path = root / "labels.csv"
    path.write_text(path.read_text().replace(",humour,", ",humor,", 1))
    with pytest.raises(DataError, match=r"labels\.csv line 1: missing column\(s\) humour"):
        load("memotion", root, "train")
