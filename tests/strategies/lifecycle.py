"""The own loop's epoch-start call, for tests that run any registered strategy for a step:
a strategy with ``needs_epoch_pass`` (PMR) gets ``prepare_epoch`` on the step's batch, as
README's own loop does at the start of every epoch; and :func:`run_backward`, the step of a
strategy that owns its optimizer steps (MLA) seen as one gradient."""

from __future__ import annotations

import torch


def prepared(strategy, model, inputs, target):
    if strategy.needs_epoch_pass:
        strategy.prepare_epoch(model, [(inputs, target)])
    return strategy


class _Recorder(torch.optim.Optimizer):
    """A zero-rate optimizer that keeps the sum of the gradients of its steps."""

    def __init__(self, params):
        super().__init__(params, {})
        self.seen: dict[torch.Tensor, torch.Tensor] = {}

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.seen[p] = self.seen[p] + p.grad if p in self.seen else p.grad.clone()


def run_backward(strategy, model, output, target, **kwargs):
    """``strategy.backward``; for a strategy that takes its own optimizer steps (MLA),
    which refuses ``backward`` alone, its ``train_step`` on ``output`` with a zero-rate
    optimizer, leaving in ``.grad`` the sum of the gradients its steps applied (with the
    parameters held still, what one backward of their losses would accumulate), so that
    tests of the contract, the checks and the statistics run for it too."""
    if not getattr(strategy, "owns_optimizer_step", False):
        return strategy.backward(model, output, target, **kwargs)
    recorder = _Recorder([p for p in model.parameters() if p.requires_grad])
    stats = strategy.train_step(
        model, None, target, recorder, forward=lambda *_a, **_k: output, **kwargs
    )
    for p, g in recorder.seen.items():
        p.grad = g if p.grad is None else p.grad + g
    return stats
