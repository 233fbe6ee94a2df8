"""OGM-GE (Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient
Modulation", CVPR 2022), as in its official code (SPEC section 3).

Scores s_m = batch sum of softmax(z_m)[y]; ρ_v = s_v / s_l. The dominant modality's
gradient is damped: if ρ_v > 1, k_v = 1 − tanh(α ρ_v), k_l = 1; else
k_l = 1 − tanh(α / ρ_v), k_v = 1. After the backward pass of L_T, every parameter
with ≥ 2 dims in θ_m gets g ← g k_m + N(0, std(g)) (generalisation enhancement: the
std is taken before scaling, and noise is added even where k = 1), only for epochs in
[modulation_start, modulation_end). One backward pass per step.

Noise comes from a generator seeded by (seed, step), so every data-parallel rank draws
the same noise for the same all-reduced gradient.
"""

from __future__ import annotations

import math

import torch

from balgrad.errors import ConfigError
from balgrad.strategies.base import Strategy, checked_loss
from balgrad.tasks import task_loss, true_class_prob


def ogm_coefficients(s_v: float, s_l: float, alpha: float) -> tuple[float, float, float]:
    """(ρ_v, k_v, k_l) from the two modality scores."""
    rho_v = s_v / s_l if s_l > 0 else math.inf
    if rho_v > 1:
        return rho_v, 1.0 - math.tanh(alpha * rho_v), 1.0
    inv = 1.0 / rho_v if rho_v > 0 else math.inf
    return rho_v, 1.0, 1.0 - math.tanh(alpha * inv)


class OGMGE(Strategy):
    name = "ogm_ge"

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        modulation_start: int = 0,
        modulation_end: int | None = None,
        noise: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if alpha < 0:
            raise ConfigError(f"alpha: must be >= 0, got {alpha}")
        if modulation_end is not None and modulation_end < modulation_start:
            raise ConfigError("modulation_end: must be >= modulation_start")
        self.alpha = float(alpha)
        self.modulation_start = int(modulation_start)
        self.modulation_end = modulation_end
        self.noise = bool(noise)
        self.seed = int(seed)

    def active(self) -> bool:
        end = self.modulation_end
        if end is None:
            # default: the first half of training; always on when the loop gives no epochs
            end = math.inf if self.num_epochs is None else max(1, round(self.num_epochs / 2))
        return self.modulation_start <= self.epoch < end

    def compute(self, model, output, target):
        loss = checked_loss("task loss L_T", task_loss(output.logits, target, model.task))
        layout = self.layout(model)
        g = self.sync.mean(layout.grad(loss, retain_graph=False))

        with torch.no_grad():
            sums = self.sync.sum(
                torch.stack(
                    [
                        true_class_prob(output.logits_image, target, model.task).sum(),
                        true_class_prob(output.logits_text, target, model.task).sum(),
                    ]
                )
            )
        s_v, s_l = sums.tolist()
        rho, k_v, k_l = ogm_coefficients(s_v, s_l, self.alpha)
        active = self.active()
        if active:
            g = self.modulate(layout, g, {"image": k_v, "text": k_l})
        layout.write_grads(g)
        return {
            "loss_task": loss.item(),
            **self.unimodal_monitor(model, output, target),
            "ratio_image": rho if math.isfinite(rho) else 1e6,
            "coef_image": k_v,
            "coef_text": k_l,
            "modulated": float(active),
        }

    def modulate(self, layout, g: torch.Tensor, coefs: dict[str, float]) -> torch.Tensor:
        g = g.clone()
        gen = torch.Generator(device=g.device)
        gen.manual_seed(self.seed * 1_000_003 + self.step)
        for group, k in coefs.items():
            if group not in layout.slices:
                continue
            start = layout.slices[group].start
            for p in layout.groups[group]:
                sl = slice(start, start + p.numel())
                start += p.numel()
                if p.dim() < 2:
                    continue
                part = g[sl]
                std = part.std().item() if part.numel() > 1 else 0.0
                new = part * k
                if self.noise:
                    new = new + torch.randn(
                        part.shape, generator=gen, device=g.device, dtype=g.dtype
                    ) * (std + 1e-8)
                g[sl] = new
        return g
