"""The strategy contract: an object that replaces ``loss.backward()``.

    output = model(image, text)                  # a ModelOutput
    stats = strategy.backward(model, output, y)  # writes .grad, returns diagnostics
    optimizer.step()

``model`` is anything with the :class:`BalancedModel` shape (balgrad's
``TwoTowerModel`` has it): ``parameter_groups()``, ``classify(h_v, h_l, detach_head)``
and ``task``. Diagnostics are returned as a flat ``dict[str, float]`` and handed to
every observer registered with :meth:`Strategy.add_observer` (loggers, callbacks):
strategies expose statistics, they never write files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from balgrad._grad import GradientSync, ParamLayout, default_sync
from balgrad.tasks import check_finite, check_target, task_loss, true_class_prob

Observer = Callable[[int, dict[str, float]], None]


class BalancedModel(Protocol):
    task: str

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]: ...

    def classify(
        self, h_v: torch.Tensor, h_l: torch.Tensor, detach_head: bool = False
    ) -> torch.Tensor: ...


class Strategy:
    """Base class. Subclasses implement :meth:`compute` and may override the hooks."""

    name = "strategy"
    #: True when ``on_epoch_end`` wants the unimodal validation scores (MSLR dynamic).
    needs_unimodal_validation = False

    def __init__(self) -> None:
        self.sync: GradientSync = default_sync()
        self.step = 0
        self.epoch = 0
        self.num_epochs: int | None = None
        self._observers: list[Observer] = []

    # -- the step ---------------------------------------------------------------------
    def backward(self, model: BalancedModel, output: Any, target: torch.Tensor) -> dict[str, float]:
        """Compute this strategy's gradient for one batch and add it to ``.grad``."""
        check_target(output.logits, target, model.task)
        stats = self.compute(model, output, target)
        stats = {k: float(v) for k, v in stats.items()}
        for observer in self._observers:
            observer(self.step, stats)
        self.step += 1
        return stats

    def compute(self, model: BalancedModel, output: Any, target: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    # -- hooks for the training loop ----------------------------------------------------
    def param_groups(self, model: BalancedModel, lr: float) -> list[dict]:
        """Optimizer parameter groups (MSLR gives each modality its own rate)."""
        return [
            {"params": ps, "lr": lr, "name": name}
            for name, ps in model.parameter_groups().items()
            if ps
        ]

    def on_epoch_start(self, epoch: int, num_epochs: int | None = None) -> None:
        self.epoch = epoch
        self.num_epochs = num_epochs

    def on_epoch_end(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        unimodal_scores: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """Per-epoch update; returns diagnostics (e.g. MSLR's rates)."""
        return {}

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    # -- checkpointing --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state.get("step", 0))
        self.epoch = int(state.get("epoch", 0))

    # -- shared pieces ----------------------------------------------------------------
    @staticmethod
    def layout(model: BalancedModel) -> ParamLayout:
        return ParamLayout.of(model.parameter_groups())

    def unimodal_monitor(
        self, model: BalancedModel, output: Any, target: torch.Tensor
    ) -> dict[str, float]:
        """L_v, L_l and mean true-class probabilities, without gradient (loss curves)."""
        with torch.no_grad():
            return {
                "loss_image": task_loss(output.logits_image, target, model.task).item(),
                "loss_text": task_loss(output.logits_text, target, model.task).item(),
                "score_image": true_class_prob(output.logits_image, target, model.task)
                .mean()
                .item(),
                "score_text": true_class_prob(output.logits_text, target, model.task).mean().item(),
            }

    def batch_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of per-sample values over the global batch (all ranks)."""
        both = self.sync.sum(
            torch.stack([values.detach().sum(), values.new_tensor(values.numel())])
        )
        return both[0] / both[1].clamp_min(1)


def checked_loss(name: str, loss: torch.Tensor) -> torch.Tensor:
    check_finite(name, loss)
    return loss
