"""Data-parallel strategies: two gloo ranks on half batches must apply exactly the
update that one process applies on the whole batch (SPEC section 3, last paragraph),
at two modalities and at three (every registered strategy).

One spawn of two ranks runs every case (strategies made before ``init_process_group``,
an explicit sync, balgrad_fast and joint under real DistributedDataParallel, BatchNorm
buffers); the tests compare what the ranks saved with single-process runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from balgrad._grad import DistributedGradientSync
from balgrad.errors import ConfigError
from balgrad.models._multimodal import MultimodalModel
from balgrad.strategies import create_strategy, list_strategies

ROOT = Path(__file__).resolve().parents[2]
#: every registered strategy, so a new or plug-in one is checked too
METHODS = list_strategies()
DDP_METHODS = ["balgrad_fast", "joint"]
THREE_METHODS = list_strategies()
STEPS = 4


class Lin(nn.Module):
    def __init__(self, d_in, d_out, norm=False):
        super().__init__()
        self.out_dim = d_out
        self.lin = nn.Linear(d_in, d_out)
        self.norm = nn.BatchNorm1d(d_out) if norm else nn.Identity()

    def forward(self, x):
        return self.norm(self.lin(x))


def make_model(norm=False):
    torch.manual_seed(0)
    return MultimodalModel({"image": Lin(5, 6, norm), "text": Lin(4, 6)}, 3, embed_dim=6).double()


def batches():
    g = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(8, 5, generator=g, dtype=torch.float64),
            torch.randn(8, 4, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (8,), generator=g),
        )
        for _ in range(STEPS)
    ]


def make_model_3():
    torch.manual_seed(0)
    towers = {"audio": Lin(5, 6), "visual": Lin(4, 6), "text": Lin(3, 6)}
    return MultimodalModel(towers, 3, embed_dim=6).double()


def batches_3():
    g = torch.Generator().manual_seed(2)
    return [
        (
            {m: torch.randn(8, d, generator=g, dtype=torch.float64) for m, d in DIMS_3.items()},
            torch.randint(0, 3, (8,), generator=g),
        )
        for _ in range(STEPS)
    ]


DIMS_3 = {"audio": 5, "visual": 4, "text": 3}


def train_3(strategy, model, data, part=slice(None), wrapped=None):
    """As :func:`train`, for the three-modality model (MSLR's epoch hook included)."""
    net = wrapped if wrapped is not None else model
    opt = torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1)
    # PMR's epoch-start pass: each rank on its part, the class sums all-reduced
    seen = [({m: x[part] for m, x in inputs.items()}, y[part]) for inputs, y in data]
    strategy.on_epoch_start(0, 2)
    _prepare(strategy, net, seen)
    for step, (inputs, y) in enumerate(data):
        if step == 2:
            strategy.on_epoch_end(0, opt, {"audio": 50.0, "visual": 40.0, "text": 30.0})
            strategy.on_epoch_start(1, 2)
            _prepare(strategy, net, seen)
        x = {m: v[part] for m, v in inputs.items()}
        if strategy.owns_optimizer_step:  # MLA: its own steps, one per modality
            strategy.train_step(net, x, y[part], opt)
            continue
        opt.zero_grad()
        strategy.backward(net, net(x), y[part])
        opt.step()
    return {"params": [p.detach().clone() for p in model.parameters()]}


def train(strategy, model, data, part=slice(None), wrapped=None):
    """Steps of SGD; ``wrapped`` (e.g. the DDP module) is what forward and backward see."""
    net = wrapped if wrapped is not None else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _prepare(strategy, net, [({"image": x[part], "text": t[part]}, y[part]) for x, t, y in data])
    for x, t, y in data:
        if strategy.owns_optimizer_step:  # MLA: its own steps, one per modality
            forward = lambda _inputs, x=x, t=t: net({"image": x[part], "text": t[part]})  # noqa: E731
            strategy.train_step(net, None, y[part], opt, forward=forward)
            continue
        opt.zero_grad()
        strategy.backward(net, net({"image": x[part], "text": t[part]}), y[part])
        opt.step()
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
    }


def _prepare(strategy, net, seen) -> None:
    """The own loop's epoch-start pass, for a strategy that needs one (PMR)."""
    if strategy.needs_epoch_pass:
        strategy.prepare_epoch(net, seen)


def _worker(rank, world, init_file, out_dir):
    # made before the process group exists: the sync must still be found at backward()
    early = {m: create_strategy(m) for m in METHODS}
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        half = slice(rank * 4, rank * 4 + 4)
        out = {f"own/{m}": train(s, make_model(), batches(), half) for m, s in early.items()}
        explicit = create_strategy("balgrad")
        explicit.sync = DistributedGradientSync()
        out["explicit/balgrad"] = train(explicit, make_model(), batches(), half)
        for m in DDP_METHODS:
            model = make_model()
            out[f"ddp/{m}"] = train(
                create_strategy(m), model, batches(), half, DistributedDataParallel(model)
            )
        out["bn/own"] = train(create_strategy("joint"), make_model(norm=True), batches(), half)
        model = make_model(norm=True)
        out["bn/ddp"] = train(
            create_strategy("joint"), model, batches(), half, DistributedDataParallel(model)
        )
        for m in THREE_METHODS:
            out[f"three/{m}"] = train_3(create_strategy(m), make_model_3(), batches_3(), half)
        model = make_model_3()
        out["three/ddp/balgrad_fast"] = train_3(
            create_strategy("balgrad_fast"),
            model,
            batches_3(),
            half,
            DistributedDataParallel(model),
        )
        model = make_model()
        try:
            train(
                create_strategy("balgrad"), model, batches(), half, DistributedDataParallel(model)
            )
            out["refused"] = ""
        except ConfigError as err:
            out["refused"] = str(err)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(2, str(tmp / "init"), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def _close(a, b):
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_on_half_batches_match_one_process_on_the_whole_batch(ranks, method):
    """Strategies created before init_process_group, no sync set by hand."""
    reference = train(create_strategy(method), make_model(), batches())
    for out in ranks:
        _close(out[f"own/{method}"]["params"], reference["params"])


def test_an_explicit_sync_still_works(ranks):
    reference = train(create_strategy("balgrad"), make_model(), batches())
    for out in ranks:
        _close(out["explicit/balgrad"]["params"], reference["params"])


@pytest.mark.parametrize("method", DDP_METHODS)
def test_under_distributed_data_parallel(ranks, method):
    """One backward through DDP's reducer: the same update as one process."""
    reference = train(create_strategy(method), make_model(), batches())
    for out in ranks:
        _close(out[f"ddp/{method}"]["params"], reference["params"])


def test_buffers_are_synced_as_ddp_syncs_them(ranks):
    """BatchNorm statistics: every rank ends with rank 0's buffers, and the parameters
    and rank 0's buffers equal those of the same training under DDP (which broadcasts
    rank 0's buffers before every forward)."""
    own = [out["bn/own"] for out in ranks]
    _close(own[1]["buffers"], own[0]["buffers"])
    _close(own[0]["buffers"], ranks[0]["bn/ddp"]["buffers"])
    for out in ranks:
        _close(out["bn/own"]["params"], out["bn/ddp"]["params"])
    # the ranks saw different halves: without the sync their statistics would differ
    assert not torch.allclose(ranks[1]["bn/ddp"]["buffers"][0], ranks[0]["bn/ddp"]["buffers"][0])


@pytest.mark.parametrize("method", THREE_METHODS)
def test_three_modalities_on_two_ranks_match_one_process(ranks, method):
    reference = train_3(create_strategy(method), make_model_3(), batches_3())
    for out in ranks:
        _close(out[f"three/{method}"]["params"], reference["params"])


def test_three_modalities_under_distributed_data_parallel(ranks):
    reference = train_3(create_strategy("balgrad_fast"), make_model_3(), batches_3())
    for out in ranks:
        _close(out["three/ddp/balgrad_fast"]["params"], reference["params"])


def test_a_strategy_with_separate_gradients_refuses_a_ddp_model(ranks):
    assert "unwrapped model" in ranks[0]["refused"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_torchrun_example_matches_one_process(tmp_path):
    """examples/own_loop_torchrun.py through the real torchrun launcher, 2 CPU ranks."""
    example = ROOT / "examples" / "own_loop_torchrun.py"
    args = ["--double", "--steps", "5", "--save", str(tmp_path)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(_free_port()), str(example), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    sys.path.insert(0, str(example.parent))
    try:
        import own_loop_torchrun

        single = own_loop_torchrun.main(["--double", "--steps", "5"])
    finally:
        sys.path.remove(str(example.parent))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for a, b in zip(r0, r1, strict=True):
        assert torch.equal(a, b)
    _close(r0, single)


def test_end_distributed_leaves_a_group_it_did_not_create(tmp_path):
    """The CLI ends the process group it created for torchrun; one a user created (in-process
    use of ``balgrad.cli.main``) stays theirs."""
    from balgrad.train._distributed import end_distributed, init_distributed

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        assert not init_distributed("cpu").enabled  # WORLD_SIZE unset: nothing created
        end_distributed()
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
