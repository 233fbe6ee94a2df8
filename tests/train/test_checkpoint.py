import logging

import pytest
import torch

from balgrad.errors import BalgradError
from balgrad.train.checkpoint import (
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
)


def saved_twice(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, epoch=0, weights=torch.zeros(3))
    save_checkpoint(path, epoch=1, weights=torch.ones(3))
    return path


def test_a_save_keeps_the_previous_checkpoint(tmp_path):
    path = saved_twice(tmp_path)
    assert previous_path(path).name == "checkpoint.prev.pt"
    assert load_checkpoint(path)["epoch"] == 1
    assert load_checkpoint(previous_path(path))["epoch"] == 0
    save_checkpoint(path, epoch=2)
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_broken_newest_checkpoint_falls_back_to_the_previous_naming_both(
    tmp_path, caplog, damage
):
    path = saved_twice(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with caplog.at_level(logging.WARNING, logger="balgrad.train"):
        state, source = load_latest_checkpoint(path)
    assert source == previous_path(path) and state["epoch"] == 0
    assert torch.equal(state["weights"], torch.zeros(3))
    assert str(path) in caplog.text and str(previous_path(path)) in caplog.text


def test_a_zero_byte_checkpoint_names_a_reason(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"")
    with pytest.raises(BalgradError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "empty (0 bytes)" in message
    assert not message.rstrip().endswith(":")


def test_both_checkpoints_broken_is_an_error_naming_both(tmp_path):
    path = saved_twice(tmp_path)
    path.write_bytes(b"not a checkpoint")
    previous_path(path).write_bytes(b"")
    with pytest.raises(BalgradError) as err:
        load_latest_checkpoint(path)
    assert str(path) in str(err.value) and str(previous_path(path)) in str(err.value)


def test_no_checkpoint_at_all_is_none(tmp_path):
    assert load_latest_checkpoint(tmp_path / "checkpoint.pt") is None


def test_a_missing_newest_falls_back_to_the_previous(tmp_path):
    path = saved_twice(tmp_path)
    path.unlink()
    state, source = load_latest_checkpoint(path)
    assert source == previous_path(path) and state["epoch"] == 0
