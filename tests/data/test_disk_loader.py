"""The loader base: a declaration plus one ``parse`` make a loader with the constructor
contract ``Cls(data_dir, split="train", *, skip_bad=False, **options)``."""

from __future__ import annotations

import inspect
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from balgrad.data._catalog import DATASETS
from balgrad.data.disk._content_hash import hash_bytes
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions
from balgrad.data.disk._records import Record
from balgrad.data.readers._food101 import Food101Dataset
from balgrad.data.readers._mmimdb import MMIMDbDataset
from balgrad.data.readers._registry_disk import DiskDataset, MissingSplitError, disk_dataset_names
from balgrad.errors import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KW = inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("name", sorted(disk_dataset_names(image_text_only=True)))
def test_every_loader_keeps_the_constructor_contract(name):
    cls = DATASETS.get(name).load()
    assert issubclass(cls, DiskDataset)
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params[:4]] == ["data_dir", "split", "skip_bad", "allow_empty_text"]
    assert params[1].default == "train" and params[2].default is False
    assert all(p.kind is KW for p in params[2:])
    assert [(p.name, p.default) for p in params[-2:]] == [("check_files", True), ("workers", None)]
    assert inspect.signature(cls.__init__).parameters.keys() - {"self"} == {p.name for p in params}


def test_an_unknown_keyword_is_a_type_error_and_split_defaults_to_train():
    with pytest.raises(TypeError, match="bogus"):
        MMIMDbDataset(FIXTURES / "mmimdb", "train", bogus=1)
    assert Food101Dataset(FIXTURES / "food101").split == "train"
    assert len(MMIMDbDataset(data_dir=FIXTURES / "mmimdb", split="dev", plot="first")) == 5


class CaptionsDataset(DiskLoader):
    """A made-up format: ``<split>.tsv`` rows ``<image>\\t<label>\\t<caption>``."""

    name = "captions"
    layout = "  <data_dir>/\n    images/\n    train.tsv"
    markers = ("images",)
    splits = ("train",)
    split_note = "captions has only train"
    metrics = ("accuracy", "f1_macro")

    @dataclass(frozen=True)
    class Options(LoaderOptions):
        shout: bool = False
        colour: Literal["red", "blue"] = "red"

    def parse(self, root, split, problems, options):
        raw = (root / f"{split}.tsv").read_bytes()
        records = []
        for i, line in enumerate(raw.decode().splitlines(), start=1):
            image, label, text = line.split("\t")
            text = text.upper() if options.shout else text
            records.append(Record(root / image, text, int(label), f"{split}.tsv line {i}"))
        return records, IndexInfo(["no", "yes"], hash_bytes(raw, str(options.shout)))


def test_a_new_loader_is_a_declaration_plus_parse(tmp_path):
    shutil.copytree(FIXTURES / "generic" / "images", tmp_path / "images")
    rows = ["images/train_0.png\t0\ta cat", "images/train_1.png\t1\ta dog"]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")

    params = inspect.signature(CaptionsDataset).parameters
    assert params["shout"].default is False and params["shout"].annotation is bool
    assert params["colour"].default == "red"
    ds = CaptionsDataset(tmp_path, "training", shout=True)  # split names are canonical
    assert ds.split == "train" and ds.texts == ["A CAT", "A DOG"] and ds.labels == [0, 1]
    assert ds.info.name == "captions" and ds.info.primary_metric == "accuracy"
    assert ds.info.metrics == ["accuracy", "f1_macro"] and ds.info.classes == ["no", "yes"]
    assert ds.fingerprint != CaptionsDataset(tmp_path).fingerprint  # the option is hashed

    with pytest.raises(MissingSplitError, match="no split 'test'; captions has only train"):
        CaptionsDataset(tmp_path, "test")
    with pytest.raises(ConfigError, match=r"'colour' expects 'red' \| 'blue', got 'green'"):
        CaptionsDataset(tmp_path, colour="green")
    shutil.rmtree(tmp_path / "images")
    with pytest.raises(DataError, match="missing 'images'.*Expected layout"):
        CaptionsDataset(tmp_path)
