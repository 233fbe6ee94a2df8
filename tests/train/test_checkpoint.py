import logging

import pytest
import torch

from balgrad.errors import BalgradError
from balgrad.train._checkpoint import (
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
)


def entries(epoch: int, weights: torch.Tensor | None = None) -> dict:
    """Every entry a trainer's checkpoint holds."""
    model = {"w": torch.zeros(3) if weights is None else weights}
    return {
        "model": model,
        "optimizer": {},
        "strategy": {},
        "epoch": epoch,
        "best_score": 1.0,
        "best_epoch": epoch,
        "best_state": model,
        "history": [{"epoch": e} for e in range(epoch + 1)],
    }


def saved_twice(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, **entries(0, torch.zeros(3)))
    save_checkpoint(path, **entries(1, torch.ones(3)))
    return path


def test_a_save_keeps_the_previous_checkpoint(tmp_path):
    path = saved_twice(tmp_path)
    assert previous_path(path).name == "checkpoint.prev.pt"
    assert load_checkpoint(path)["epoch"] == 1
    assert load_checkpoint(previous_path(path))["epoch"] == 0
    save_checkpoint(path, **entries(2))
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
    assert torch.equal(state["model"]["w"], torch.zeros(3))
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


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda s: s.pop("model"), "no 'model' entry"),
        (lambda s: s.update(epoch="1"), "no 'epoch' entry of type int"),
        (lambda s: s.update(history=[]), "its history has 0 epochs, but it is of epoch 1"),
    ],
)
def test_a_checkpoint_without_an_entry_is_unusable_and_the_previous_is_used(
    tmp_path, caplog, change, problem
):
    path = saved_twice(tmp_path)
    state = entries(1)
    change(state)
    torch.save(state, path)
    with pytest.raises(BalgradError, match=problem):
        load_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="balgrad.train"):
        state, source = load_latest_checkpoint(path)
    assert source == previous_path(path) and problem in caplog.text


def test_a_failed_save_leaves_the_checkpoints_and_no_temporary(tmp_path, monkeypatch):
    path = saved_twice(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"x" * 1000)  # part of it written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, **entries(2))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
