"""Per-step cost of each strategy relative to joint training, measured in one run.

Builds a two-tower model over randomly initialised transformer towers (a ViT and a
BERT from configs: no download), trains every strategy for the same number of steps
on synthetic batches, interleaving the strategies round by round so that machine noise
hits all of them alike, and prints each one's median step time divided by joint's.

    python benchmarks/strategy_cost.py                     # CPU, small towers
    python benchmarks/strategy_cost.py --device cuda --size base --batch-size 32

``--check`` also verifies on the chosen device that BalGrad's gradient equals the one
computed on the CPU in float64 (a device-correctness check for GPU runs).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from balgrad.models import TwoTowerModel
from balgrad.strategies import create_strategy

SIZES = {  # hidden, layers, heads, intermediate
    "tiny": (64, 2, 2, 128),
    "small": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),
}
METHODS = [
    "joint",
    "mslr",
    "ogm_ge",
    "agm",
    "balgrad",
    "balgrad_reweight_only",
    "balgrad_projection_only",
    "balgrad_unimodal_only",
]


class HFTower(nn.Module):
    """A transformers model's CLS feature as a balgrad tower."""

    def __init__(self, model, out_dim, key):
        super().__init__()
        self.model, self.out_dim, self.key = model, out_dim, key

    def forward(self, x):
        out = self.model(**{self.key: x}) if self.key == "pixel_values" else self.model(**x)
        return out.last_hidden_state[:, 0]


def build(size: str, num_classes: int = 10) -> TwoTowerModel:
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    h, layers, heads, inter = SIZES[size]
    vit = ViTModel(
        ViTConfig(
            hidden_size=h,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=inter,
            image_size=224,
            patch_size=16,
        ),
        add_pooling_layer=False,
    )
    bert = BertModel(
        BertConfig(
            hidden_size=h,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=inter,
            vocab_size=30522,
        ),
        add_pooling_layer=False,
    )
    return TwoTowerModel(
        HFTower(vit, h, "pixel_values"), HFTower(bert, h, "tokens"), num_classes, embed_dim=256
    )


def batch(bs: int, device, seq: int = 40, num_classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(bs, 3, 224, 224, generator=g)
    ids = torch.randint(1000, 30000, (bs, seq), generator=g)
    y = torch.randint(0, num_classes, (bs,), generator=g)
    tokens = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}
    return pixels.to(device), tokens, y.to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(args) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = build(args.size).to(device)
    data = batch(args.batch_size, device)
    runs = {}
    for m in args.methods:
        model = copy.deepcopy(base)
        strategy = create_strategy(m)
        runs[m] = (model, strategy, torch.optim.AdamW(strategy.param_groups(model, 1e-5)))
    times = {m: [] for m in args.methods}
    for r in range(args.warmup + args.steps):
        for m in args.methods:  # interleaved: every strategy sees the same machine state
            model, strategy, opt = runs[m]
            sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = model(data[0], data[1])
            strategy.backward(model, out, data[2])
            opt.step()
            sync(device)
            if r >= args.warmup:
                times[m].append(time.perf_counter() - t0)
    joint = statistics.median(times["joint"]) if "joint" in times else None
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"device: {name}; towers: ViT+BERT '{args.size}'; batch {args.batch_size}; {args.steps} steps each"
    )
    print(f"{'method':28s} {'median ms':>10s} {'vs joint':>9s}")
    for m in args.methods:
        med = statistics.median(times[m])
        ratio = f"{med / joint:8.2f}x" if joint else "   -"
        print(f"{m:28s} {1000 * med:10.1f} {ratio}")


def check(args) -> None:
    """BalGrad's .grad on the device equals the CPU float64 one."""
    torch.manual_seed(0)
    ref = build("tiny").double()
    dev = copy.deepcopy(ref).to(args.device)
    x, t, y = batch(4, torch.device("cpu"), seq=12)
    grads = []
    for model, device in ((ref, "cpu"), (dev, args.device)):
        model.eval()  # no dropout: the two must see the same function
        tok = {k: v.to(device) for k, v in t.items()}
        out = model(x.double().to(device), tok)
        create_strategy("balgrad").backward(model, out, y.to(device))
        grads.append(
            torch.cat(
                [
                    p.grad.reshape(-1).double().cpu()
                    for p in model.parameters()
                    if p.grad is not None
                ]
            )
        )
    err = (grads[0] - grads[1]).abs().max().item() / grads[0].abs().max().item()
    print(f"check: BalGrad gradient on {args.device} vs CPU float64: max relative error {err:.2e}")
    if err > 1e-9:
        raise SystemExit("check FAILED")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    if args.check:
        check(args)
    measure(args)


if __name__ == "__main__":
    main()
