"""Joint training: the task loss L_T only (the paper's "Baseline")."""

from __future__ import annotations

from balgrad.names import statistics
from balgrad.strategies._base import Strategy
from balgrad.tasks import task_loss


class Joint(Strategy):
    """g = grad L_T: one backward pass per step, exactly ``L_T.backward()`` (so it also
    runs under DistributedDataParallel)."""

    name = "joint"
    statistics = statistics("joint training", ["loss_task"], ["loss", "score"])
    supports_ddp = True
    full_precision_compute = True

    def compute(self, model, output, target, ctx):
        """One step: L_T's gradient, one backward pass; the unimodal losses and scores are
        reported without gradient.
        """
        loss = task_loss(output.logits, target, model.task)
        ctx.check_finite(("task loss L_T",), loss)
        params = ctx.layout.params
        ctx.backward_into([ctx.scaled(loss)], [None], params)
        ctx.check_gradients_finite("gradient g_T", [p.grad for p in params if p.grad is not None])
        return {"loss_task": loss, **self.unimodal_monitor(model, output, target)}
