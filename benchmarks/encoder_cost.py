"""What the ``fused`` option of the frozen EfficientNet-Lite0 towers buys: the time per item
of the plain and the fused form of ``efficientnet-lite0`` (images) and
``efficientnet-lite0-mel`` (spectrogram images), interleaved repetitions in one process, and
how far the fused form's features are from the plain ones.

    python benchmarks/encoder_cost.py                 # 112 px, batches of 64, 7 repetitions
    python benchmarks/encoder_cost.py --size 224 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from balgrad.backbones import EfficientNetLite0Encoder, SpectrogramImageEncoder


def per_item_ms(encoder, x: torch.Tensor) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        encoder(x)
        return (time.perf_counter() - start) / len(x) * 1e3


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=112, help="the image side in pixels")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    pixels = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1
    waves = torch.randn(args.batch, 4000) * 0.1
    pairs = {
        "efficientnet-lite0": (
            EfficientNetLite0Encoder(image_size=args.size),
            EfficientNetLite0Encoder(image_size=args.size, fused=True),
            pixels,
        ),
        "efficientnet-lite0-mel": (
            SpectrogramImageEncoder(image_size=args.size),
            SpectrogramImageEncoder(image_size=args.size, fused=True),
            waves,
        ),
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size} px, "
        f"batches of {args.batch}, median of {args.reps} interleaved repetitions"
    )
    print(
        "| encoder | plain ms/item | fused ms/item | fused / plain | max abs diff | mean abs feature |"
    )
    print("|---|---|---|---|---|---|")
    for name, (plain, fused, x) in pairs.items():
        with torch.no_grad():
            ref, got = plain(x), fused(x)  # also the warm-up
        times: dict[str, list[float]] = {"plain": [], "fused": []}
        for _ in range(args.reps):
            times["plain"].append(per_item_ms(plain, x))
            times["fused"].append(per_item_ms(fused, x))
        a, b = statistics.median(times["plain"]), statistics.median(times["fused"])
        diff = float((got - ref).abs().max())
        print(
            f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f}x | {diff:.1e} | "
            f"{float(ref.abs().mean()):.3f} |"
        )


if __name__ == "__main__":
    main()
