"""Lazy validity checks: finite losses and gradients, targets in range.

A strategy records, at every step, 0-d device flags ("is L_T finite?", "are the labels
in range?"); :meth:`PendingChecks.verify` reads all of them since the last check in ONE
host synchronisation and raises for the first bad one, naming the quantity and the step.
``Strategy.check_every`` sets how often that happens; between checks nothing waits on
the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from balgrad.errors import DataError, NonFiniteLossError
from balgrad.tasks import format_label


@dataclass
class _Record:
    step: int
    names: tuple[str, ...]
    values: torch.Tensor  # one flag per name (1 ok, 0 bad), then ``details`` extra values
    details: int = 0
    message: str = ""  # for target records: how to describe the bad label


class PendingChecks:
    """The checks recorded since the last :meth:`verify`, one per step and quantity."""

    def __init__(self) -> None:
        self._records: list[_Record] = []

    def finite(self, step: int, names: tuple[str, ...], values: torch.Tensor) -> None:
        """Record that each entry of ``values`` (losses or gradient norms) must be finite.

        Args:
            step: The step that recorded it.
            names: One name per entry of ``values``, for the message.
            values: The values.
        """
        flags = torch.isfinite(values.detach().reshape(-1))
        self._records.append(_Record(step, names, flags))

    def target(self, step: int, ok: torch.Tensor, bad_value: torch.Tensor, message: str) -> None:
        """Record a target check: ``ok`` (0-d bool) and the first offending value.

        Args:
            step: The step that recorded it.
            ok: Whether the targets are valid.
            bad_value: The first offending label.
            message: How to describe a bad label.
        """
        values = torch.stack([ok.to(_wide(ok)), bad_value.to(_wide(ok))])
        self._records.append(_Record(step, ("target",), values, details=1, message=message))

    def verify(self) -> None:
        """Read every pending flag in one host sync; raise for the first bad one."""
        if not self._records:
            return
        records, self._records = self._records, []
        device = records[0].values.device
        flat = torch.cat([r.values.to(device, _wide(records[0].values)) for r in records]).tolist()
        at = 0
        for r in records:
            n = len(r.names)
            flags, extra = flat[at : at + n], flat[at + n : at + n + r.details]
            at += n + r.details
            for name, ok in zip(r.names, flags):
                if ok:
                    continue
                if name == "target":
                    raise DataError(
                        f"{r.message.format(value=format_label(extra[0]))} at step {r.step}"
                    )
                raise NonFiniteLossError(
                    f"{name} is not finite at step {r.step} (the first bad value since the "
                    "last check); lower the learning rate or check the inputs for NaN/inf"
                )


def _wide(t: torch.Tensor) -> torch.dtype:
    """float64 for flags and label values, float32 where the device has no float64 (MPS)."""
    return torch.float32 if t.device.type == "mps" else torch.float64
