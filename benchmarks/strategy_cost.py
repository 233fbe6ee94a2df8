"""Per-step cost and peak memory of each strategy, relative to joint training and to the
floor of the exact method, measured in one run, for two or more modalities.

Builds a model over randomly initialised transformer towers (a ViT and a BERT from
configs: no download; with ``--modalities 2 3 4`` also an audio ViT over a one-channel
spectrogram and a video ViT, so M = 2, 3, 4 towers), fine-tunes it with every method on
the same synthetic batch,
interleaving the methods repetition by repetition so that machine noise hits all of them
alike, and prints each one's median step time (zero_grad, forward, the method's backward,
optimizer step), its ratio to joint's and to the floor's, and its peak GPU memory.

The floor is the least the exact BalGrad can cost: the forward, then three plain
``torch.autograd.grad`` calls through the towers (L_T; Σ_m L_m; D) with no flattening
and no arithmetic, g_T written to ``.grad``, and the same optimizer step. Every ratio is
taken against joint training on the same M towers, so a ratio that stays flat as M
grows means the method costs nothing beyond the extra towers' own forward and backward.

    python benchmarks/strategy_cost.py --tiny                          # CPU, seconds
    python benchmarks/strategy_cost.py --tiny --modalities 2 3 4       # ratios for each M
    python benchmarks/strategy_cost.py --device cuda --precision bf16  # ViT-base + BERT-base
    python benchmarks/strategy_cost.py --device cuda --check           # device exactness

All methods share one model and one AdamW state (only the step is timed; the weights it
leaves do not matter), so their peak memory differs only by what the step allocates.
``--check`` first verifies, on one step, that exact BalGrad's and balgrad_fast's
gradients on the device (float64) equal those computed on the CPU in float64.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from balgrad.models import MultimodalModel  # noqa: E402
from balgrad.strategies import create_strategy  # noqa: E402
from balgrad.strategies._balgrad import pairwise_kl  # noqa: E402
from balgrad.tasks import task_loss  # noqa: E402

#: hidden, layers, heads, intermediate, image size, patch, text length
SIZES = {
    "tiny": (32, 2, 2, 64, 32, 8, 16),
    "small": (256, 4, 4, 1024, 224, 16, 40),
    "base": (768, 12, 12, 3072, 224, 16, 40),
}
METHODS = [
    "joint",
    "mslr",
    "ogm_ge",
    "agm",
    "balgrad",
    "balgrad_fast",
    "balgrad_unimodal_only",
    "mmpareto",
    "dgl",
    "inforeg",
    "mla",
    "gblend",
    "floor",
]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NUM_CLASSES = 10
#: the towers in order: (modality, tower kind, input channels)
TOWERS = [("image", "vit", 3), ("text", "bert", 0), ("audio", "vit", 1), ("video", "vit", 3)]


class HFTower(nn.Module):
    """A transformers model's CLS feature as a balgrad tower."""

    def __init__(self, model, out_dim, key):
        super().__init__()
        self.model, self.out_dim, self.key = model, out_dim, key

    def forward(self, x):
        out = self.model(**{self.key: x}) if self.key == "pixel_values" else self.model(**x)
        return out.last_hidden_state[:, 0]


def build(size: str, modalities: int = 2) -> MultimodalModel:
    """ViT + BERT (the two-modality model), then an audio and a video ViT."""
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    h, layers, heads, inter, image, patch, _ = SIZES[size]
    common = dict(
        hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=inter
    )
    towers = {}
    for name, kind, channels in TOWERS[:modalities]:
        if kind == "vit":
            config = ViTConfig(image_size=image, patch_size=patch, num_channels=channels, **common)
            towers[name] = HFTower(ViTModel(config, add_pooling_layer=False), h, "pixel_values")
        else:
            bert = BertModel(BertConfig(vocab_size=30522, **common), add_pooling_layer=False)
            towers[name] = HFTower(bert, h, "tokens")
    return MultimodalModel(towers, NUM_CLASSES, embed_dim=256)


def batch(size: str, bs: int, device, dtype=torch.float32, seed: int = 0, modalities: int = 2):
    """({modality: input}, labels)."""
    _, _, _, _, image, _, seq = SIZES[size]
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, kind, channels in TOWERS[:modalities]:
        if kind == "vit":
            inputs[name] = torch.randn(bs, channels, image, image, generator=g, dtype=dtype)
        else:
            ids = torch.randint(1000, 30000, (bs, seq), generator=g)
            inputs[name] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    y = torch.randint(0, NUM_CLASSES, (bs,), generator=g)
    moved = {
        m: {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
        for m, x in inputs.items()
    }
    return moved, y.to(device)


class Floor:
    """Forward, three plain autograd.grad calls through the towers, g_T into .grad."""

    name = "floor"

    def backward(self, model, out, y, *, scaler=None):
        scale = scaler.scale if scaler is not None else (lambda t: t)
        groups = model.parameter_groups()
        params = [p for ps in groups.values() for p in ps]
        towers = [p for m in model.modalities for p in groups[m]]
        loss_t = task_loss(out.logits, y, model.task)
        loss_uni = sum(task_loss(z, y, model.task) for z in out.unimodal.values())
        kl = pairwise_kl(list(out.unimodal.values()), model.task)
        g_t = torch.autograd.grad(scale(loss_t), params, retain_graph=True)
        torch.autograd.grad(scale(loss_uni), towers, retain_graph=True)
        torch.autograd.grad(scale(kl), towers)
        for p, g in zip(params, g_t):
            p.grad = g
        return {}


def steps_per_batch(name: str, modalities: int) -> int:
    """Optimizer steps one batch takes: M for a method that owns its steps (MLA)."""
    if name == "floor" or not create_strategy(name).owns_optimizer_step:
        return 1
    return modalities


def make_method(name: str):
    if name == "floor":
        return Floor()
    # G-Blend's step needs weights: one real estimate of one epoch (timed apart, in measure)
    strategy = create_strategy(name, **({"estimate_epochs": 1} if name == "gblend" else {}))
    strategy.check_every = 10**9  # the validity checks' one sync is not part of the step
    return strategy


def gblend_extra(modalities: int, n: int = 20, super_epoch: int = 20) -> dict:
    """G-Blend's work beyond its steps (one forward and one backward, as joint's), per
    super-epoch of S main epochs: (M + 1) copies trained n epochs each on the training
    part, and 2(M + 2) evaluation passes (all branches' losses before, each copy's on the
    training and held-out parts after); per main epoch, amortised over S."""
    copy_epochs = (modalities + 1) * n
    return {
        "copy_epochs_per_estimate": copy_epochs,
        "eval_passes_per_estimate": 2 * (modalities + 2),
        "copy_epochs_per_main_epoch": copy_epochs / super_epoch,
    }


def prime_estimates(methods, model, inputs, labels, device) -> dict[str, float]:
    """Run the estimate of each method that trains model copies (G-Blend) once on the
    batch (one copy epoch of one batch), so that its steps have weights; its time (s)."""
    took = {}
    for name, method in methods.items():
        if getattr(method, "trains_copies", False):
            method.on_epoch_start(0, 1)
            _sync(device)
            t0 = time.perf_counter()
            method.prepare_epoch(
                model,
                [(inputs, labels)],
                make_optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-5),
            )
            _sync(device)
            took[name] = time.perf_counter() - t0
    return took


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _stamp(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure(args, modalities: int = 2) -> dict:
    device = torch.device(args.device)
    amp = PRECISIONS[args.precision]
    torch.manual_seed(0)
    _stamp(f"building {modalities} towers '{args.size}' on {device}")
    with device:  # initialised where it runs (fast for the 195 M parameters of 'base')
        model = build(args.size, modalities).train()
    inputs, labels = batch(args.size, args.batch_size, device, modalities=modalities)
    methods = {m: make_method(m) for m in args.methods}
    estimates = prime_estimates(methods, model, inputs, labels, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(device.type) if args.precision == "fp16" else None
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else nullcontext
    cuda = device.type == "cuda"
    times: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, int] = dict.fromkeys(methods, 0)
    held: dict[str, int] = {}
    rounds = args.warmup + args.steps
    for r in range(rounds):
        for name, method in methods.items():  # interleaved: each sees the same machine state
            if getattr(method, "needs_epoch_pass", False):  # untimed: once per epoch
                held[name] = _prepare(method, model, r, inputs, labels)
            _sync(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            if getattr(method, "owns_optimizer_step", False):  # MLA: M steps of its own
                with autocast():
                    method.train_step(model, inputs, labels, optimizer, scaler=scaler)
                out = None
            else:
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    out = model(inputs)
                    method.backward(model, out, labels, scaler=scaler)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
            _sync(device)
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)
                if cuda:
                    peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(device))
            del out
            if hasattr(method, "snapshot"):  # InfoReg's θ̃ counts in its own steps only
                method.snapshot = {}
        if args.progress:
            _stamp(f"round {r + 1}/{rounds}{' (warm-up)' if r < args.warmup else ''}")
    result = report(args, device, times, peaks, modalities, held)
    for name, seconds in estimates.items():
        extra = gblend_extra(modalities)
        joint = result["methods"].get("joint", {}).get("median_ms")
        result["methods"][name].update(extra, estimate_one_batch_ms=1000 * seconds)
        print(
            f"{name}: one estimate on one batch (M + 1 copy steps, 2(M + 2) evaluation "
            f"forwards) {1000 * seconds:.1f} ms"
            + (f" = {1000 * seconds / joint:.1f} joint steps" if joint else "")
            + f"; at the defaults (n = S = 20) {extra['copy_epochs_per_estimate']} copy "
            f"epochs and {extra['eval_passes_per_estimate']} evaluation passes per estimate, "
            f"{extra['copy_epochs_per_main_epoch']:.0f} copy epochs per main epoch"
        )
    return result


def _prepare(method, model, epoch: int, inputs, labels) -> int:
    """The epoch-start hook (PMR's prototypes from this batch, InfoReg's snapshot θ̃): one
    per round, outside the timed step; returns the bytes the strategy then holds."""
    method.on_epoch_start(epoch)
    method.prepare_epoch(model, [(inputs, labels)])
    kept = [t for ts in getattr(method, "snapshot", {}).values() for t in ts]
    kept += list(getattr(method, "prototypes", {}).values())
    return sum(t.numel() * t.element_size() for t in kept)


def report(args, device, times, peaks, modalities: int = 2, held=None) -> dict:
    med = {m: statistics.median(ts) for m, ts in times.items()}
    joint, floor = med.get("joint"), med.get("floor")
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "CPU"
    )
    result = {
        "device": name,
        "torch": torch.__version__,
        "precision": args.precision,
        "size": args.size,
        "modalities": modalities,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "date": time.strftime("%Y-%m-%d"),
        "methods": {},
    }
    print(
        f"device: {name}; torch {torch.__version__}; {args.precision}; {modalities} towers "
        f"({', '.join(t[0] for t in TOWERS[:modalities])}) '{args.size}'; batch "
        f"{args.batch_size}; median of {args.steps} interleaved steps"
    )
    print(
        f"{'method':24s} {'ms':>9s} {'vs joint':>9s} {'vs floor':>9s} {'peak MiB':>9s} {'mem vs joint':>12s} {'opt steps':>9s}"
    )
    for m, t in med.items():
        row = {
            "median_ms": 1000 * t,
            "times_ms": [1000 * x for x in times[m]],
            "ratio_joint": t / joint if joint else None,
            "ratio_floor": t / floor if floor else None,
            "peak_mib": peaks[m] / 2**20 if peaks[m] else None,
            "peak_ratio_joint": peaks[m] / peaks["joint"] if peaks.get("joint") else None,
            "held_mib": held[m] / 2**20 if held and m in held else None,
            # optimizer steps per batch (MLA: one per modality; every other method: 1)
            "optimizer_steps": steps_per_batch(m, modalities),
        }
        result["methods"][m] = row

        def fmt(v, spec, unit=""):
            return (
                format(v, spec) + unit
                if v is not None
                else format("-", f">{len(format(0, spec) + unit)}")
            )

        print(
            f"{m:24s} {row['median_ms']:9.1f} {fmt(row['ratio_joint'], '8.2f', 'x')} "
            f"{fmt(row['ratio_floor'], '8.2f', 'x')} {fmt(row['peak_mib'], '9.0f')} "
            f"{fmt(row['peak_ratio_joint'], '11.2f', 'x')} {row['optimizer_steps']:9d}"
        )
    for m, row in result["methods"].items():
        if row["held_mib"] is not None:
            print(f"{m}: holds {row['held_mib']:.2f} MiB between steps (its epoch-start state)")
    return result


def summarise(runs: dict[int, dict]) -> None:
    """Each method's ratio to joint for every M side by side, and how it moves with M."""
    ms = list(runs)
    methods = list(next(iter(runs.values()))["methods"])
    print("\nstep time relative to joint training on the same towers, by number of modalities M")
    print(
        f"{'method':24s} " + " ".join(f"{'M=' + str(m):>8s}" for m in ms) + f" {'last/first':>11s}"
    )
    for name in methods:
        ratios = [runs[m]["methods"][name]["ratio_joint"] for m in ms]
        cells = " ".join(f"{r:7.2f}x" if r is not None else f"{'-':>8s}" for r in ratios)
        drift = ratios[-1] / ratios[0] if ratios[0] and ratios[-1] else None
        print(f"{name:24s} {cells} {format(drift, '10.2f') + 'x' if drift else '-':>11s}")
    joint_ms = " ".join(f"{runs[m]['methods']['joint']['median_ms']:7.1f}ms" for m in ms)
    print(f"{'(joint itself)':24s} {joint_ms}")


def check(args) -> dict:
    """Exact BalGrad's and balgrad_fast's .grad on the device (float64) vs the CPU's."""
    out = {}
    for method in ("balgrad", "balgrad_fast"):
        torch.manual_seed(0)
        ref = build("tiny").double()
        dev = build("tiny").double()
        dev.load_state_dict(ref.state_dict())
        dev.to(args.device)
        x, y = batch("tiny", 4, torch.device("cpu"), dtype=torch.float64)
        grads = []
        for model, device in ((ref, "cpu"), (dev, args.device)):
            model.eval()  # no dropout: both must compute the same function
            tok = {k: v.to(device) for k, v in x["text"].items()}
            output = model({"image": x["image"].to(device), "text": tok})
            create_strategy(method).backward(model, output, y.to(device))
            grads.append(
                torch.cat(
                    [
                        p.grad.reshape(-1).double().cpu()
                        for p in model.parameters()
                        if p.grad is not None
                    ]
                )
            )
        err = ((grads[0] - grads[1]).abs().max() / grads[0].abs().max()).item()
        ok = err <= 1e-9
        out[method] = {"max_rel_error": err, "ok": ok}
        print(
            f"check: {method} gradient on {args.device} vs CPU float64: max relative error {err:.2e} {'ok' if ok else 'FAILED'}"
        )
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    p.add_argument("--size", choices=list(SIZES), default="base")
    p.add_argument("--tiny", action="store_true", help="tiny towers, batch 8 (CPU, tests)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed repetitions per method")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--check", action="store_true", help="device-vs-CPU exactness check first")
    p.add_argument("--check-only", action="store_true", help="only the exactness check")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--progress", action="store_true", help="a time-stamped line per round")
    p.add_argument(
        "--modalities",
        type=int,
        nargs="+",
        default=[2],
        choices=range(2, len(TOWERS) + 1),
        metavar="M",
        help=f"numbers of towers to measure, each in 2..{len(TOWERS)} (default 2)",
    )
    args = p.parse_args(argv)
    if args.tiny:
        args.size, args.batch_size = "tiny", min(args.batch_size, 8)
    result = {}
    if args.check or args.check_only:
        result["check"] = check(args)
    if not args.check_only:
        runs = {m: measure(args, m) for m in args.modalities}
        if len(runs) == 1:
            result.update(next(iter(runs.values())))
        else:
            result["by_modalities"] = runs
            summarise(runs)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    if "check" in result and not all(c["ok"] for c in result["check"].values()):
        raise SystemExit("check FAILED")
    return result


if __name__ == "__main__":
    main()
