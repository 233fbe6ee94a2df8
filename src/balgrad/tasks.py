"""Task losses and the per-modality statistics SPEC section 2 builds on.

Single-label tasks use softmax + cross-entropy; multi-label tasks (MM-IMDb) use
sigmoid + binary cross-entropy, and their KL divergence is the sum over labels of
Bernoulli KLs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from balgrad.data._base import TaskKind
from balgrad.errors import ConfigError, DataError, NonFiniteLossError

TASKS = ("single_label", "multi_label")


def check_task(task: str) -> TaskKind:
    """Check a task name.

    Args:
        task: The name.

    Returns:
        The name.

    Raises:
        ConfigError: Not ``"single_label"`` or ``"multi_label"``.
    """
    if task not in TASKS:
        raise ConfigError(f"task: unknown task {task!r}; expected one of {TASKS}")
    return task  # type: ignore[return-value]


def check_target_shape(logits: torch.Tensor, target: torch.Tensor, task: TaskKind) -> None:
    """Raise a DataError naming the problem when ``target``'s shape or dtype does not fit
    ``logits`` (no tensor value is read: no host sync; :func:`screen_target` checks values).

    Args:
        logits: The logits ``[B, C]``.
        target: The labels.
        task: ``"single_label"`` or ``"multi_label"``.

    Raises:
        DataError: The shape or dtype does not fit.
    """
    if task == "single_label":
        if target.dim() != 1 or target.shape[0] != logits.shape[0]:
            raise DataError(
                f"target: expected shape [{logits.shape[0]}] of class indices for a "
                f"single-label task, got {list(target.shape)}"
            )
        if target.dtype.is_floating_point:
            raise DataError("target: single-label targets must be integer class indices")
    elif target.shape != logits.shape:
        raise DataError(
            f"target: expected multi-hot shape {list(logits.shape)} for a multi-label "
            f"task, got {list(target.shape)}"
        )


def screen_target(
    logits: torch.Tensor, target: torch.Tensor, task: TaskKind
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Device-side target check, read later: ``(usable, ok, bad_value, message)``.

    ``ok`` (0-d bool) says whether every label is valid and ``bad_value`` is the first
    invalid one; ``message`` formats the error (``{value}``). ``usable`` is
    the target with single-label indices clamped into range, so that the losses can be
    computed (an out-of-range index would stop a CUDA device with an assert) until the
    check raises.

    Args:
        logits: The logits ``[B, C]``.
        target: The labels.
        task: ``"single_label"`` or ``"multi_label"``.

    Returns:
        (usable, ok, bad_value, message).
    """
    if target.numel() == 0:
        return (
            target,
            torch.ones((), dtype=torch.bool, device=target.device),
            target.new_zeros(()),
            "",
        )
    if task == "single_label":
        num_classes = logits.shape[-1]
        bad = (target < 0) | (target >= num_classes)
        usable = target.clamp(0, num_classes - 1)
        message = f"target: label {{value}} is out of range [0, {num_classes})"
    else:
        bad = (target != 0) & (target != 1)
        usable = target
        message = "target: multi-label targets must be 0/1, got {value}"
    first = bad.reshape(-1).to(torch.uint8).argmax().reshape(1)
    return usable, ~bad.any(), target.reshape(-1).gather(0, first).reshape(()), message


#: the half-precision dtypes autocast produces
LOW_PRECISION = (torch.float16, torch.bfloat16)


def widen(t: torch.Tensor) -> torch.Tensor:
    """float32 for a half-precision tensor, else itself: losses, probabilities, norms and
    inner products lose too much in float16/bfloat16 (autocast); gradients still flow
    back in the tensor's own dtype.

    Args:
        t: A tensor.

    Returns:
        The tensor, at least float32 where it was half precision.
    """
    return t.float() if t.dtype in LOW_PRECISION else t


def format_label(value: float) -> str:
    """A label for a message: ``3`` for an integral value, else its repr.

    Args:
        value: The label.

    Returns:
        The text.
    """
    return str(int(value)) if float(value).is_integer() else repr(value)


def task_loss(logits: torch.Tensor, target: torch.Tensor, task: TaskKind) -> torch.Tensor:
    """The task loss ℓ: mean cross-entropy, or mean binary cross-entropy over labels.

    Args:
        logits: ``[B, C]``.
        target: Class indices ``[B]`` or multi-hot ``[B, C]``.
        task: ``"single_label"`` or ``"multi_label"``.

    Returns:
        ℓ, 0-d.
    """
    logits = widen(logits)
    if task == "single_label":
        return F.cross_entropy(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def symmetric_kl(
    logits_a: torch.Tensor, logits_b: torch.Tensor, task: TaskKind, temperature: float = 1.0
) -> torch.Tensor:
    """D = KL(p_a || p_b) + KL(p_b || p_a), batch mean (SPEC section 2).

    Args:
        logits_a: z_a ``[B, C]``.
        logits_b: z_b ``[B, C]``.
        task: ``"single_label"`` (softmax) or ``"multi_label"`` (per-label Bernoulli).
        temperature: τ: p = softmax(z / τ).

    Returns:
        D, 0-d.
    """
    za, zb = widen(logits_a) / temperature, widen(logits_b) / temperature
    if task == "single_label":
        la, lb = F.log_softmax(za, dim=-1), F.log_softmax(zb, dim=-1)
        pa, pb = la.exp(), lb.exp()
        # KL(a||b) + KL(b||a) = sum (pa - pb)(log pa - log pb)
        return ((pa - pb) * (la - lb)).sum(-1).mean()
    # Bernoulli per label: states {1, 0} with log-probs logsigmoid(z), logsigmoid(-z)
    la1, la0 = F.logsigmoid(za), F.logsigmoid(-za)
    lb1, lb0 = F.logsigmoid(zb), F.logsigmoid(-zb)
    sym = (la1.exp() - lb1.exp()) * (la1 - lb1) + (la0.exp() - lb0.exp()) * (la0 - lb0)
    return sym.sum(-1).mean()


def true_class_prob(logits: torch.Tensor, target: torch.Tensor, task: TaskKind) -> torch.Tensor:
    """Per-sample probability of the true label (multi-label: mean prob of the true state).

    Args:
        logits: ``[B, C]``.
        target: The labels.
        task: ``"single_label"`` or ``"multi_label"``.

    Returns:
        ``[B]``.
    """
    logits = widen(logits)
    if task == "single_label":
        return F.softmax(logits, dim=-1).gather(-1, target.view(-1, 1)).squeeze(-1)
    p = torch.sigmoid(logits)
    t = target.to(p.dtype)
    return (t * p + (1 - t) * (1 - p)).mean(-1)


def check_finite(name: str, value: torch.Tensor) -> None:
    """Check now (a host sync) that a value is finite.

    Args:
        name: The value's name, for the message.
        value: The value.

    Raises:
        NonFiniteLossError: An entry is NaN or infinite.
    """
    if not torch.isfinite(value).all():
        raise NonFiniteLossError(
            f"{name} is not finite ({value.detach().flatten()[:4].tolist()}); "
            "lower the learning rate or check the inputs for NaN/inf"
        )
