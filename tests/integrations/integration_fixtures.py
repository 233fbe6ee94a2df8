"""A tiny float64 two-tower model, fixed batches, the plain-loop reference and a
strategy that leaves gradient averaging to DDP's reducer (shared by the integration
tests and the two-process Lightning worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

import balgrad
from balgrad.models import TwoTowerModel
from balgrad.strategies import Strategy, create_strategy, list_strategies
from balgrad.tasks import task_loss

LR = 0.1
STEPS, EVERY = 4, 2  # optimizer steps per test run; logging interval


class Lin(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.out_dim = d_out
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.lin(x)


def make_model() -> TwoTowerModel:
    torch.manual_seed(0)
    return TwoTowerModel(Lin(5, 6), Lin(4, 6), 3, embed_dim=6).double()


def make_batches(steps: int, batch_size: int = 8, seed: int = 1) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randn(batch_size, 5, generator=g, dtype=torch.float64),
            "text": torch.randn(batch_size, 4, generator=g, dtype=torch.float64),
            "labels": torch.randint(0, 3, (batch_size,), generator=g),
        }
        for _ in range(steps)
    ]


def half(batch: dict, rank: int) -> dict:
    n = len(batch["labels"]) // 2
    return {k: v[rank * n : rank * n + n] for k, v in batch.items()}


class ReducerJoint(Strategy):
    """Joint training by one ``.backward()``, leaving the gradient average to DDP."""

    name = "reducer_joint"
    reduces_own_gradients = False

    def compute(self, model, output, target):
        loss = task_loss(output.logits, target, model.task)
        loss.backward()
        return {"loss_task": loss.detach()}


HAS_FAST = "balgrad_fast" in list_strategies()


def methods() -> list:
    """joint, BalGrad and the reducer-reliant stand-in; balgrad_fast once it exists."""
    fast = "balgrad_fast"
    if not HAS_FAST:
        fast = pytest.param(fast, marks=pytest.mark.skip(reason="balgrad_fast is not on main yet"))
    return ["joint", "balgrad", "reducer_joint", fast]


def build_strategy(method: str) -> Strategy:
    return ReducerJoint() if method == "reducer_joint" else create_strategy(method)


def plain_loop(method: str, batches: list[dict], epochs: int = 1):
    """Parameters and per-step statistics of the README's plain training loop (SGD)."""
    model, strategy = make_model(), build_strategy(method)
    optimizer = torch.optim.SGD(strategy.param_groups(model, LR), lr=LR)
    history = []
    for epoch in range(epochs):
        strategy.on_epoch_start(epoch, epochs)
        for b in batches:
            optimizer.zero_grad()
            out = model(b["image"], b["text"])
            stats = strategy.backward(model, out, b["labels"])
            optimizer.step()
            history.append({k: float(v) for k, v in stats.items()})
    return [p.detach().clone() for p in model.parameters()], history


def interval_means(history: list[dict], every: int) -> list[dict]:
    """Means of each statistic over consecutive windows of ``every`` steps, each over the
    steps that logged it (e.g. BalGrad's head cosine comes every 50 steps only)."""
    out = []
    for start in range(0, len(history) - every + 1, every):
        window = history[start : start + every]
        keys = dict.fromkeys(k for s in window for k in s)
        out.append(
            {k: sum(s[k] for s in window if k in s) / sum(k in s for s in window) for k in keys}
        )
    return out


def assert_params_equal(params, reference, rtol=1e-9, atol=1e-11) -> None:
    assert len(params) == len(reference)
    for p, q in zip(params, reference):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol)


def assert_matches_plain_loop(method, batches, params, logged, prefix="") -> None:
    """``params`` equal the plain loop's after ``batches``, and the ``logged`` rows (the
    last log lines, oldest first) hold the means of its statistics over each interval."""
    reference, history = plain_loop(method, batches)
    assert_params_equal(list(params), reference)
    expected = interval_means(history, EVERY)
    assert 1 <= len(logged) <= len(expected)
    for row, means in zip(logged, expected[len(expected) - len(logged) :]):
        for k, v in means.items():
            assert row[prefix + k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


# -- two processes (torch.distributed.run, gloo on CPU) ----------------------------------

REDUCER_CALLS = [0]


def counting_allreduce(state, bucket):
    """DDP's default all-reduce, counted: did DDP's reducer communicate at all?"""
    REDUCER_CALLS[0] += 1
    return allreduce_hook(state, bucket)


def run_two_processes(worker: Path, out_dir: Path, steps: int, methods: list[str]) -> None:
    """Run ``worker out_dir steps *methods`` as two ranks; fail with its output."""
    src = Path(balgrad.__file__).resolve().parents[1]
    path = os.pathsep.join([str(src), str(worker.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*launch, str(worker), str(out_dir), str(steps), *methods],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def finish_distributed() -> None:
    """End a worker's process group before the interpreter exits. Left to interpreter
    teardown, gloo's threads can be destroyed while still joinable ("terminate called
    without an active exception", SIGABRT) after every result is written."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
