"""The README's own-loop example: an audio-visual classifier trained with BalGrad in a plain
PyTorch loop, on synthetic data (CPU: seconds), data-parallel under torchrun.

    python examples/own_loop_torchrun.py                                 # 1 process
    torchrun --nproc_per_node 2 examples/own_loop_torchrun.py            # 2 processes
    python examples/own_loop_torchrun.py --method ogm_ge --steps 200

Audio is a log-mel-like spectrogram [B, 1, mels, time], video a few frames [B, T, 3, H, W];
each goes through its own small conv tower. In the synthetic data the class lifts a band
of mel bins strongly and tints the frames weakly: audio is the dominant modality, as on
CREMA-D or Kinetics-Sounds.

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
from balgrad import MultimodalModel

CLASSES, MELS, TIME, FRAMES, SIZE = 5, 40, 32, 4, 16


def conv_features(channels: int, width: int) -> nn.Sequential:
    """Two strided convolutions: [N, C, H, W] -> [N, width, H / 4, W / 4]."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, stride=2, padding=1),
        nn.ReLU(),
    )


class AudioNet(nn.Module):  # any encoder with an `out_dim`
    """A spectrogram [B, 1, mels, time] -> [B, out_dim]: conv features averaged over time,
    the frequency axis kept (where the energy is is what tells sounds apart)."""

    def __init__(self, out_dim: int = 32, width: int = 8):
        super().__init__()
        self.out_dim, self.net = out_dim, conv_features(1, width)
        self.proj = nn.Linear(width * ((MELS + 3) // 4), out_dim)

    def forward(self, spectrogram):
        return self.proj(self.net(spectrogram).mean(-1).flatten(1))


class VisualNet(nn.Module):
    """Frames [B, T, 3, H, W] -> [B, out_dim]: each frame's pooled conv features, averaged
    over time."""

    def __init__(self, out_dim: int = 32, width: int = 8):
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(conv_features(3, width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.proj = nn.Linear(width, out_dim)

    def forward(self, frames):
        b, t = frames.shape[:2]
        return self.proj(self.net(frames.flatten(0, 1)).view(b, t, -1).mean(1))


def synthetic_batch(n: int, generator: torch.Generator, dtype: torch.dtype):
    """(inputs by modality, labels): noise, a strong class cue in audio, a weak one in video."""
    target = torch.randint(0, CLASSES, (n,), generator=generator)
    audio = torch.randn(n, 1, MELS, TIME, generator=generator, dtype=dtype)
    visual = torch.randn(n, FRAMES, 3, SIZE, SIZE, generator=generator, dtype=dtype)
    band = MELS // CLASSES
    for c in range(CLASSES):
        audio[target == c, :, c * band : (c + 1) * band] += 1.0  # class c: mel band c louder
        visual[target == c, :, c % 3] += 0.2 if c < 3 else -0.2  # colour c % 3, up or down
    return {"audio": audio, "visual": visual}, target


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
    encoders = {"audio": AudioNet(), "visual": VisualNet()}
    model = MultimodalModel(encoders, num_classes=CLASSES, embed_dim=32).to(dtype)
    strategy = balgrad.create_strategy(args.method)
    optimizer = torch.optim.Adam(strategy.param_groups(model, lr=1e-3))

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:  # launched by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    shard = slice(rank * args.batch_size // world, (rank + 1) * args.batch_size // world)

    data = torch.Generator().manual_seed(1)  # every rank draws the same global batches
    for _ in range(args.steps):
        inputs, target = synthetic_batch(args.batch_size, data, dtype)
        optimizer.zero_grad()
        output = model({m: x[shard] for m, x in inputs.items()})
        stats = strategy.backward(model, output, target[shard])  # instead of loss.backward()
        optimizer.step()

    if rank == 0:
        per_modality = ", ".join(
            f"{m}: L = {float(stats[f'loss_{m}']):.3f}" for m in model.modalities
        )
        print(
            f"{args.method}: {world} process(es), final L_T = {float(stats['loss_task']):.4f}; "
            + per_modality
        )
    params = [p.detach().clone() for p in model.parameters()]
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        torch.save(params, os.path.join(args.save, f"rank{rank}.pt"))
    if world > 1:
        dist.destroy_process_group()
    return params


if __name__ == "__main__":
    main()
