"""The training loop: a plain PyTorch loop in which a strategy replaces ``backward``.

Model selection uses the primary metric of the validation that the composer injects
(``validate``; in a run, the validation split on the full condition, scored by
``balgrad.evaluate``, a later layer that this module does not import), or a defined one
where the primary is undefined on that split (:func:`selection_metric`). The test split
is never looked at here. A checkpoint is written after every epoch, so an interrupted or
failed run resumes from the last complete epoch.

The loop reads nothing on the host between its logging steps (every ``log_every``
steps): step statistics stay tensors, epoch sums accumulate on the device, and the
loggers convert in bulk. The forward pass runs under ``torch.autocast`` for bf16/fp16;
fp16 adds a ``GradScaler`` that the strategy applies to its losses.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from balgrad.atomic import write_text
from balgrad.data._impairments import Condition
from balgrad.data._progress import bar as progress_bar
from balgrad.data._splits import train_val_split
from balgrad.errors import BalgradError, ConfigError, NonFiniteLossError
from balgrad.strategies._base import EpochBatches
from balgrad.train._checkpoint import (
    load_latest_checkpoint,
    remove_checkpoints,
    remove_temporaries,
    save_checkpoint,
)
from balgrad.train._distributed import DistInfo
from balgrad.train._metrics_log import nan_to_null, to_floats
from balgrad.train._precision import autocast_region, make_scaler

log = logging.getLogger("balgrad.train")

#: offsets the seed of an epoch-start pass's shuffle (PMR) from every training order's
PASS_SEED = 2**40

#: the model's scores on the validation split, in percent: ``<metric>`` of the fused
#: logits, ``<modality>_<metric>`` of each tower's own logits
Validate = Callable[[torch.nn.Module], dict[str, float]]


@dataclass
class TrainSettings:
    """How :class:`Trainer` trains (``RunConfig``'s optimisation fields, resolved).

    Attributes:
        epochs: Epochs to train.
        batch_size: Samples per step (per process under torchrun).
        lr: The learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        weight_decay: The optimizer's weight decay.
        momentum: SGD's momentum.
        seed: The training seed (initialisation, order, dropout).
        primary_metric: The validation score that selects the best epoch.
        progress: Show a progress bar.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (resolved).
        log_every: Steps between host reads of the statistics.
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    seed: int = 0
    primary_metric: str = "accuracy"  # a key of the validation's scores
    progress: bool = True
    precision: str = "fp32"  # resolved: fp32, bf16 or fp16
    log_every: int = 25  # steps between host reads of the statistics


def make_optimizer(name: str, groups: list[dict], settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimizer ``settings.optimizer`` names, over the strategy's parameter groups.

    Args:
        name: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        groups: The parameter groups.
        settings: The rate, weight decay and momentum.

    Returns:
        The optimizer.

    Raises:
        ConfigError: An unknown name.
    """
    if name == "adam":
        return torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    raise ConfigError(f"optimizer: unknown optimizer {name!r}; expected adam, adamw or sgd")


def check_precision_support(strategy, precision: str) -> None:
    """fp16 needs a strategy that applies the gradient scaler to its losses.

    Args:
        strategy: The strategy.
        precision: The resolved precision.

    Raises:
        ConfigError: fp16 with a strategy that does not take a scaler.
    """
    if precision == "fp16" and not strategy.supports_grad_scaler:  # declared by the strategy
        raise ConfigError(
            f"precision: fp16 needs a strategy whose backward() takes scaler=; "
            f"{type(strategy).__name__}.backward does not (it declares supports_grad_scaler "
            "= False; use --precision bf16 or fp32)"
        )


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        best_state: The selected epoch's model state dict.
        best_epoch: That epoch.
        best_score: Its validation score.
        history: One row of scores and statistics per epoch.
        selected_by: The validation metric that picked ``best_epoch``.
        seconds: The training time of the whole run, the parts before a resume included.
    """

    best_state: dict
    best_epoch: int
    best_score: float
    history: list[dict]
    selected_by: str  # the validation metric that picked best_epoch (the primary one, if defined)
    seconds: float = 0.0  # training time of the whole run, the parts before a resume included


#: the highest score of every metric (they are in percent)
SCORE_MAX = 100.0


def warn_saturated(history: list[dict], metric: str, best_epoch: int) -> None:
    """Warn when the best epoch was picked among ties at the highest possible validation
    score: a saturated validation split cannot tell those epochs apart, and the first of
    them is kept (often epoch 0, barely trained).

    Args:
        history: The epochs' rows.
        metric: The selection metric.
        best_epoch: The epoch picked.
    """
    key = f"val_{metric}"
    tied = [row["epoch"] for row in history if row.get(key) == SCORE_MAX]
    if len(tied) > 1 and best_epoch == tied[0]:
        log.warning(
            "model selection: validation %s is %g%% in epochs %s, so it cannot tell them "
            "apart; the first, epoch %d, is kept. A larger or harder validation split "
            "(--val-fraction) would let the selection choose",
            metric,
            SCORE_MAX,
            ", ".join(map(str, tied)),
            best_epoch,
        )


def selection_metric(first_row: dict[str, float], primary: str, modalities: Sequence[str]) -> str:
    """The metric whose validation score picks the best epoch: ``primary``, unless it is
    undefined (NaN: AUROC of a validation split with one class); then the first defined
    metric of the fused logits. Read from the first epoch's row: the split's labels make
    a metric undefined, not the model, so every epoch and a resume agree.

    Args:
        first_row: The first epoch's row of scores.
        primary: The primary metric.
        modalities: The model's modalities (their metrics are not candidates).

    Returns:
        The metric's name.
    """
    if math.isfinite(first_row.get(f"val_{primary}", math.nan)):
        return primary
    scores = [k.removeprefix("val_") for k in first_row if k.startswith("val_")]
    # a tower's scores are <modality>_<metric>: built, not matched by prefix (a modality
    # "f1" must not take the fused "f1_macro" for one of its own)
    unimodal = {f"{m}_{k}" for m in modalities for k in scores}
    fused = [k for k in scores if k not in unimodal]
    fallback = next((m for m in fused if math.isfinite(first_row[f"val_{m}"])), None)
    if fallback is None:
        log.warning(
            "model selection: no validation metric is defined (%s); the last epoch is kept",
            ", ".join(fused),
        )
        return primary
    log.warning(
        "model selection: validation %s is undefined (e.g. the validation split has one "
        "class); the best epoch is picked by validation %s instead",
        primary,
        fallback,
    )
    return fallback


@dataclass
class _Progress:
    """What :meth:`Trainer.fit` carries from epoch to epoch (and a checkpoint saves)."""

    t0: float  # the clock when this fit started
    start: int = 0  # the first epoch to train
    best_score: float = -math.inf
    best_epoch: int = -1
    best_state: dict | None = None
    history: list[dict] = field(default_factory=list)
    before: float = 0.0  # training seconds of the run before a resume
    selected: str | None = None  # the validation metric that picks the best epoch

    def elapsed(self) -> float:
        """Training seconds of the whole run, the parts before a resume included."""
        return self.before + time.perf_counter() - self.t0


class Trainer:
    """Trains one model with one strategy.

    Args:
        model: the :class:`~balgrad.models.MultimodalModel` (or any balanced model).
        strategy: the :class:`~balgrad.strategies.Strategy` that computes each step.
        pipeline: the :class:`~balgrad.data._pipeline.InputPipeline` making batches.
        train_set: the training dataset.
        settings: the :class:`TrainSettings` (epochs, batch size, optimizer, rates...).
        run_dir: where ``checkpoint.pt``, ``epochs.jsonl`` and step logs go (rank 0).
        device: the device to train on.
        dist_info: the process's rank and world size under torchrun (None: one process).
        observers: extra step observers (loggers); each may have ``flush()`` and ``epoch``.
        validate: called with the model after every epoch (see :data:`Validate`); its
            scores go into the epoch's row as ``val_*``. The primary metric of the fused
            logits picks the best epoch, the unimodal ones go to the strategy's
            ``on_epoch_end`` (MSLR). A run passes
            :meth:`balgrad.evaluate._protocol.Evaluator.modality_scores`.

    Raises:
        TypeError: ``validate`` is not callable.
    """

    def __init__(
        self,
        model,
        strategy,
        pipeline,
        train_set,
        settings: TrainSettings,
        run_dir: str | Path,
        device: torch.device,
        dist_info: DistInfo | None = None,
        observers: list | None = None,
        *,
        validate: Validate,
    ):
        if not callable(validate):
            raise TypeError(f"validate must be a callable of the model, got {validate!r}")
        self.model, self.strategy, self.pipeline = model, strategy, pipeline
        self.train_set, self.validate = train_set, validate
        self.s = settings
        self.run_dir = Path(run_dir)
        self.device = device
        self.dist = dist_info or DistInfo()
        self.observers = observers or []
        for obs in self.observers:
            strategy.add_observer(obs)
        groups = strategy.param_groups(model, settings.lr)
        if not groups:
            raise ConfigError("the model has no trainable parameters")
        self.optimizer = make_optimizer(settings.optimizer, groups, settings)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        check_precision_support(strategy, settings.precision)
        self.held_out_set = self._hold_out()
        self.scaler = make_scaler(settings.precision, device)
        strategy.check_every = settings.log_every  # the strategy's lazy NaN check

    # -- one epoch ------------------------------------------------------------------
    def _train_loader(self, epoch: int):
        return self._shuffled_loader(epoch, self.s.seed, self.s.seed * 10_007 + epoch)

    def _shuffled_loader(self, epoch: int, sampler_seed: int, loader_seed: int):
        """The training set shuffled by ``loader_seed`` (by a DistributedSampler seeded
        with ``sampler_seed`` for ``epoch`` under torchrun, each rank its share)."""
        sampler = None
        if self.dist.enabled:
            sampler = DistributedSampler(
                self.train_set,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                shuffle=True,
                seed=sampler_seed,
                drop_last=True,
            )
            sampler.set_epoch(epoch)
        return self.pipeline.loader(
            self.train_set,
            Condition(),
            batch_size=self.s.batch_size,
            shuffle=True,
            seed=loader_seed,
            sampler=sampler,
            drop_last=self.dist.enabled,
        )

    def _prepare_epoch(self, epoch: int) -> None:
        """The strategy's epoch-start pass (PMR's prototypes) over its own seeded shuffle
        of the training data: the epoch's data order and the global RNG stay exactly as
        every other method has them."""
        seed = PASS_SEED + self.s.seed * 10_007 + epoch
        loader = self._shuffled_loader(0, seed, seed)

        def convert(batch):
            b = self._to_device(batch)
            return b.inputs, b.target

        extra = {}  # G-Blend's estimate: the held-out part and the copies' optimizer
        if self.held_out_set is not None:
            held = self.pipeline.loader(
                self.held_out_set, Condition(), batch_size=self.s.batch_size
            )
            extra["held_out"] = EpochBatches(held, convert)
        if getattr(self.strategy, "trains_copies", False):
            extra["make_optimizer"] = lambda params: make_optimizer(
                self.s.optimizer, [{"params": params}], self.s
            )
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), autocast_region(self.s.precision, self.device):
            self.strategy.prepare_epoch(self.model, EpochBatches(loader, convert), **extra)

    def _hold_out(self):
        """The strategy's held-out part of the training set (``held_out_fraction``,
        G-Blend's), split off once, stratified and deterministic by seed; the run never
        trains on it. None when the strategy holds out nothing."""
        fraction = getattr(self.strategy, "held_out_fraction", 0.0)
        if not fraction:
            return None
        try:
            self.train_set, held = train_val_split(self.train_set, fraction, self.s.seed)
        except ConfigError as err:
            raise ConfigError(
                f"held_out_fraction: {fraction} of {self.strategy.name}'s held-out data leaves "
                f"an empty training or held-out part of the {len(self.train_set)} training "
                f"samples ({err})"
            ) from None
        return held

    def _modalities(self) -> tuple[str, ...]:
        return self.strategy.modalities(self.model)

    def _validate(self) -> dict[str, float]:
        scores = self.validate(self.model)
        prefixes = ("", *(f"{m}_" for m in self._modalities()))
        needed = [f"{p}{self.s.primary_metric}" for p in prefixes]
        if missing := [k for k in needed if k not in scores]:
            raise BalgradError(
                f"validate returned no {', '.join(missing)} (it returned {', '.join(scores)}); "
                f"the trainer needs {', '.join(needed)}"
            )
        return {f"val_{k}": v for k, v in scores.items()}

    def fit(self, resume: bool = False) -> TrainResult:
        """Train for ``settings.epochs`` epochs: each epoch's steps, validation, model
        selection on the primary metric and a checkpoint.

        Args:
            resume: Continue from the run folder's latest checkpoint, if there is one.

        Returns:
            The :class:`TrainResult`: the best epoch's weights, epoch and score, the
            history and the training time.

        Raises:
            BalgradError: A checkpoint that cannot be resumed from.
        """
        run = self._set_up(resume)
        for epoch in range(run.start, self.s.epochs):
            means = self._train_epoch(epoch)
            self._validate_and_select(epoch, means, run)
            if self.dist.is_main:
                self._save(epoch, run)
        return self._finish(run)

    # -- the steps of fit -----------------------------------------------------------
    def _set_up(self, resume: bool) -> _Progress:
        """The progress to start from (a checkpoint's, with ``resume``), and the run
        folder made to hold exactly it: no other run's checkpoint, no later log rows."""
        t0 = time.perf_counter()
        loaded = load_latest_checkpoint(self.checkpoint_path) if resume else None
        if loaded is not None:
            run = self._resume(*loaded, t0=t0)
        else:
            run = _Progress(t0=t0)
            if resume:
                log.info("no checkpoint at %s; starting from scratch", self.checkpoint_path)
        if self.dist.is_main:
            if loaded is None:
                remove_checkpoints(self.checkpoint_path)  # never fall back on another run's
            remove_temporaries(self.checkpoint_path)  # of a save that a kill cut short
            # the logs must hold exactly the checkpoint's steps and epochs: later rows
            # (from an interrupted epoch, or a run without a checkpoint) are redone
            for obs in self.observers:
                if hasattr(obs, "truncate_after"):
                    obs.truncate_after(self.strategy.step)
            self._write_epochs(run.history)
        if run.history:
            run.selected = selection_metric(
                run.history[0], self.s.primary_metric, self._modalities()
            )
        return run

    def _resume(self, ck: dict, source, t0: float) -> _Progress:
        """The model, optimizer, strategy and scaler restored from checkpoint ``ck``
        (read from ``source``), and the progress it saved."""
        try:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.strategy.load_state_dict(ck["strategy"])
            if self.scaler is not None and ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise BalgradError(
                f"checkpoint {source} does not fit this run's model, optimizer or strategy "
                f"({reason}); it is of another run: move it away to train this one from scratch"
            ) from None
        run = _Progress(
            start=ck["epoch"] + 1,
            best_score=ck["best_score"],
            best_epoch=ck["best_epoch"],
            best_state=ck["best_state"],
            history=ck["history"],
            before=float(ck.get("elapsed", 0.0)),  # absent in checkpoints of older versions
            t0=t0,
        )
        log.info("resumed %s from epoch %d", source, run.start)
        return run

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training data (after the strategy's epoch-start pass, if it
        has one): the means of the step statistics, checked finite."""
        self.strategy.on_epoch_start(epoch, self.s.epochs)
        for obs in self.observers:
            obs.epoch = epoch
        self.model.train()
        if self.strategy.needs_preparation():
            self._prepare_epoch(epoch)
        loader = self._train_loader(epoch)
        totals = self._steps(loader, epoch)
        self._flush()
        n = max(1, len(loader))
        means = to_floats({k: v / n for k, v in totals.items()})  # one host sync per epoch
        self._check_finite(epoch, means, self._saved_note(epoch))
        return means

    def _steps(self, loader, epoch: int) -> dict[str, float | torch.Tensor]:
        """Every training step of ``epoch``; the sums of their statistics (on the device:
        no host sync). A non-finite loss stops the run naming its epoch and step."""
        bar = progress_bar(  # it never iterates the loader (balgrad.data._progress)
            loader,
            desc=f"{self.strategy.name} epoch {epoch + 1}/{self.s.epochs}",
            disable=not (self.s.progress and self.dist.is_main),
            leave=False,
        )
        totals: dict[str, float | torch.Tensor] = {}
        try:
            for batch in loader:
                stats = self._train_step(batch)
                bar.update()
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                if (
                    not bar.disable
                    and "loss_task" in stats
                    and self.strategy.step % self.s.log_every == 0
                ):
                    bar.set_postfix(loss=f"{float(stats['loss_task']):.3f}")
            # the lazy checks of the epoch's last steps, which name the bad loss and its
            # step, before anything of this epoch is validated or saved
            self.strategy.verify()
        except NonFiniteLossError as err:
            self._flush()
            raise NonFiniteLossError(
                f"{self.strategy.name}, epoch {epoch + 1}, step {self.strategy.step}: {err}. "
                f"{self._saved_note(epoch)}"
            ) from err
        except KeyboardInterrupt:  # the caller says what is saved (the CLI exits 130)
            self._flush()
            raise
        finally:
            bar.close()
        return totals

    def _validate_and_select(self, epoch: int, means: dict[str, float], run: _Progress) -> None:
        """Validate the model, give the strategy its unimodal scores (``on_epoch_end``),
        add the epoch's row to the history and keep the model if it is the best so far."""
        val = self._validate()
        run.selected = run.selected or selection_metric(
            val, self.s.primary_metric, self._modalities()
        )
        epoch_extra = self.strategy.on_epoch_end(
            epoch,
            self.optimizer,
            {m: val[f"val_{m}_{run.selected}"] for m in self._modalities()},
        )
        run.history.append(
            {
                "epoch": epoch,
                **{f"train_{k}": v for k, v in means.items()},
                **val,
                **epoch_extra,
                "lr": [g["lr"] for g in self.optimizer.param_groups],
            }
        )
        score = val[f"val_{run.selected}"]
        if score > run.best_score or not math.isfinite(score):  # undefined: keep the last
            run.best_score, run.best_epoch = score, epoch
            run.best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            )

    def _save(self, epoch: int, run: _Progress) -> None:
        """The checkpoint of the complete ``epoch`` and the epoch log (rank 0)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            self.checkpoint_path,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            strategy=self.strategy.state_dict(),
            epoch=epoch,
            best_score=run.best_score,
            best_epoch=run.best_epoch,
            best_state=run.best_state,
            history=run.history,
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            elapsed=run.elapsed(),
        )
        self._write_epochs(run.history)

    def _finish(self, run: _Progress) -> TrainResult:
        if run.best_state is None:
            raise BalgradError("training finished without a single completed epoch")
        if self.dist.is_main:
            warn_saturated(run.history, run.selected, run.best_epoch)
        return TrainResult(
            run.best_state,
            run.best_epoch,
            run.best_score,
            run.history,
            run.selected,
            run.elapsed(),
        )

    def _train_step(self, batch) -> dict:
        b = self._to_device(batch)
        if self.strategy.owns_optimizer_step:  # MLA: its own M optimizer steps per batch
            with autocast_region(self.s.precision, self.device):
                return self.strategy.train_step(
                    self.model, b.inputs, b.target, self.optimizer, scaler=self.scaler
                )
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_region(self.s.precision, self.device):
            out = self.model(b.inputs)
        if self.scaler is None:
            stats = self.strategy.backward(self.model, out, b.target)
            self.optimizer.step()
        else:  # the strategy scales every loss; the scaler unscales and skips inf steps
            stats = self.strategy.backward(self.model, out, b.target, scaler=self.scaler)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return stats

    def _to_device(self, batch):
        if self.device.type == "cuda":  # pinned host memory makes the copy asynchronous
            batch = dataclasses.replace(
                batch,
                **{f.name: _pinned(getattr(batch, f.name)) for f in dataclasses.fields(batch)},
            )
        return batch.to(self.device)

    def _saved_note(self, epoch: int, fix: bool = True) -> str:
        """What a run stopped in ``epoch`` leaves to resume from: it says what exists."""
        cause = "fix the cause and " if fix else ""
        if epoch == 0:  # a resumed run starts after a saved epoch
            return (
                f"No epoch was complete, so no checkpoint was saved; {cause}rerun the same "
                "command (with --resume it starts from scratch too)"
            )
        return (
            f"The last complete epoch, {epoch}, is saved in {self.checkpoint_path}; "
            f"{cause}rerun the same command with --resume to continue from it"
        )

    def _check_finite(self, epoch: int, means: dict[str, float], saved: str) -> None:
        """Before validation and the checkpoint: a non-finite loss or weight that the lazy
        per-step check has not reached yet (it runs every ``log_every`` steps) must not
        be saved as the last complete epoch."""
        bad = [k for k, v in means.items() if k.startswith("loss") and not math.isfinite(v)]
        if not bad:
            finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()])
            if not bool(finite.all()):
                bad = ["model parameters"]
        if bad:
            raise NonFiniteLossError(
                f"{self.strategy.name}, epoch {epoch + 1}, step {self.strategy.step}: "
                f"{', '.join(bad)} became NaN or infinite in this epoch. {saved}"
            )

    def _write_epochs(self, history: list[dict]) -> None:
        # rewritten whole from the checkpointed history, so a resume never duplicates rows
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rows = (json.dumps(nan_to_null(r)) + "\n" for r in history)  # undefined scores: null
        write_text(self.run_dir / "epochs.jsonl", "".join(rows))

    def _flush(self) -> None:
        for obs in self.observers:
            if hasattr(obs, "flush"):
                obs.flush()


def _pinned(x):
    if isinstance(x, torch.Tensor):
        return x.pin_memory() if x.device.type == "cpu" else x
    if isinstance(x, Mapping):
        return {k: _pinned(v) for k, v in x.items()}
    return x
