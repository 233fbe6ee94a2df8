"""Any balgrad strategy inside PyTorch Lightning (``pip install balgrad[lightning]``).

    module = BalGradModule(model, create_strategy("balgrad"), lr=1e-3)
    L.Trainer(max_epochs=10, devices=2, strategy="ddp").fit(module, train_loader, val_loader)

A strategy replaces ``loss.backward()``, so the module uses Lightning's manual
optimisation (``automatic_optimization = False``): each ``training_step`` zeroes the
gradients, runs the model, calls ``strategy.backward(model, output, labels)`` (which
writes ``.grad``) and steps the optimizer through Lightning's ``LightningOptimizer``,
so precision plugins apply (bf16 autocast covers the step; with fp16 the plugin's
``GradScaler`` is handed to the strategy as ``scaler=`` and ``optimizer.step()``
unscales, skips non-finite steps and updates it).

Batches: a dict with one key per modality of the model plus ``"labels"``
(``{"audio": ..., "visual": ..., "labels": ...}``, optionally ``"drop_<modality>"``), a
dict ``{"inputs": {...}, "labels": ...}``, a tuple ``(inputs, labels)``, or balgrad's
``Batch``; for a two-modality model also ``(x_1, x_2, labels)``.

**Data parallelism without double counting.** Lightning's DDP wraps this module in
``DistributedDataParallel``; under manual optimisation DDP's reducer takes part in a
backward only when ``manual_backward`` prepares it (``DDPStrategy.pre_backward``), and
the DDP forward is told not to prepare it itself. The module therefore chooses per
strategy (:func:`balgrad.integrations._common.reduces_own_gradients`, i.e. the
strategy's ``reduces_own_gradients`` attribute, True when absent):

- strategies that all-reduce their own gradients (joint, BalGrad, OGM-GE, AGM, MSLR:
  separate ``torch.autograd.grad`` results averaged through ``strategy.sync`` before
  any coefficient or projection) run with the reducer never prepared, so its hooks do
  nothing and every gradient is averaged exactly once, by the strategy;
- strategies that leave the averaging to DDP (``reduces_own_gradients = False``, one
  ``.backward()``) get the reducer prepared through ``trainer.strategy.pre_backward``
  before their backward and finalised through ``post_backward`` after it, as
  ``manual_backward`` would; their scalar statistics still go through ``strategy.sync``.

``strategy.sync`` is pointed at the default process group in :meth:`setup`, since the
strategy is usually built before Lightning initialises ``torch.distributed``.

Statistics: the strategy's per-step values are summed where they live (no host sync)
and, every ``log_every_n_steps`` of the Trainer, averaged over the interval,
all-reduced across ranks in one collective and logged with ``self.log`` as
``train/<name>``. Validation logs ``val/accuracy`` and ``val/<modality>_accuracy`` for
each modality; the latter go to ``strategy.on_epoch_end`` (MSLR). OGM-GE's
``on_epoch_start`` gets the epoch and ``max_epochs``. A strategy that needs an
epoch-start pass (``needs_epoch_pass``: PMR's class prototypes) gets
``prepare_epoch`` at every epoch start, over ``trainer.train_dataloader`` (it takes the
first tenth; the loader's generators and the global RNG are put back afterwards).
A strategy that takes its own optimizer steps (``owns_optimizer_step``: MLA, one per
modality) runs ``strategy.train_step`` with the LightningOptimizer, so ``global_step``
advances by M per batch; validation scores its test-time fusion (``strategy.fuse``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from balgrad.errors import ConfigError
from balgrad.integrations import _common
from balgrad.strategies._base import Strategy

__all__ = ["BalGradModule"]

INTERVALS = ("epoch", "step")


class BalGradModule(pl.LightningModule):
    """Trains ``model`` with ``strategy``; see the module docstring.

    Args:
        model: a ``MultimodalModel`` or any model of that shape
            (:class:`balgrad.strategies.BalancedModel`).
        strategy: a balgrad strategy (``balgrad.create_strategy(name, **options)``).
        lr: base learning rate, passed to ``strategy.param_groups`` (MSLR scales it
            per modality).
        optimizer: builds the optimizer from those parameter groups (default Adam).
        lr_scheduler: optional; builds an LR scheduler from the optimizer. Manual
            optimisation leaves stepping it to the module: every ``lr_scheduler_interval``.
        lr_scheduler_interval: ``"epoch"`` (default) or ``"step"``.

    Raises:
        ConfigError: An unknown ``lr_scheduler_interval``.
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: Strategy,
        *,
        lr: float = 1e-3,
        optimizer: Callable[[list[dict]], torch.optim.Optimizer] = torch.optim.Adam,
        lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        lr_scheduler_interval: str = "epoch",
    ):
        super().__init__()
        if lr_scheduler_interval not in INTERVALS:
            raise ConfigError(
                f"lr_scheduler_interval: unknown value {lr_scheduler_interval!r}; "
                f"expected one of {INTERVALS}"
            )
        self.automatic_optimization = False
        self.model = model
        self.strategy = strategy
        self.lr = float(lr)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self._meter = _common.StatsMeter()
        self.modalities = strategy.modalities(model)
        self._val_accuracy = _common.UnimodalAccuracy(model.task, self.modalities)
        self._accuracies: dict[str, float] | None = None

    def forward(self, inputs, drop=None):
        """Run the wrapped model.

        Args:
            inputs: ``{modality: x_m}``.
            drop: ``{modality: bool [B]}`` of dropped samples, if any.

        Returns:
            The :class:`~balgrad.models.ModelOutput`.
        """
        return self.model(inputs, drop=drop)

    # -- set-up ---------------------------------------------------------------------
    def configure_optimizers(self):
        """The optimizer over the strategy's parameter groups (and the scheduler, if any).

        Returns:
            The optimizer, or Lightning's ``{"optimizer": ..., "lr_scheduler": ...}``.
        """
        optimizer = self.optimizer_factory(self.strategy.param_groups(self.model, self.lr))
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    def setup(self, stage: str) -> None:
        """Prepare the strategy for the run (its check interval from ``log_every_n_steps``).

        Args:
            stage: Lightning's stage.
        """
        _common.prepare_strategy(self.strategy, self.trainer.log_every_n_steps)

    # -- the step -------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        """One batch, under manual optimisation: the strategy's backward, then the
        optimizer step (or the strategy's own steps, MLA); nothing is returned.

        Args:
            batch: ``{<modality>: input, "labels": target}``.
            batch_idx: The batch's index.
        """
        inputs, target, drops = _common.unpack_batch(batch, self.modalities)
        optimizer = self.optimizers()
        if _common.owns_optimizer_step(self.strategy):  # MLA: M steps per batch
            return self._owned_step(inputs, target, drops, optimizer)
        optimizer.zero_grad(set_to_none=True)
        output = self.model(inputs, drop=drops)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        # DDP's reducer averages only for a strategy that leaves it the averaging:
        # prepare and finalise it around the strategy's backward, as manual_backward would
        use_reducer = not _common.reduces_own_gradients(self.strategy)
        outputs = [output.logits, *output.unimodal.values()]
        if use_reducer:
            self.trainer.strategy.pre_backward(outputs)
        stats = _common.strategy_backward(self.strategy, self.model, output, target, scaler)
        if use_reducer:
            self.trainer.strategy.post_backward(outputs)
        optimizer.step()
        self._after_step(stats, target)

    def _owned_step(self, inputs, target, drops, optimizer) -> None:
        """A strategy that steps the optimizer itself (``owns_optimizer_step``): each of its
        steps goes through the LightningOptimizer, whose precision plugin unscales and
        updates a GradScaler (so ``scaler_steps=False``); ``global_step`` counts them all."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        stats = self.strategy.train_step(
            self.model, inputs, target, optimizer, scaler=scaler, drop=drops, scaler_steps=False
        )
        self._after_step(stats, target)

    def _after_step(self, stats, target) -> None:
        if self.lr_scheduler_factory is not None and self.lr_scheduler_interval == "step":
            self.lr_schedulers().step()
        self._meter.add(stats)
        interval = self.trainer.log_every_n_steps
        # global_step counts optimizer steps: this lines up with Lightning's own flushes
        # (a strategy with its own steps takes several per batch: counted in batches)
        batches = self.trainer.global_step // self.strategy.steps_per_batch(self.model)
        if interval and batches % interval == 0:
            names, means = self._meter.flush(self.device)
            means = self.trainer.strategy.reduce(means, reduce_op="mean")
            self.log_dict(
                {f"train/{k}": v for k, v in zip(names, means.unbind(0))},
                on_step=True,
                on_epoch=False,
                batch_size=len(target),
            )

    # -- validation: the unimodal accuracies MSLR needs --------------------------------
    def validation_step(self, batch, batch_idx):
        """Accumulate the fused and unimodal accuracies of one batch.

        Args:
            batch: ``{<modality>: input, "labels": target}``.
            batch_idx: The batch's index.
        """
        inputs, target, drops = _common.unpack_batch(batch, self.modalities)
        output = self.model(inputs, drop=drops)
        fused = _common.prediction(self.strategy, self.model, output)  # MLA's fusion
        self._val_accuracy.update_from(output, target, fused)

    def on_validation_epoch_end(self) -> None:
        """Log the validation accuracies (fused and per modality) and keep them for the epoch end."""
        accuracies = self._val_accuracy.compute()  # synchronised across ranks
        if not accuracies:
            return
        # identical on every rank already; sync_dist keeps Lightning's epoch-level contract
        self.log_dict({f"val/{k}": v for k, v in accuracies.items()}, sync_dist=True)
        if not self.trainer.sanity_checking:
            self._accuracies = accuracies

    # -- epoch hooks ----------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        """The strategy's epoch start, and its epoch pass where it needs one (PMR, InfoReg,
        G-Blend).
        """
        max_epochs = self.trainer.max_epochs
        self.strategy.on_epoch_start(
            self.current_epoch, max_epochs if max_epochs and max_epochs > 0 else None
        )
        if _common.needs_epoch_pass(self.strategy):  # PMR's prototypes
            _common.epoch_pass(
                self.strategy,
                self.model,
                self.trainer.train_dataloader,
                self.modalities,
                lambda batch: self.transfer_batch_to_device(batch, self.device, 0),
                self.trainer.precision_plugin.forward_context(),
                optimizer=self.optimizers(),  # G-Blend's copies train with one like it
            )

    def on_train_epoch_end(self) -> None:
        """The strategy's epoch end (MSLR's rates from the validation accuracies), and the
        scheduler's epoch step.
        """
        scheduler = self.lr_schedulers() if self.lr_scheduler_factory is not None else None
        extra = _common.epoch_end(
            self.strategy,
            self.current_epoch,
            self.optimizers().optimizer,
            self._accuracies,
            scheduler,
            how_to_validate="pass val_dataloaders to trainer.fit and keep check_val_every_n_epoch=1",
        )
        self._accuracies = None
        if extra:
            self.log_dict({f"epoch/{k}": float(v) for k, v in extra.items()}, sync_dist=True)
        if scheduler is not None and self.lr_scheduler_interval == "epoch":
            scheduler.step()

    # -- checkpoints: the strategy's state (EMA, MSLR history, AGM running means) -------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Save the strategy's state (``"balgrad_strategy"``) with the checkpoint.

        Args:
            checkpoint: Lightning's checkpoint dict.
        """
        checkpoint["balgrad_strategy"] = self.strategy.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the strategy's state from the checkpoint.

        Args:
            checkpoint: Lightning's checkpoint dict.
        """
        if "balgrad_strategy" in checkpoint:
            self.strategy.load_state_dict(checkpoint["balgrad_strategy"])
