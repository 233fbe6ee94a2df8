"""One rank of the two-process Lightning DDP test, launched by ``torch.distributed.run``:
trains each method on this rank's half of every batch and saves the parameters, the
last logged statistics and how often DDP's reducer all-reduced."""

from __future__ import annotations

import os
import sys

import lightning.pytorch as pl
import torch
from integration_fixtures import (
    LR,
    REDUCER_CALLS,
    build_strategy,
    counting_allreduce,
    finish_distributed,
    half,
    make_batches,
    make_model,
)
from torch.utils.data import DataLoader

from balgrad.integrations.lightning import BalGradModule


class CountReducerCalls(pl.Callback):
    # Lightning registers a ddp_comm_hook on CUDA only; on CPU it is registered here
    def on_train_start(self, trainer, pl_module):
        trainer.strategy.model.register_comm_hook(None, counting_allreduce)


def main(out_dir: str, steps: int, methods: list[str]) -> None:
    rank = int(os.environ["RANK"])
    batches = [half(b, rank) for b in make_batches(steps)]
    for method in methods:
        REDUCER_CALLS[0] = 0
        module = BalGradModule(
            make_model(), build_strategy(method), lr=LR, optimizer=torch.optim.SGD
        )
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=2,
            strategy="ddp",
            callbacks=[CountReducerCalls()],
            max_steps=steps,
            log_every_n_steps=2,
            logger=False,
            use_distributed_sampler=False,  # each rank already holds its half
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, DataLoader(batches, batch_size=None))
        torch.save(
            {
                "params": [p.detach().clone() for p in module.model.parameters()],
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
                "reducer_calls": REDUCER_CALLS[0],
            },
            os.path.join(out_dir, f"{method}_rank{rank}.pt"),
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
    finish_distributed()
