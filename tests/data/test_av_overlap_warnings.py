"""Duplicate clips in a split, and clips both in the training and the test split, are
warned in the audio-visual readers (issue 23, item 7): CREMA-D and Kinetics-Sounds by
clip name, CMU-MOSEI by segment id. Nothing is dropped: the data is scored as given."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from test_cremad import CLIPS as CREMA_CLIPS
from test_cremad import make as make_cremad
from test_kinetics_sounds import CLIPS as KS_CLIPS
from test_kinetics_sounds import make as make_ks
from test_mosei import _mult

import balgrad.data.readers._registry_av  # noqa: F401 - registers cremad, mosei, mosi
from balgrad.config import build_config
from balgrad.data._catalog import DATASETS
from balgrad.data.disk._records import DataWarning
from balgrad.experiment import load_data

CREMA = {"image_size": [8, 10], "seconds": 0.5, "sample_rate": 16000}
KS = {"image_size": 8, "list_file": "my_{split}.txt"}


def data_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def load(dataset: str, root, **options):
    """train/val/test as a run loads them, and the DataWarnings given on the way."""
    values = {"dataset": dataset, "data_dir": str(root), "dataset_options": options}
    cfg = build_config({**values, "val_fraction": 0.5})  # one of two same-label clips
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data = load_data(cfg)
    return data, data_warnings(record)


def _append_line(path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n", encoding="utf-8")


# -- CREMA-D ------------------------------------------------------------------------------
#: two training clips of one emotion, so that a validation clip can be carved from them
CREMA_TRAIN = [CREMA_CLIPS[0], ("1042_TIE_NEU_XX", "NEU")]


@pytest.fixture
def cremad(tmp_path):
    make_cremad(tmp_path, clips=CREMA_TRAIN, split="train", frames=3)
    make_cremad(tmp_path, clips=CREMA_CLIPS[2:], split="test", frames=3)
    return tmp_path


def test_cremad_clean_splits_give_no_warning(cremad):
    data, warned = load("cremad", cremad, **CREMA)
    assert warned == [] and len(data.test) == 1


def test_cremad_a_clip_listed_twice_is_warned_with_both_lines(cremad):
    _append_line(cremad / "train.csv", "1041_TIE_NEU_XX,NEU")  # line 3 repeats line 1
    with pytest.warns(DataWarning) as record:
        ds = DATASETS.build("cremad", (cremad, "train"), {}, CREMA)
    (message,) = data_warnings(record)
    assert "CREMA-D split 'train'" in message and "1 duplicate example(s)" in message
    assert f"{cremad / 'train.csv'} line 3 repeats '1041_TIE_NEU_XX'" in message
    assert f"first at {cremad / 'train.csv'} line 1" in message
    assert len(ds) == 3  # kept, not silently dropped


def test_cremad_a_clip_in_train_and_test_is_warned(cremad):
    make_cremad(cremad, clips=[CREMA_CLIPS[2], CREMA_TRAIN[1]], split="test", frames=3)
    data, warned = load("cremad", cremad, **CREMA)
    (message,) = warned
    assert "dataset 'cremad': 1 example(s) of the 'test' split (2 in all)" in message
    assert "also in the 'train' split" in message and "'1042_TIE_NEU_XX'" in message
    assert len(data.test) == 2


# -- Kinetics-Sounds ----------------------------------------------------------------------
#: two training clips of one class, so that a validation clip can be carved from them
KS_TRAIN = [KS_CLIPS[0], ("-0CAiqPEP6U_000010_000020", KS_CLIPS[0][1])]


@pytest.fixture
def kinetics(tmp_path):
    make_ks(tmp_path, "train", clips=KS_TRAIN, frames=4)
    make_ks(tmp_path, "test", clips=KS_CLIPS[2:], frames=4)
    return tmp_path


def test_kinetics_clean_splits_give_no_warning(kinetics):
    _, warned = load("kinetics_sounds", kinetics, **KS)
    assert warned == []


def test_kinetics_a_clip_listed_twice_is_warned(kinetics):
    name, label = KS_CLIPS[0]
    _append_line(kinetics / "my_train.txt", f"{name},10,{label}")
    with pytest.warns(DataWarning) as record:
        DATASETS.build("kinetics_sounds", (kinetics, "train"), {}, KS)
    (message,) = data_warnings(record)
    assert "split 'train'" in message and f"my_train.txt line 3 repeats {name!r}" in message


def test_kinetics_a_clip_in_train_and_test_is_warned(kinetics):
    make_ks(kinetics, "test", clips=[KS_CLIPS[0], KS_CLIPS[2]], frames=4)
    _, warned = load("kinetics_sounds", kinetics, **KS)
    (message,) = warned
    assert "1 example(s) of the 'test' split (2 in all)" in message
    assert repr(KS_CLIPS[0][0]) in message


# -- CMU-MOSEI ----------------------------------------------------------------------------
def _mosei(tmp_path, ids: dict[str, list[str]] | None) -> None:
    raw = _mult(3)
    for split, d in raw.items():
        if ids is None:
            del d["id"]
        else:
            d["id"] = np.array(ids[split])
    (tmp_path / "mosei_senti_data.pkl").write_bytes(pickle.dumps(raw))


DISTINCT = {s: [f"{s}{i}/0" for i in range(3)] for s in ("train", "valid", "test")}


def test_mosei_distinct_ids_give_no_warning(tmp_path):
    _mosei(tmp_path, DISTINCT)
    _, warned = load("mosei", tmp_path)
    assert warned == []


def test_mosei_a_pickle_without_ids_is_not_compared(tmp_path):
    """Its ids are the records' positions, equal in every split: they name no segment."""
    _mosei(tmp_path, None)
    _, warned = load("mosei", tmp_path)
    assert warned == []


def test_mosei_a_segment_twice_in_a_split_is_warned(tmp_path):
    _mosei(tmp_path, {**DISTINCT, "train": ["a/1", "b/1", "a/1"]})
    with pytest.warns(DataWarning) as record:
        ds = DATASETS.build("mosei", (tmp_path, "train"), {}, {})
    (message,) = data_warnings(record)
    assert "mosei split 'train'" in message and "repeated: 'a/1' (examples 0, 2)" in message
    assert len(ds) == 3


@pytest.mark.parametrize("other", ["test", "valid"])
def test_mosei_a_segment_in_train_or_val_and_test_is_warned(tmp_path, other):
    leaked = {**DISTINCT, "test": ["test0/0", f"{'train' if other == 'test' else 'valid'}1/0"]}
    leaked["test"].append("test2/0")
    _mosei(tmp_path, leaked)
    _, warned = load("mosei", tmp_path)
    (message,) = warned
    split = "train" if other == "test" else "val"
    assert f"also in the {split!r} split" in message and "1 example(s) of the 'test'" in message
