import json
import logging

import pytest
import torch

from balgrad.train._metrics_log import JsonlLogger, TensorBoardLogger, read_jsonl, to_floats


def test_tensor_and_float_statistics_are_written_as_the_same_numbers(tmp_path):
    log = JsonlLogger(tmp_path / "m.jsonl", method="x", seed=3)
    a = torch.tensor(0.1234567, dtype=torch.float32)
    stats = {"loss_task": a, "flag": torch.tensor(True), "count": torch.tensor(7), "plain": 0.5}
    log(0, stats)
    log(1, {"loss_task": 2.0, "flag": 0.0, "count": 1, "plain": 0.25})
    log.flush()
    rows = read_jsonl(tmp_path / "m.jsonl")
    assert rows[0] == {
        "step": 0,
        "epoch": 0,
        "method": "x",
        "seed": 3,
        "loss_task": float(a),  # the float32 value, exactly
        "flag": 1.0,
        "count": 7.0,
        "plain": 0.5,
    }
    assert list(rows[0]) == list(rows[1])  # one key order, as the strategy gave it
    assert rows[1]["loss_task"] == 2.0


def test_a_logged_tensor_keeps_its_value_when_the_strategy_updates_it_in_place(tmp_path):
    log = JsonlLogger(tmp_path / "m.jsonl")
    ema = torch.tensor(1.0)
    log(0, {"ema": ema})
    ema.mul_(3)
    log(1, {"ema": ema})
    log.flush()
    assert [r["ema"] for r in read_jsonl(tmp_path / "m.jsonl")] == [1.0, 3.0]


def test_to_floats_reads_many_tensors_with_one_transfer():
    reads = []

    class Counted(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__float__):
                reads.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    stats = {f"s{i}": torch.tensor(float(i)).as_subclass(Counted) for i in range(20)}
    assert to_floats(stats) == {f"s{i}": float(i) for i in range(20)}
    assert len(reads) == 1


def test_truncation_keeps_the_steps_before_the_checkpoint(tmp_path):
    log = JsonlLogger(tmp_path / "m.jsonl")
    for step in range(10):
        log(step, {"loss": float(step)})
    log.flush()
    log(10, {"loss": 10.0})  # buffered, not yet written: dropped too
    log.truncate_after(6)
    log.flush()
    assert [r["step"] for r in read_jsonl(tmp_path / "m.jsonl")] == list(range(6))
    log.truncate_after(0)
    assert (tmp_path / "m.jsonl").read_text() == ""


def test_a_cut_off_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "m.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in range(3)]
    path.write_text("\n".join(lines) + "\n" + lines[0][:9])  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="balgrad.train"):
        JsonlLogger(path).truncate_after(100)
    assert [r["step"] for r in read_jsonl(path)] == [0, 1, 2]
    assert "m.jsonl" in caplog.text and "line 4" in caplog.text


def test_tensorboard_gets_every_nth_step_from_tensors(tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(tmp_path / "tb", every=5)
    for step in range(12):
        tb(step, {"loss": torch.tensor(float(step) / 2)})
    tb.flush()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    points = [(e.step, e.value) for e in events.Scalars("step/loss")]
    assert points == [(0, 0.0), (5, 2.5), (10, 5.0)]
