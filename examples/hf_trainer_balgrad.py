"""BalGrad inside the Hugging Face Trainer, on the built-in digits data (CPU: seconds).

    python examples/hf_trainer_balgrad.py --steps 60
    accelerate launch --num_processes 4 examples/hf_trainer_balgrad.py   # 4 GPUs, DDP
    torchrun --nproc_per_node 2 examples/hf_trainer_balgrad.py           # 2 CPU processes

Needs ``pip install balgrad[hf]``. The model's modalities are named ``image`` and
``text``; the collator makes batches ``{"image": ..., "text": ..., "labels": ...}``. The
Trainer logs the strategy's statistics every ``--logging-steps`` (averaged over the
interval); the script prints the last line and the fused / image-only / text-only
evaluation accuracy (the Trainer reports fractions: ``eval_image_accuracy`` 0.9 is 90%).
"""

from __future__ import annotations

import argparse
import tempfile

from torch.utils.data import Subset
from transformers import TrainingArguments

import balgrad
from balgrad.backbones import create_backbone
from balgrad.data.readers import load_builtin
from balgrad.integrations import ExampleCollator
from balgrad.integrations.hf import BalGradTrainer


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps")
    parser.add_argument("--method", default="balgrad", help="any name of balgrad list")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-examples", type=int, default=500, help="test examples scored")
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    args = parser.parse_args(argv)

    train, test = load_builtin("digits", "train"), load_builtin("digits", "test")
    image_encoder = create_backbone(
        "image", "cnn", image_size=28, channels=1, width=16, norm="none"
    )
    text_encoder = create_backbone("text", "small", texts=train.texts, max_length=24)
    encoders = {"image": image_encoder, "text": text_encoder}
    model = balgrad.MultimodalModel(encoders, train.info.num_classes)

    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=250,
            learning_rate=args.lr,
            lr_scheduler_type="constant",
            max_grad_norm=0.0,  # leave the strategy's gradient as it is
            logging_steps=args.logging_steps,
            bf16=args.bf16,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
        )
        trainer = BalGradTrainer(
            model=model,
            args=training,
            strategy=balgrad.create_strategy(args.method),
            train_dataset=train,
            eval_dataset=Subset(test, range(args.eval_examples)),
            data_collator=ExampleCollator(encoders),
        )
        trainer.train()
        scores = trainer.evaluate()
    last = [row for row in trainer.state.log_history if "loss" in row][-1]
    if trainer.is_world_process_zero():
        print(f"{args.method}, {trainer.state.global_step} steps; last logging interval:")
        for name, value in last.items():
            print(f"  {name:32s} {value:+.4f}")
        # the Trainer's metrics are fractions
        print("  " + ", ".join(f"{k} {v:.1%}" for k, v in scores.items() if "accuracy" in k))
    return {**last, **scores}


if __name__ == "__main__":
    main()
