"""The own loop's epoch-start call, for tests that run any registered strategy for a step:
a strategy with ``needs_epoch_pass`` (PMR) gets ``prepare_epoch`` on the step's batch, as
README's own loop does at the start of every epoch."""

from __future__ import annotations


def prepared(strategy, model, inputs, target):
    if strategy.needs_epoch_pass:
        strategy.prepare_epoch(model, [(inputs, target)])
    return strategy
