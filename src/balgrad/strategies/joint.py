"""Joint training: the task loss L_T only (the paper's "Baseline")."""

from __future__ import annotations

from balgrad.strategies.base import Strategy, checked_loss
from balgrad.tasks import task_loss


class Joint(Strategy):
    """g = grad L_T. One backward pass per step."""

    name = "joint"

    def compute(self, model, output, target):
        loss = checked_loss("task loss L_T", task_loss(output.logits, target, model.task))
        layout = self.layout(model)
        g = self.sync.mean(layout.grad(loss, retain_graph=False))
        layout.write_grads(g)
        return {"loss_task": loss.item(), **self.unimodal_monitor(model, output, target)}
