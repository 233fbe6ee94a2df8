"""A modality kind owns what depends on it (issue 24): registering a kind with its input
form and its cell reader is enough for the dataset contract and the generic reader to
check and read it, with no code that names the kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balgrad.data import CellReader, ModalityKind, register_kind
from balgrad.data._contract import check_example, check_input
from balgrad.data._kind_io import tensor_form
from balgrad.data._kinds import KINDS
from balgrad.data.decoders import decode_npy, read_npy_header
from balgrad.data.readers._generic_modal import header_modalities, read_kinds
from balgrad.data.readers._registry_disk import load_dataset_from_disk
from balgrad.errors import DataError


def _decode_depth(file, where, modality, context):
    arr = decode_npy(file, where, what="depth map", ndim=2, expected="[H, W]")
    return torch.from_numpy(arr.astype(np.float32))[None]


def _probe_depth(file, where, modality, context):
    read_npy_header(file, where, what="depth map", ndim=2, expected="[H, W]")


@pytest.fixture
def depth():
    """A ``depth`` kind (a one-channel map from a .npy file), registered for one test."""
    kind = register_kind(
        ModalityKind(
            "depth", torch.zeros_like, None, 0.0, lambda level: None, "σ", "",
            input_form=tensor_form("depth", (3,), "[1, H, W]", channels=(1,)),
            cell=CellReader(".npy depth map", _decode_depth, probe=_probe_depth),
        )
    )  # fmt: skip
    yield kind
    del KINDS["depth"]


def test_the_contract_checks_a_registered_kind_by_its_own_form(depth):
    check_input(torch.zeros(1, 4, 5), "depth", "item 0")
    with pytest.raises(DataError, match=r"item 0 \(kind depth\): 2 channels, not 1 \[1, H, W\]"):
        check_input(torch.zeros(2, 4, 5), "depth", "item 0")
    with pytest.raises(DataError, match=r"dtype float64, not float32"):
        check_input(torch.zeros(1, 4, 5, dtype=torch.float64), "depth", "item 0")
    with pytest.raises(DataError, match=r"kind depth\): a list, not a torch.Tensor \[1, H, W\]"):
        check_input([0.0], "depth", "item 0")


def test_a_kind_without_a_form_is_not_checked():
    kind = register_kind(
        ModalityKind("formless", torch.zeros_like, None, 0.0, lambda level: None, "σ", "")
    )
    try:
        assert kind.check_input(object(), "item 0") is None
        check_input(object(), "formless", "item 0")
    finally:
        del KINDS["formless"]


def _write(root, maps, bad=None):
    (root / "depth").mkdir(parents=True)
    lines = ["caption:text,range:depth,label"]
    for i, m in enumerate(maps):
        np.save(root / "depth" / f"{i}.npy", m)
        lines.append(f"caption {i},depth/{i}.npy,{['near', 'far'][i % 2]}")
    if bad is not None:
        (root / "depth" / f"{bad}.npy").write_bytes(b"not an array")
    (root / "train.csv").write_text("\n".join(lines) + "\n")


def test_the_generic_reader_reads_a_registered_kind_through_its_cell_reader(tmp_path, depth):
    rng = np.random.default_rng(0)
    maps = [rng.random((4, 5)).astype(np.float32) for _ in range(4)]
    _write(tmp_path, maps)
    assert read_kinds()["depth"] == ".npy depth map"
    assert header_modalities(["caption:text", "range:depth"], "x") == {
        "caption": "text",
        "range": "depth",
    }
    ds = load_dataset_from_disk("generic", str(tmp_path), "train")
    assert ds.info.modalities == {"caption": "text", "range": "depth"}
    assert ds.validate() == []
    assert ds.texts == [f"caption {i}" for i in range(4)]  # the text kind is tokenized
    ex = ds[2]
    check_example(ex, ds.info.modalities, "item 2")
    assert ex.inputs["caption"] == "caption 2"
    assert ex.inputs["range"].shape == (1, 4, 5)
    np.testing.assert_array_equal(ex.inputs["range"][0].numpy(), maps[2])
    assert [int(ds[i].label) for i in range(4)] == [1, 0, 1, 0]  # classes sorted: far, near


def test_a_bad_file_of_a_registered_kind_is_named_by_its_probe(tmp_path, depth):
    _write(tmp_path, [np.zeros((4, 5), np.float32)] * 2, bad=1)
    ds = load_dataset_from_disk("generic", str(tmp_path), "train")
    with pytest.raises(DataError, match=r"train.csv line 3, column 'range'.*depth map"):
        ds.validate()
