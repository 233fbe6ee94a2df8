"""The README's own-loop example, data-parallel under torchrun.

    torchrun --nproc_per_node 2 examples/own_loop_torchrun.py            # 2 processes
    python examples/own_loop_torchrun.py                                 # 1 process

Every process draws the same global batch and trains on its share of it. The strategy
all-reduces its gradients and batch statistics itself, before any coefficient or
projection, so every rank applies the update one process would apply to the whole
global batch; it is created before ``init_process_group`` on purpose: the gradient sync
is resolved at every ``backward()``. (``joint``, ``mslr`` and ``balgrad_fast`` also accept
a ``DistributedDataParallel``-wrapped model; see the README.)
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

import balgrad


class Tower(nn.Module):  # any encoder with an `out_dim`
    def __init__(self, d_in, out_dim=32):
        super().__init__()
        self.out_dim, self.net = out_dim, nn.Sequential(nn.Linear(d_in, out_dim), nn.ReLU())

    def forward(self, x):
        return self.net(x)


def main(argv=None) -> list[torch.Tensor]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="balgrad")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16, help="the global batch")
    p.add_argument("--double", action="store_true", help="float64 (tests compare runs to 1e-9)")
    p.add_argument("--save", help="write this rank's final parameters to SAVE/rank<r>.pt")
    args = p.parse_args(argv)
    dtype = torch.float64 if args.double else torch.float32

    torch.manual_seed(0)  # the same initial weights in every process
    model = balgrad.TwoTowerModel(Tower(64), Tower(20), num_classes=5, fusion="concat").to(dtype)
    strategy = balgrad.create_strategy(args.method)
    optimizer = torch.optim.Adam(strategy.param_groups(model, lr=1e-3))

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:  # launched by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    shard = slice(rank * args.batch_size // world, (rank + 1) * args.batch_size // world)

    data = torch.Generator().manual_seed(1)  # every rank draws the same global batches
    for _ in range(args.steps):
        image = torch.randn(args.batch_size, 64, generator=data, dtype=dtype)
        text = torch.randn(args.batch_size, 20, generator=data, dtype=dtype)
        target = torch.randint(0, 5, (args.batch_size,), generator=data)
        optimizer.zero_grad()
        output = model(image[shard], text[shard])
        stats = strategy.backward(model, output, target[shard])
        optimizer.step()

    if rank == 0:
        print(f"{args.method}: {world} process(es), final L_T = {float(stats['loss_task']):.4f}")
    params = [p.detach().clone() for p in model.parameters()]
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        torch.save(params, os.path.join(args.save, f"rank{rank}.pt"))
    if world > 1:
        dist.destroy_process_group()
    return params


if __name__ == "__main__":
    main()
