"""Tiny float64 models over named modalities, fixed batches, the plain-loop reference and
a strategy that leaves gradient averaging to DDP's reducer (shared by the integration
tests and the two-process workers).

Three set-ups: ``image_text`` (the two-modality case), ``audio_visual``
(a spectrogram [B, 1, 16, 16] and frames [B, 3, 8, 8], each through a tiny conv) and
``audio_visual_text`` (those plus text features [B, 12])."""

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
from balgrad.models import MultimodalModel
from balgrad.strategies import STRATEGY_REGISTRY, Strategy, create_strategy
from balgrad.tasks import task_loss

LR = 0.1
STEPS, EVERY = 4, 2  # optimizer steps per test run; logging interval
NUM_CLASSES = 3

#: set-up -> {modality: the shape of one sample}, in the model's modality order
SETUPS = {
    "image_text": {"image": (5,), "text": (4,)},
    "audio_visual": {"audio": (1, 16, 16), "visual": (3, 8, 8)},
    "audio_visual_text": {"audio": (1, 16, 16), "visual": (3, 8, 8), "text": (12,)},
}
NAMED = ("audio_visual", "audio_visual_text")  # the set-ups of issue 15's "done when"


class Lin(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.out_dim = d_out
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.lin(x)


class Conv(nn.Module):
    """A strided conv and global average pooling: a spectrogram's or a frame's tower."""

    def __init__(self, channels: int, out_dim: int = 6):
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Conv2d(channels, 4, 3, stride=2), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.proj = nn.Linear(4, out_dim)

    def forward(self, x):
        return self.proj(self.net(x))


def encoder(shape: tuple[int, ...]) -> nn.Module:
    return Lin(shape[0], 6) if len(shape) == 1 else Conv(shape[0])


def make_model(setup: str = "image_text") -> MultimodalModel:
    torch.manual_seed(0)
    shapes = SETUPS[setup]
    encoders = {m: encoder(s) for m, s in shapes.items()}
    model = MultimodalModel(encoders, NUM_CLASSES, embed_dim=6)
    return model.double()


def make_batches(
    steps: int, batch_size: int = 8, seed: int = 1, setup: str = "image_text"
) -> list[dict]:
    """Batches in the integrations' dict form: one key per modality plus "labels"."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        batch = {
            m: torch.randn(batch_size, *s, generator=g, dtype=torch.float64)
            for m, s in SETUPS[setup].items()
        }
        batch["labels"] = torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)
        batches.append(batch)
    return batches


def inputs_of(batch: dict, modalities) -> dict:
    return {m: batch[m] for m in modalities}


def half(batch: dict, rank: int) -> dict:
    n = len(batch["labels"]) // 2
    return {k: v[rank * n : rank * n + n] for k, v in batch.items()}


class ReducerJoint(Strategy):
    """Joint training by one ``.backward()``, leaving the gradient average to DDP."""

    name = "reducer_joint"
    reduces_own_gradients = False

    def compute(self, model, output, target, ctx):
        loss = task_loss(output.logits, target, model.task)
        loss.backward()
        return {"loss_task": loss.detach()}


def builtin_strategies() -> list[str]:
    """Every strategy and preset balgrad registers itself (installed plug-ins left out):
    a strategy added to the registry is covered without touching the tests."""
    entries = STRATEGY_REGISTRY.entries(plugins=False)
    return [e.name for e in entries if e.origin == "balgrad"]


def methods() -> list[str]:
    """joint, BalGrad, balgrad_fast and the reducer-reliant stand-in (the DDP cases)."""
    return ["joint", "balgrad", "reducer_joint", "balgrad_fast"]


def build_strategy(method: str) -> Strategy:
    return ReducerJoint() if method == "reducer_joint" else create_strategy(method)


def snapshot(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def plain_loop(
    method: str,
    batches: list[dict],
    epochs: int = 1,
    setup: str = "image_text",
    pass_batches: list[dict] | None = None,
):
    """The README's plain training loop (SGD): (final parameters, per-step statistics,
    the parameters after every step). A strategy that needs the epoch-start pass (PMR)
    gets it over ``pass_batches`` (default: the training batches) after on_epoch_start."""
    model, strategy = make_model(setup), build_strategy(method)
    optimizer = torch.optim.SGD(strategy.param_groups(model, LR), lr=LR)
    history, trajectory = [], []
    for epoch in range(epochs):
        strategy.on_epoch_start(epoch, epochs)
        if strategy.needs_epoch_pass:
            seen = batches if pass_batches is None else pass_batches
            # G-Blend's copies train with an optimizer like the loop's, as the integrations'
            extra = {"make_optimizer": lambda ps: torch.optim.SGD(ps, lr=LR)}
            strategy.prepare_epoch(
                model,
                [(inputs_of(b, model.modalities), b["labels"]) for b in seen],
                **(extra if strategy.trains_copies else {}),
            )
        for b in batches:
            if strategy.owns_optimizer_step:  # MLA: its own steps, one per modality
                x, y = inputs_of(b, model.modalities), b["labels"]
                stats = strategy.train_step(model, x, y, optimizer)
            else:
                optimizer.zero_grad()
                out = model(inputs_of(b, model.modalities))
                stats = strategy.backward(model, out, b["labels"])
                optimizer.step()
            history.append({k: float(v) for k, v in stats.items()})
            trajectory.append(snapshot(model))
    return trajectory[-1], history, trajectory


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
    params = list(params)
    assert len(params) == len(reference)
    for p, q in zip(params, reference):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol)


def assert_matches_plain_loop(
    method,
    batches,
    params,
    logged,
    prefix="",
    setup="image_text",
    trajectory=None,
    pass_batches=None,
) -> None:
    """``params`` equal the plain loop's after ``batches`` (and, given the parameters
    after every step, ``trajectory``, so do those), and the ``logged`` rows (the last log
    lines, oldest first) hold the means of its statistics over each interval."""
    reference, history, steps = plain_loop(method, batches, setup=setup, pass_batches=pass_batches)
    assert_params_equal(params, reference)
    if trajectory is not None:
        assert len(trajectory) == len(steps)
        for got, want in zip(trajectory, steps):
            assert_params_equal(got, want)
    expected = interval_means(history, EVERY)
    assert 1 <= len(logged) <= len(expected)
    for row, means in zip(logged, expected[len(expected) - len(logged) :]):
        for k, v in means.items():
            assert row[prefix + k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def per_modality_statistics(keys, modalities) -> dict[str, set[str]]:
    """{modality: the statistics named ``<statistic>_<modality>`` among ``keys``}."""
    keys = list(keys)
    return {m: {k[: -len(m) - 1] for k in keys if k.endswith(f"_{m}")} for m in modalities}


def assert_every_modality_reported(keys, modalities, prefix="") -> None:
    """Every modality has statistics named ``<prefix><statistic>_<modality>`` among
    ``keys``, and at least one statistic comes for all of them."""
    keys = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
    found = per_modality_statistics(keys, modalities)
    for m, names in found.items():
        assert names, f"no statistic of modality {m!r} among {sorted(keys)}"
    assert set.intersection(*found.values()), f"no statistic common to {list(modalities)}"


# -- two processes (torch.distributed.run, gloo on CPU) ----------------------------------

REDUCER_CALLS = [0]


def counting_allreduce(state, bucket):
    """DDP's default all-reduce, counted: did DDP's reducer communicate at all?"""
    REDUCER_CALLS[0] += 1
    return allreduce_hook(state, bucket)


def run_two_processes(worker: Path, out_dir: Path, steps: int, methods: list[str]) -> None:
    """Run ``worker out_dir steps *methods`` as two ranks; fail with its output. The
    ranks import balgrad from the sources under test (PYTHONPATH goes first)."""
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
    """End a worker: its process group, then the process, without the interpreter's
    teardown. Left to that teardown, gloo's threads can be destroyed while still joinable
    ("terminate called without an active exception", SIGABRT) after every result is
    written; ending the group first was not enough on a loaded 2-core machine (a CI run
    saw it again), so the worker leaves with ``os._exit(0)`` once its files are closed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
