"""Pieces both framework integrations share: batch unpacking, the strategy step, the
statistics meter, unimodal accuracies and the epoch-end hook."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MultilabelAccuracy

from balgrad._grad import GradientSync, default_sync
from balgrad.errors import ConfigError, DataError
from balgrad.names import LABEL_KEYS
from balgrad.strategies._base import EpochBatches

BATCH_FORMAT = (
    'a dict with one key per modality plus "labels" ({"audio": ..., "visual": ..., '
    '"labels": ...}; optionally "drop_<modality>", bool [B]), a dict {"inputs": {modality: '
    'x}, "labels": ..., "drop": {modality: mask}}, a balgrad Batch, or a tuple (inputs, '
    "labels); for a two-modality model also a tuple (x_1, x_2, labels)"
)


def reduces_own_gradients(strategy: Any) -> bool:
    """Does ``strategy.backward`` all-reduce its gradients itself (through ``strategy.sync``)?

    The strategy declares it (``Strategy.reduces_own_gradients``). True (the base
    class's): the gradients are separate ``torch.autograd.grad`` results, averaged over
    ranks by the strategy, so DDP's reducer must stay out of the backward. False (e.g. a
    one-backward strategy designed for plain DDP): the strategy calls ``.backward()`` and
    DDP's reducer averages the gradients; only its scalar statistics go through
    ``strategy.sync``.
    """
    return bool(strategy.reduces_own_gradients)


def unpack_batch(
    batch: Any, modalities: Sequence[str]
) -> tuple[dict[str, Any], torch.Tensor, dict[str, torch.Tensor]]:
    """(inputs by modality, labels, {modality: drop mask} where given) of one batch, for
    a model with ``modalities`` (see :data:`BATCH_FORMAT`)."""
    modalities = tuple(modalities)
    if isinstance(batch, Mapping) and "inputs" in batch:
        inputs, drops = batch["inputs"], dict(batch.get("drop") or {})
        label_key = next((k for k in LABEL_KEYS if k in batch), None)
        target = batch[label_key] if label_key else None
    elif isinstance(batch, Mapping):
        inputs = {m: batch[m] for m in modalities if m in batch}
        label_key = next((k for k in LABEL_KEYS if k in batch), None)
        missing = [m for m in modalities if m not in batch] + ["labels"] * (label_key is None)
        if missing:
            raise DataError(
                f"batch: missing key(s) {missing} for a model with modalities "
                f"{list(modalities)}; expected {BATCH_FORMAT}; got keys {sorted(batch)}"
            )
        target = batch[label_key]
        drops = {m: batch[f"drop_{m}"] for m in modalities if batch.get(f"drop_{m}") is not None}
    elif hasattr(batch, "inputs") and hasattr(batch, "target"):
        inputs, target, drops = batch.inputs, batch.target, dict(getattr(batch, "drop", {}))
    elif isinstance(batch, Sequence) and len(batch) == 2 and isinstance(batch[0], Mapping):
        (inputs, target), drops = batch, {}
    elif isinstance(batch, Sequence) and len(batch) == 3 and len(modalities) == 2:
        inputs, target, drops = dict(zip(modalities, batch[:2])), batch[2], {}
    else:
        raise DataError(f"batch: expected {BATCH_FORMAT}, got {type(batch).__name__}")
    if not isinstance(inputs, Mapping) or set(inputs) != set(modalities):
        got = list(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
        raise DataError(
            f"batch: inputs for modalities {got}, but the model's are {list(modalities)}"
        )
    unknown = [m for m in drops if m not in modalities]
    if unknown:
        raise DataError(f"batch: drop masks for unknown modalities {unknown}")
    if not isinstance(target, torch.Tensor):
        raise DataError(f"batch: labels must be a tensor, got {type(target).__name__}")
    drops = {m: d for m, d in drops.items() if d is not None}
    return {m: inputs[m] for m in modalities}, target, drops


def strategy_backward(strategy, model, output, target, scaler=None) -> dict[str, Any]:
    """``strategy.backward``, handing over a mixed-precision ``GradScaler`` when one is on."""
    if scaler is None or not scaler.is_enabled():
        return strategy.backward(model, output, target)
    if not strategy.supports_grad_scaler:  # declared by the strategy
        raise ConfigError(
            f"fp16 mixed precision needs a strategy whose backward() takes scaler= "
            f"({type(strategy).__name__}.backward does not: it declares "
            "supports_grad_scaler = False); train in bf16 or fp32 instead"
        )
    return strategy.backward(model, output, target, scaler=scaler)


def owns_optimizer_step(strategy: Any) -> bool:
    """Does the strategy take its own optimizer steps (``train_step``: MLA, one per
    modality per batch) instead of ``backward()`` and the loop's ``optimizer.step()``?"""
    return bool(getattr(strategy, "owns_optimizer_step", False))


def prediction(strategy: Any, model: Any, output: Any) -> torch.Tensor:
    """What evaluation scores as the fused prediction: the strategy's test-time fusion
    (``strategy.fuse``, MLA) where it has one, else the model's fused logits."""
    if getattr(strategy, "test_time_fusion", False):
        return strategy.fuse(model, output)
    return output.logits


def prepare_strategy(strategy: Any, log_interval: int) -> None:
    """At the start of training, once the launcher has initialised ``torch.distributed``.

    A strategy built before that holds the single-process sync: it gets the default
    process group's (a custom sync is kept). Lazy finiteness checks (``check_every``,
    where the strategy has it) run once per log line, as in balgrad's own trainer.
    """
    if type(strategy.sync) is GradientSync:
        strategy.sync = default_sync()
    strategy.check_every = max(1, int(log_interval))


def needs_epoch_pass(strategy: Any) -> bool:
    """Must the loop call ``strategy.prepare_epoch`` before this epoch's first step?"""
    return bool(strategy.needs_preparation())


def epoch_pass(
    strategy: Any,
    model: Any,
    loader: Any,
    modalities: Sequence[str],
    move: Callable[[Any], Any],
    context: Any = None,
    optimizer: Any = None,
) -> None:
    """``strategy.prepare_epoch(model, batches)`` over ``loader`` (batches unpacked by
    :func:`unpack_batch` after ``move`` puts them on the model's device), run inside
    ``context`` (the loop's autocast). The global RNG and the generators of the loader and
    its sampler are put back afterwards, so the epoch's own iteration draws the same
    order and the same random numbers as without the pass. A strategy that
    ``trains_copies`` (G-Blend) also gets ``make_optimizer``: a fresh optimizer of the
    loop's ``optimizer``'s class and constructor settings."""

    def convert(batch):
        inputs, target, _ = unpack_batch(move(batch), modalities)
        return inputs, target

    extra = {}
    if getattr(strategy, "trains_copies", False) and optimizer is not None:
        extra["make_optimizer"] = optimizer_like(optimizer)
    with _rng_kept(loader), context or contextlib.nullcontext():
        strategy.prepare_epoch(model, EpochBatches(loader, convert), **extra)


def optimizer_like(optimizer: Any) -> Callable[[list], torch.optim.Optimizer]:
    """params -> a new optimizer of ``optimizer``'s class with its first parameter group's
    settings (lr, weight decay, momentum, ...: a loop may pass them per group rather than
    to the constructor), the learning rate before any schedule (``initial_lr``); a
    wrapper (Lightning's, Accelerate's) is seen through its ``.optimizer``."""
    inner = getattr(optimizer, "optimizer", optimizer)
    group = inner.param_groups[0]
    settings = {k: group[k] for k in inner.defaults if k in group}
    settings["lr"] = group.get("initial_lr", group["lr"])
    return lambda params: type(inner)(params, **settings)


@contextlib.contextmanager
def _rng_kept(loader: Any) -> Iterator[None]:
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    owners = [
        loader,
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ]
    generators = {
        id(g): g
        for g in (getattr(o, "generator", None) for o in owners)
        if isinstance(g, torch.Generator)
    }
    states = {k: g.get_state() for k, g in generators.items()}
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            for k, g in generators.items():
                g.set_state(states[k])


class StatsMeter:
    """Sums of step statistics between two log lines, read in one go.

    Floats (statistics a strategy already read to the host) are summed on the host;
    0-d tensors are stacked and summed where they live, so :meth:`add` never waits for
    the device. :meth:`flush` returns the interval means as one float32 vector.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._count: dict[str, int] = {}
        self._host: dict[str, float] = {}
        self._parked: dict[str, torch.Tensor] = {}
        self._keys: tuple[str, ...] = ()
        self._vec: torch.Tensor | None = None

    def __bool__(self) -> bool:
        return bool(self._count)

    def add(self, stats: Mapping[str, Any]) -> None:
        tensors = {}
        for k, v in stats.items():
            self._count[k] = self._count.get(k, 0) + 1
            if isinstance(v, torch.Tensor):
                tensors[k] = v
            else:
                self._host[k] = self._host.get(k, 0.0) + float(v)
        if not tensors:
            return
        vec = torch.stack([v.detach().reshape(()).to(torch.float32) for v in tensors.values()])
        keys = tuple(tensors)
        if keys == self._keys and self._vec is not None:
            self._vec += vec
        else:  # the set of tensor statistics changed: keep the running sums per name
            self._park()
            self._keys, self._vec = keys, vec

    def _park(self) -> None:
        if self._vec is not None:
            for k, v in zip(self._keys, self._vec.unbind(0)):
                self._parked[k] = self._parked[k] + v if k in self._parked else v
        self._keys, self._vec = (), None

    def flush(self, device: torch.device | str) -> tuple[list[str], torch.Tensor]:
        """(names, interval means on ``device``), then start a new interval."""
        self._park()
        names = list(self._count)
        sums = torch.tensor([self._host.get(k, 0.0) for k in names], dtype=torch.float32)
        sums = sums.to(device)
        if self._parked:
            index = torch.tensor([names.index(k) for k in self._parked], device=device)
            sums.index_add_(0, index, torch.stack(list(self._parked.values())).to(device))
        counts = torch.tensor([self._count[k] for k in names], dtype=torch.float32)
        means = sums / counts.to(device)
        self.reset()
        return names, means


class UnimodalAccuracy:
    """Accuracy (percent) of the fused logits (``accuracy``) and of each modality's own
    (``<modality>_accuracy``): torchmetrics objects, created at the first batch and
    synchronised across ranks by ``compute``."""

    def __init__(self, task: str, modalities: Sequence[str]) -> None:
        self.task = task
        self.names = ("accuracy", *(f"{m}_accuracy" for m in modalities))
        self.metrics: list[Metric] | None = None

    def update_from(self, output: Any, target: torch.Tensor, fused: Any = None) -> None:
        """Update from a ModelOutput: the fused logits (or ``fused``, the strategy's
        :func:`prediction`), then each modality's."""
        fused = output.logits if fused is None else fused
        self.update([fused, *output.unimodal.values()], target)

    def update(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> None:
        if self.metrics is None:
            n = logits[0].shape[-1]
            make = (
                (lambda: MulticlassAccuracy(num_classes=n, average="micro"))
                if self.task == "single_label"
                else (lambda: MultilabelAccuracy(num_labels=n, average="micro"))
            )
            self.metrics = [make().to(logits[0].device) for _ in self.names]
        target = target.long()
        for metric, z in zip(self.metrics, logits):
            metric.update(z.detach().float(), target)

    def compute(self, scale: float = 100.0) -> dict[str, float]:
        """The accuracies, in percent (``scale=1``: fractions, the Hugging Face
        convention); empty before any update. Resets for the next pass."""
        if self.metrics is None:
            return {}
        values = torch.stack([m.compute() for m in self.metrics]).mul(scale).tolist()
        for m in self.metrics:
            m.reset()
        return dict(zip(self.names, values))


def epoch_end(
    strategy,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    accuracies: Mapping[str, float] | None,
    scheduler: Any = None,
    *,
    how_to_validate: str,
) -> dict[str, float]:
    """``strategy.on_epoch_end`` with the unimodal validation accuracies.

    A strategy that changes learning rates here (MSLR) writes ``group["lr"]``; an LR
    scheduler computing its rates from ``base_lrs`` (LambdaLR, the Trainer's linear
    decay) would overwrite that at its next step, so the change is carried into it.
    """
    scores = None
    if accuracies:
        suffix = "_accuracy"
        scores = {k[: -len(suffix)]: v for k, v in accuracies.items() if k.endswith(suffix)}
    elif strategy.needs_unimodal_validation:
        raise ConfigError(
            f"{strategy.name} needs the unimodal "
            f"validation accuracies at the end of every epoch: {how_to_validate}"
        )
    before = [g["lr"] for g in optimizer.param_groups]
    extra = strategy.on_epoch_end(epoch, optimizer, scores)
    base_lrs = getattr(getattr(scheduler, "scheduler", scheduler), "base_lrs", None)
    for i, (group, old) in enumerate(zip(optimizer.param_groups, before)):
        if group["lr"] != old and old != 0 and base_lrs is not None:
            ratio = group["lr"] / old
            base_lrs[i] *= ratio
            if "initial_lr" in group:
                group["initial_lr"] *= ratio
    return dict(extra or {})
