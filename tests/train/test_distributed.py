"""Data-parallel strategies: two gloo ranks on half batches must apply exactly the
update that one process applies on the whole batch (SPEC section 3, last paragraph)."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from balgrad._grad import DistributedGradientSync
from balgrad.models import TwoTowerModel
from balgrad.strategies import create_strategy

METHODS = ["joint", "balgrad", "ogm_ge", "agm", "balgrad_projection_only"]
STEPS = 4


class Lin(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.out_dim = d_out
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.lin(x)


def make_model():
    torch.manual_seed(0)
    return TwoTowerModel(Lin(5, 6), Lin(4, 6), 3, embed_dim=6).double()


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


def train(method, model, data, sync=None, part=slice(None)):
    strategy = create_strategy(method)
    if sync is not None:
        strategy.sync = sync
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, t, y in data:
        opt.zero_grad()
        out = model(x[part], t[part])
        strategy.backward(model, out, y[part])
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _worker(rank, world, init_file, method, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        half = slice(rank * 4, rank * 4 + 4)
        params = train(method, make_model(), batches(), DistributedGradientSync(), half)
        torch.save(params, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_on_half_batches_match_one_process_on_the_whole_batch(tmp_path, method):
    reference = train(method, make_model(), batches())
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), method, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        params = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for p, q in zip(params, reference):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)
