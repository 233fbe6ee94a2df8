"""``grad_blend``: the task loss plus ``blend`` times the unimodal losses, one backward
pass (a toy strategy that shows the plug-in contract, not a method)."""

from __future__ import annotations

import torch

from balgrad.errors import ConfigError
from balgrad.strategies import Strategy, register_strategy
from balgrad.tasks import task_loss


@register_strategy(
    "grad_blend",
    label="Grad blend",
    description="L_T + blend Σ_m L_m in one backward pass (example plug-in)",
)
class GradBlend(Strategy):
    name = "grad_blend"

    def __init__(self, *, blend: float = 0.5):
        super().__init__()
        if blend < 0:
            raise ConfigError(f"blend: must be >= 0, got {blend}")
        self.blend = blend

    def compute(self, model, output, target, ctx) -> dict:
        loss_task = task_loss(output.logits, target, model.task)
        loss_uni = sum(task_loss(z, target, model.task) for z in output.unimodal.values())
        params = ctx.layout.params  # the model's groups, checked (the step's context)
        grads = torch.autograd.grad(loss_task + self.blend * loss_uni, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                g = ctx.sync.mean(g)  # the same on every rank under torchrun
                p.grad = g if p.grad is None else p.grad + g
        stats = {"loss_task": loss_task.detach(), "loss_unimodal": loss_uni.detach()}
        return {**stats, **self.unimodal_monitor(model, output, target)}
