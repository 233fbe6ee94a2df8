"""Does per-step logging slow training? BalGrad on tiny digits, with and without loggers.

Trains identical small models with the ``balgrad`` strategy for ``--steps`` steps per
repetition, once per variant: no observer, the JSON-lines logger (``metrics.jsonl``, as
``balgrad compare`` attaches it), and the TensorBoard logger too when TensorBoard is
importable. Repetitions are interleaved (the variant order rotates every repetition), so
load from other processes on a shared machine hits every variant alike. Each timed block
includes the loggers' end-of-epoch flush. Prints the median seconds per block and the
ratio with/without logging (1.00 = no overhead).

    python benchmarks/logging_overhead.py --steps 40 --reps 9 [--head-diagnostics]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from balgrad.config import RunConfig
from balgrad.data import Condition, InputPipeline
from balgrad.experiment import build_encoders, build_model, load_data, make_cache, seed_everything
from balgrad.strategies import create_strategy
from balgrad.train import JsonlLogger, TensorBoardLogger


def tensorboard_available() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class Variant:
    """One model + strategy + optimizer, with its own observers."""

    def __init__(
        self, name: str, cfg: RunConfig, pipeline: InputPipeline, info, observers: list, **options
    ):
        seed_everything(0)
        self.name = name
        self.model = build_model(cfg, pipeline, info)
        self.strategy = create_strategy("balgrad", **options)
        self.observers = observers
        for obs in observers:
            self.strategy.add_observer(obs)
        self.optimizer = torch.optim.Adam(self.strategy.param_groups(self.model, cfg.lr), lr=cfg.lr)
        self.times: list[float] = []

    def run(self, batches: list, steps: int) -> float:
        self.model.train()
        t0 = time.perf_counter()
        for i in range(steps):
            b = batches[i % len(batches)]
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(b.inputs)
            self.strategy.backward(self.model, out, b.target)
            self.optimizer.step()
        for obs in self.observers:  # the trainer flushes once per epoch
            obs.flush()
        dt = time.perf_counter() - t0
        self.times.append(dt)
        return dt


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40, help="training steps per timed block")
    p.add_argument("--reps", type=int, default=7, help="timed blocks per variant (interleaved)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--cache-dir", default=".balgrad-cache")
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument(
        "--head-diagnostics",
        action="store_true",
        help="also time BalGrad with head_diagnostics=False (the cos_head_unimodal statistic "
        "costs one extra backward pass through the head, logged or not)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = RunConfig(
        dataset="digits",
        dataset_options={"n_train": args.n_train, "n_test": 50},
        # a small step from scratch towers, as measured before
        modalities={"image": {"backbone": "cnn"}, "text": {"backbone": "small"}},
        embed_dim=args.embed_dim,
        cache_dir=args.cache_dir,
        progress=False,
    )
    data = load_data(cfg)
    pipeline = InputPipeline(
        encoders=build_encoders(cfg, data.train),
        missing=cfg.missing,
        cache=make_cache(cfg),
        num_workers=0,
        progress=False,
    )
    batches = list(
        pipeline.loader(data.train, Condition(), batch_size=args.batch_size, shuffle=True, seed=0)
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        variants = [
            Variant("no logging", cfg, pipeline, data.info, []),
            Variant(
                "jsonl",
                cfg,
                pipeline,
                data.info,
                [JsonlLogger(tmp / "jsonl" / "metrics.jsonl", method="balgrad", seed=0)],
            ),
        ]
        if tensorboard_available() and not args.no_tensorboard:
            variants.append(
                Variant(
                    "jsonl + tensorboard",
                    cfg,
                    pipeline,
                    data.info,
                    [
                        JsonlLogger(tmp / "tb" / "metrics.jsonl", method="balgrad", seed=0),
                        TensorBoardLogger(tmp / "tb" / "tensorboard"),
                    ],
                )
            )
        if args.head_diagnostics:
            variants.append(
                Variant(
                    "no logging, no head cos", cfg, pipeline, data.info, [], head_diagnostics=False
                )
            )
        for v in variants:  # warm-up block, not timed
            v.run(batches, min(args.steps, 5))
            v.times.clear()
        for rep in range(args.reps):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                v.run(batches, args.steps)
        lines = sum(1 for _ in (tmp / "jsonl" / "metrics.jsonl").open())

    base = statistics.median(variants[0].times)
    print(
        f"balgrad on digits: {args.steps} steps x {args.reps} interleaved reps, batch {args.batch_size}, "
        f"{args.threads} thread(s); jsonl lines written: {lines}"
    )
    print(f"{'variant':<26}{'median s/block':>15}{'ms/step':>10}{'ratio':>8}{'ratio (sum)':>13}")
    for v in variants:
        med = statistics.median(v.times)
        print(
            f"{v.name:<26}{med:>15.3f}{1000 * med / args.steps:>10.2f}{med / base:>8.3f}"
            f"{sum(v.times) / sum(variants[0].times):>13.3f}"
        )


if __name__ == "__main__":
    main()
