"""Per-step cost of OGM-GE (and AGM) relative to joint training, measured in one run.

The towers are the randomly initialised ViT + BERT of ``strategy_cost.py`` (no
download). Every method trains the same number of steps on the same synthetic batch,
interleaved round by round so that machine noise hits all of them alike; the script
prints each median step time divided by that of ``plain`` (forward, then
``loss.backward()``: the floor of any one-backward method) and of the ``joint``
strategy, and the time of OGM-GE's modulation alone (scores, coefficients, noise, on
gradients already computed).

    python benchmarks/ogm_noise_cost.py                          # CPU, ~15 M parameters
    python benchmarks/ogm_noise_cost.py --device cuda --size base --batch-size 32 \\
        --precision bf16

``--check-syncs`` (CUDA) also runs one step of each method under
``torch.cuda.set_sync_debug_mode("error")``, with a GradScaler, and fails on any host
synchronisation inside the strategies' own step (the base class's loss monitor and
finiteness check are stubbed out: they belong to the base class).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategy_cost import SIZES, batch, build  # noqa: E402  (the shared benchmark towers)

from balgrad._grad import grads_of  # noqa: E402
from balgrad.models import MultimodalModel  # noqa: E402
from balgrad.strategies import (  # noqa: E402
    AGM,
    OGMGE,
    PendingChecks,  # noqa: E402
    StepContext,  # noqa: E402
    create_strategy,
)
from balgrad.strategies import _agm as agm_module
from balgrad.strategies import _ogm_ge as ogm_module
from balgrad.tasks import task_loss  # noqa: E402

METHODS = {
    "plain": None,
    "joint": ("joint", {}),
    "ogm_ge": ("ogm_ge", {}),
    "ogm_no_noise": ("ogm_ge", {"noise": False}),
    "agm": ("agm", {}),
    "agm_input_zeroing": ("agm", {"zero": "input"}),
}
BERT_CLS, BERT_SEP = 101, 102


def blank_tokens(texts):
    """The empty text for the benchmark's BERT tower: [CLS] [SEP]."""
    ids = torch.tensor([[BERT_CLS, BERT_SEP]] * len(texts))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def autocast(device, precision):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def one_step(model, strategy, data, precision, device):
    with autocast(device, precision):
        out = model(data[0])
        if strategy is None:
            task_loss(out.logits.float(), data[1], model.task).backward()
        else:
            strategy.backward(model, out, data[1])


def modulation_only(model, data, precision, device, reps):
    """Median time of OGM-GE's work after the backward pass, on fixed gradients."""
    strategy = OGMGE()
    with autocast(device, precision):
        out = model(data[0])
    params = strategy.layout(model).params
    loss = task_loss(out.logits, data[1], model.task)
    grads = grads_of(loss, params, materialize=False)
    times = []
    for _ in range(reps):
        gs = [None if g is None else g.clone() for g in grads]
        sync(device)
        t0 = time.perf_counter()
        s_v, s_l = strategy.scores(model, out, data[1], strategy.sync).unbind()
        _, k_v, k_l = ogm_module.ogm_coefficients(s_v, s_l, strategy.alpha)
        groups = strategy.layout(model).groups
        strategy.modulate(groups, params, gs, {"image": k_v, "text": k_l}, None, 0)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(args) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = build(args.size).to(device)
    base.text_encoder.tokenize = blank_tokens
    data = batch(args.size, args.batch_size, device)
    n_params = sum(p.numel() for p in base.parameters())
    runs = {}
    for name in args.methods:
        model = copy.deepcopy(base)
        spec = METHODS[name]
        strategy = None if spec is None else create_strategy(spec[0], **spec[1])
        runs[name] = (model, strategy, torch.optim.AdamW(model.parameters(), lr=1e-5))
    times = {m: [] for m in args.methods}
    peaks = {m: 0 for m in args.methods}
    for r in range(args.warmup + args.steps):
        for m in args.methods:  # interleaved: every method sees the same machine state
            model, strategy, opt = runs[m]
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            one_step(model, strategy, data, args.precision, device)
            opt.step()
            sync(device)
            if r >= args.warmup:
                times[m].append(time.perf_counter() - t0)
                if device.type == "cuda":
                    peaks[m] = max(peaks[m], torch.cuda.max_memory_allocated())
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"device: {name}; towers: ViT+BERT '{args.size}' ({n_params / 1e6:.1f} M parameters); "
        f"batch {args.batch_size}; {args.precision}; {args.steps} steps each, median"
    )
    med = {m: statistics.median(times[m]) for m in args.methods}
    print(f"{'method':20s} {'ms':>9s} {'vs plain':>9s} {'vs joint':>9s} {'peak GiB':>9s}")
    for m in args.methods:
        vs_plain = f"{med[m] / med['plain']:8.3f}x" if "plain" in med else "   -"
        vs_joint = f"{med[m] / med['joint']:8.3f}x" if "joint" in med else "   -"
        peak = f"{peaks[m] / 2**30:9.2f}" if device.type == "cuda" else "        -"
        print(f"{m:20s} {1000 * med[m]:9.1f} {vs_plain} {vs_joint} {peak}")
    mod = modulation_only(copy.deepcopy(base), data, args.precision, device, args.steps)
    ref = med.get("plain", med.get("joint"))
    print(
        f"OGM-GE modulation alone (scores, k, noise on computed gradients): "
        f"{1000 * mod:.2f} ms = {mod / ref:.3f} of a plain step"
    )


class ConvTower(nn.Module):
    """Image tower for the sync check (Hugging Face models sync in their own forward)."""

    out_dim = 16

    def __init__(self):
        super().__init__()
        self.conv, self.proj = nn.Conv2d(3, 8, 5, stride=4), nn.Linear(8, 16)

    def forward(self, x):
        return self.proj(torch.relu(self.conv(x)).mean((2, 3)))


class BagTower(nn.Module):
    """Text tower for the sync check: a mean of token embeddings, with a tokenizer."""

    out_dim = 16

    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(30522, 16)

    def tokenize(self, texts):
        return blank_tokens(texts)

    def forward(self, tokens):
        return self.bag(tokens["input_ids"])


def check_syncs(args) -> None:
    """One step per method under sync debug mode "error", with a GradScaler."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MultimodalModel({"image": ConvTower(), "text": BagTower()}, 10, embed_dim=16)
    model = model.to(device)
    data = batch("tiny", 4, device)
    for name, options in [
        ("ogm_ge", {}),
        ("ogm_ge", {"fusion_bias": "half"}),
        ("agm", {}),
        ("agm", {"zero": "input"}),
    ]:
        strategy = create_strategy(name, **options)
        scaler = torch.amp.GradScaler(device.type)
        module = ogm_module if name == "ogm_ge" else agm_module
        stub = contextlib.ExitStack()
        for cls in (OGMGE, AGM):
            stub.enter_context(_patched(cls, "unimodal_monitor", lambda self, *a: {}))
        stub.enter_context(_patched(module, "checked_loss", lambda name, loss: loss))
        with stub:
            for i in range(3):  # the first step moves state to the device
                with autocast(device, args.precision):
                    out = model(data[0])
                    model.zero_grad(set_to_none=True)
                    if i == 2:
                        torch.cuda.set_sync_debug_mode("error")
                    try:
                        ctx = StepContext(
                            strategy.sync,
                            strategy.layout(model),
                            strategy.step,
                            PendingChecks(),
                            scaler,
                        )
                        strategy.compute(model, out, data[1], ctx)
                    finally:
                        torch.cuda.set_sync_debug_mode(0)
                    strategy.step += 1
        print(f"check-syncs: {name} {options}: no host sync in the step")


@contextlib.contextmanager
def _patched(owner, attr, value):
    before = getattr(owner, attr)
    setattr(owner, attr, value)
    try:
        yield
    finally:
        setattr(owner, attr, before)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", choices=list(SIZES), default="small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--check-syncs", action="store_true")
    args = p.parse_args()
    if args.check_syncs:
        check_syncs(args)
    measure(args)


if __name__ == "__main__":
    main()
