"""One process of the two-process Trainer test, launched by ``torch.distributed.run``:
trains each method under accelerate's DDP (gloo on CPU) and saves the parameters, the
batches this process saw, the training log lines and how often DDP's reducer
all-reduced."""

from __future__ import annotations

import os
import sys

import torch
from integration_fixtures import (
    REDUCER_CALLS,
    build_strategy,
    counting_allreduce,
    finish_distributed,
    make_model,
)
from test_hf_trainer import RecordingCollator, arguments, samples
from transformers import TrainerCallback

from balgrad.integrations.hf import BalGradTrainer


class CountReducerCalls(TrainerCallback):
    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.model_wrapped.register_comm_hook(None, counting_allreduce)


def main(out_dir: str, steps: int, methods: list[str]) -> None:
    rank = int(os.environ["RANK"])
    for method in methods:
        REDUCER_CALLS[0] = 0
        collate = RecordingCollator()
        args = arguments(os.path.join(out_dir, method), max_steps=steps)
        args.per_device_train_batch_size = 4  # two processes: 8 per step, as in one
        trainer = BalGradTrainer(
            model=make_model(),
            args=args,
            strategy=build_strategy(method),
            train_dataset=samples(64),
            data_collator=collate,
        )
        trainer.add_callback(CountReducerCalls(trainer))
        trainer.train()
        torch.save(
            {
                "params": [p.detach().clone() for p in trainer.model.parameters()],
                "batches": collate.batches[:steps],
                "logs": [row for row in trainer.state.log_history if "loss" in row],
                "distributed": str(trainer.accelerator.distributed_type),
                "reducer_calls": REDUCER_CALLS[0],
            },
            os.path.join(out_dir, f"{method}_rank{rank}.pt"),
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
    finish_distributed()
