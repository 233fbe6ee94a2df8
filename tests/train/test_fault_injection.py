"""SIGKILL a `balgrad compare` at seeded random points (during a training step, or between
the renames of a checkpoint save), `--resume` after each, and compare the finished run
folder with an uninterrupted one: the same metrics.jsonl and epochs.jsonl rows (steps and
values) and bitwise-equal model weights."""

from __future__ import annotations

import json
import random

import pytest
from cli_children import TINY, run

pytestmark = pytest.mark.slow


def argv(out, name):
    return [
        "compare",
        *TINY,
        "--methods",
        "joint",
        "balgrad",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--name",
        name,
        "--cache-dir",
        str(out / "cache"),
    ]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def kill_points(seed: int, n: int) -> list[tuple]:
    rng = random.Random(seed)
    # 2 methods x 2 epochs x 5 steps = 20 steps, 2 renames per checkpoint save after
    # the first; a resumed process redoes at most one epoch, so every point is reached
    return [
        ("save", rng.randint(1, 3), "kill")
        if rng.random() < 0.3
        else ("step", rng.randint(1, 8), "kill")
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", [0])
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_run(tmp_path, seed):
    assert run(argv(tmp_path, "straight"), tmp_path / "straight.log") == 0
    points = kill_points(seed, 3)
    print("kill points", points)
    assert run(argv(tmp_path, "killed"), tmp_path / "k0.log", points[0]) == -9
    for i, point in enumerate(points[1:], 1):
        code = run([*argv(tmp_path, "killed"), "--resume"], tmp_path / f"k{i}.log", point)
        assert code == -9, (tmp_path / f"k{i}.log").read_text()[-2000:]
    log = tmp_path / "final.log"
    assert run([*argv(tmp_path, "killed"), "--resume"], log) == 0, log.read_text()[-2000:]
    assert "taking over a stale lock" in log.read_text()  # the last kill left run.lock

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert not (killed / "run.lock").exists()
    for method in ("joint", "balgrad"):
        a, b = straight / method / "seed0", killed / method / "seed0"
        assert rows(b / "metrics.jsonl") == rows(a / "metrics.jsonl"), method
        assert len(rows(a / "metrics.jsonl")) == 10
        assert rows(b / "epochs.jsonl") == rows(a / "epochs.jsonl"), method
        assert (b / "model.safetensors").read_bytes() == (a / "model.safetensors").read_bytes()
        ea, eb = (json.loads((d / "eval.json").read_text()) for d in (a, b))
        assert ea["conditions"] == eb["conditions"]
