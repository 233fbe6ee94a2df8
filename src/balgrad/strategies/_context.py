"""The step's context: what one ``Strategy.backward()`` hands its ``compute``.

Everything scoped to one step lives here, built fresh by ``backward()`` and passed to
``compute(model, output, target, ctx)``, never stored on the strategy: the GradScaler,
whether the model runs under DistributedDataParallel, the gradient sync, the model's
checked parameter layout, the step index and the sink of the lazy validity checks. The
helpers every strategy shares (scale a loss, take its all-reduced gradient, write a
backward pass into ``.grad``, record a finiteness check) are its methods, so that a
strategy's ``compute`` reads as wiring: get these gradients, compute these coefficients
(pure functions in the method's file), write this update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from balgrad._grad import GradientSync, ParamLayout, add_to_grads_, grads_of, sq_norms
from balgrad.strategies._checks import PendingChecks


@dataclass(frozen=True)
class StepContext:
    """One step's context (see the module docstring).

    Attributes:
        sync: the :class:`~balgrad._grad.GradientSync` gradients and statistics are
            reduced through (resolved once for the step).
        layout: the model's trainable parameter groups, checked against the contract.
        step: the index of this step (``Strategy.step`` before it is incremented).
        scaler: the step's enabled ``torch.amp.GradScaler``, or None.
        ddp: whether the model came wrapped in DistributedDataParallel.
        checks: where the lazy validity checks of the step are recorded.
    """

    sync: GradientSync
    layout: ParamLayout
    step: int
    checks: PendingChecks
    scaler: Any = None
    ddp: bool = False

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` multiplied by the step's GradScaler scale (no host sync), if any.

        Args:
            loss: The loss.

        Returns:
            The scaled loss.
        """
        return loss if self.scaler is None else self.scaler.scale(loss)

    def loss_scale(self, like: torch.Tensor) -> torch.Tensor | None:
        """The step's GradScaler scale as a 0-d tensor on ``like``'s device (no host
        sync), or None without a scaler: anything absolute that acts on the scaled
        gradients (a clipping threshold, an epsilon) is multiplied by it, so that the
        update is exactly ``scale`` times the unscaled one.

        Args:
            like: A tensor on the step's device.

        Returns:
            The scale, or None.
        """
        if self.scaler is None:
            return None
        return self.scaler.scale(torch.ones((), device=like.device))

    def loss_grads(
        self, loss: torch.Tensor, params: Sequence[nn.Parameter]
    ) -> list[torch.Tensor | None]:
        """The gradient ``self.scaled(loss).backward()`` would add to ``params``, averaged
        over ranks through :attr:`sync`, as owned tensors to rescale in place before
        :func:`~balgrad._grad.add_to_grads_`. None where the loss does not reach a
        parameter (zeros on several ranks, so that every rank joins the same all-reduce).

        Args:
            loss: The (unscaled) loss.
            params: The parameters.

        Returns:
            One gradient (or None) per parameter.
        """
        sync = self.sync
        several = sync.world_size > 1
        grads = grads_of(self.scaled(loss), params, retain_graph=False, materialize=several)
        if several:
            sync.mean_(grads)
        return grads

    def check_finite(self, names: tuple[str, ...], values: torch.Tensor) -> None:
        """Verify at the next check that each entry of ``values`` is finite.

        Args:
            names: One name per entry of ``values``, for the message.
            values: The values.
        """
        self.checks.finite(self.step, names, values)

    def check_gradients_finite(self, name: str, grads: Sequence[torch.Tensor]) -> None:
        """Verify at the next check that ``grads`` are finite, unless a GradScaler runs
        the step (it skips steps with non-finite gradients itself).

        Args:
            name: The gradient's name, for the message.
            grads: The gradients.
        """
        if self.scaler is None and grads:
            self.check_finite((name,), sq_norms(grads).sum())

    def backward_into(
        self,
        roots: Sequence[torch.Tensor],
        root_grads: Sequence[torch.Tensor | None],
        params: Sequence[nn.Parameter],
    ) -> None:
        """Accumulate d roots / d params (cotangents ``root_grads``, None for a scalar
        loss) into ``.grad`` with one backward pass, as ``loss.backward()`` would:
        through DDP's reducer for a wrapped model, all-reduced through :attr:`sync` when
        the strategy reduces itself on several ranks.

        Args:
            roots: The outputs to differentiate (a loss, or embeddings).
            root_grads: Their cotangents, None for a scalar loss.
            params: The parameters whose ``.grad`` receives the result.
        """
        keep = [(r, g) for r, g in zip(roots, root_grads) if r.requires_grad]
        if not keep or not params:
            return
        roots, root_grads = [r for r, _ in keep], [g for _, g in keep]
        sync = self.sync
        if self.ddp:
            torch.autograd.backward(roots, root_grads)
        elif sync.world_size > 1:
            grads = grads_of(roots, params, root_grads, retain_graph=False)
            sync.mean_(grads)
            add_to_grads_(params, grads)
        else:
            torch.autograd.backward(roots, root_grads, inputs=list(params))
