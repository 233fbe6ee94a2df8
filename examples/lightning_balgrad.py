"""BalGrad inside PyTorch Lightning, on the built-in digits data (CPU: seconds).

    python examples/lightning_balgrad.py --steps 60
    python examples/lightning_balgrad.py --devices 2        # DDP, two CPU processes (gloo)
    python examples/lightning_balgrad.py --accelerator gpu --devices 4 --method ogm_ge

Needs ``pip install balgrad[lightning]``. The model's modalities are named ``image`` and
``text``; the collator makes batches ``{"image": ..., "text": ..., "labels": ...}``.
Prints the strategy's statistics (averaged over the last logging interval) and the
fused / image-only / text-only validation accuracy (``val/image_accuracy``, percent).
"""

from __future__ import annotations

import argparse

import lightning.pytorch as L
from torch.utils.data import DataLoader, Subset

import balgrad
from balgrad.backbones import create_backbone
from balgrad.data.readers import load_builtin
from balgrad.integrations import ExampleCollator
from balgrad.integrations.lightning import BalGradModule


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps")
    parser.add_argument("--method", default="balgrad", help="any name of balgrad list")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-examples", type=int, default=500, help="test examples scored")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, default=1)
    args = parser.parse_args(argv)
    L.seed_everything(0, verbose=False)

    train, test = load_builtin("digits", "train"), load_builtin("digits", "test")
    image_encoder = create_backbone(
        "image", "cnn", image_size=28, channels=1, width=16, norm="none"
    )
    text_encoder = create_backbone("text", "small", texts=train.texts, max_length=24)
    encoders = {"image": image_encoder, "text": text_encoder}
    model = balgrad.MultimodalModel(encoders, train.info.num_classes)
    collate = ExampleCollator(encoders)
    train_loader = DataLoader(train, args.batch_size, shuffle=True, collate_fn=collate)
    val_loader = DataLoader(Subset(test, range(args.eval_examples)), 250, collate_fn=collate)

    module = BalGradModule(model, balgrad.create_strategy(args.method), lr=args.lr)
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        log_every_n_steps=args.logging_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_loader, val_loader)
    stats = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    (scores,) = trainer.validate(module, val_loader, verbose=False)
    if trainer.is_global_zero:
        print(f"{args.method}, {trainer.global_step} steps; last interval's statistics:")
        for name, value in stats.items():
            print(f"  {name:32s} {value:+.4f}")
        print("  " + ", ".join(f"{k} {v:.1f}%" for k, v in scores.items()))
    return {**stats, **scores}


if __name__ == "__main__":
    main()
