"""Any balgrad strategy inside the Hugging Face ``Trainer`` (``pip install balgrad[hf]``)::

    trainer = BalGradTrainer(model=model, args=TrainingArguments(...),
                             strategy=create_strategy("balgrad"),
                             train_dataset=train, eval_dataset=val, data_collator=collate)
    trainer.train()

``BalGradTrainer`` overrides ``training_step`` (the hook the Trainer's docs give for a
custom step): it runs the model and calls ``strategy.backward(model, output, labels)``
where the Trainer would call ``accelerator.backward(loss)``. The Trainer then clips
(``max_grad_norm``: set 0 to leave the strategy's gradient as it is, as balgrad's own
trainer does), steps the optimizer and the LR scheduler, and logs.

Batches: the data collator must produce a dict with one key per modality of the model
plus ``"labels"`` (``{"audio": ..., "visual": ..., "labels": ...}``: each input a tensor
or a dict of tensors such as a tokenizer's output, ``labels`` class indices [B] or
multi-hot [B, C]; optionally ``"drop_<modality>"``, bool [B]), or ``{"inputs": {...},
"labels": ...}``; ``model(inputs, drop=...)`` must return balgrad's ``ModelOutput``
(``MultimodalModel`` does). The Trainer's column pruning
(``remove_unused_columns``) would drop those columns, since the model's forward takes
one ``inputs`` mapping: it is turned off, with a warning if it was asked for. Evaluation
reports the accuracy of the fused logits and of each modality's own, as fractions as
the Trainer's metrics are (``eval_accuracy``, ``eval_<modality>_accuracy``), unless
``compute_metrics`` is given.

Mixed precision follows ``bf16`` / ``fp16``: forward and strategy step run in the
accelerator's autocast; with fp16 the accelerator's ``GradScaler`` goes to the strategy
as ``scaler=`` and the accelerated optimizer unscales, skips and updates it.

**Several GPUs** (``accelerate launch`` or ``torchrun``): accelerate wraps the model in
``DistributedDataParallel``. A strategy that all-reduces its own gradients (the
default; see :func:`balgrad.integrations._common.reduces_own_gradients`) runs its
forward and backward inside ``accelerator.no_sync(model)``: the DDP forward then does
not prepare the reducer, and each gradient is averaged once, by the strategy through
``strategy.sync``. A strategy with ``reduces_own_gradients = False`` runs outside
``no_sync`` so that DDP's reducer averages the gradients of its ``.backward()``; its
scalars still go through ``strategy.sync``. FSDP and DeepSpeed shard parameters, which
the strategies' flat gradients cannot handle: they are refused.

Statistics are summed where they live and, at every ``logging_steps``, averaged over
the interval and across processes and added to the Trainer's log line (they reach
``trainer.state.log_history`` and every reporting integration). Gradient accumulation
is refused: a strategy combines the gradients of one batch (raise the batch size).
The strategy's epoch hooks run from a callback; a strategy that needs an epoch-start
pass (``needs_epoch_pass``: PMR's class prototypes) gets ``prepare_epoch`` over a fresh
``get_train_dataloader()`` at every epoch start (a run resumed inside an epoch whose pass
is in the checkpoint's strategy state skips it); a strategy that needs the unimodal
validation accuracies (MSLR ``mode="dynamic"``) gets them from one pass over
``eval_dataset`` at the end of each epoch. A strategy that takes its own optimizer steps
(``owns_optimizer_step``: MLA, one per modality) runs ``strategy.train_step`` with the
Trainer's optimizer inside ``training_step`` (not under fp16), and evaluation scores its
test-time fusion (``strategy.fuse``) as ``logits``. Checkpoints hold the strategy's state
(``balgrad_strategy.pt``), restored by ``train(resume_from_checkpoint=...)``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import EvalPrediction, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from balgrad.atomic import write_bytes
from balgrad.errors import ConfigError
from balgrad.integrations import _common
from balgrad.strategies._base import Strategy
from balgrad.tasks import task_loss

__all__ = ["BalGradTrainer"]

#: the strategy's state (step, EMA, MSLR history, AGM running means) in each checkpoint
STRATEGY_STATE = "balgrad_strategy.pt"

log = logging.getLogger("balgrad.integrations.hf")


class BalGradTrainer(Trainer):
    """A ``transformers.Trainer`` whose backward is ``strategy.backward``; see the module
    docstring. Takes the Trainer's arguments plus ``strategy`` (keyword).

    Args:
        *args: ``transformers.Trainer``'s positional arguments (model, args...).
        strategy: The balgrad strategy whose backward trains the model.
        **kwargs: ``transformers.Trainer``'s keyword arguments; ``compute_metrics``
            defaults to the fused and unimodal accuracies.

    Raises:
        ConfigError: ``gradient_accumulation_steps`` is not 1, or the strategy cannot run
            under the Trainer's setup.
    """

    def __init__(self, *args: Any, strategy: Strategy, **kwargs: Any):
        kwargs.setdefault("compute_metrics", self._unimodal_metrics)
        super().__init__(*args, **kwargs)
        if self.args.remove_unused_columns:
            # the forward takes one ``inputs`` mapping: pruning by its signature would
            # strip every modality's column (a bare KeyError in the collator or the step)
            log.warning(
                "BalGradTrainer: remove_unused_columns=True would drop the modality columns "
                "(the model's forward takes one inputs mapping); training with it False"
            )
            self.args.remove_unused_columns = False
        if self.args.gradient_accumulation_steps != 1:
            raise ConfigError(
                "gradient_accumulation_steps: balgrad strategies combine the gradients of "
                f"one batch; got {self.args.gradient_accumulation_steps}, use 1 and a larger "
                "per_device_train_batch_size"
            )
        kind = str(self.accelerator.distributed_type)
        if "FSDP" in kind or "DEEPSPEED" in kind:
            raise ConfigError(
                f"distributed type {kind}: balgrad strategies need whole parameters; "
                "use plain data parallelism (DDP)"
            )
        if self.args.label_names is None:
            self.label_names = ["labels"]
        self.strategy = strategy
        self.modalities = strategy.modalities(self._inner(self.model))
        self._meter = _common.StatsMeter()
        self.add_callback(_StrategyEpochHooks(self))

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """``Trainer.train``; resuming also restores the strategy's state."""
        folder = resume_from_checkpoint
        if folder is True:
            folder = get_last_checkpoint(self.args.output_dir)
        if isinstance(folder, str | os.PathLike):
            path = os.path.join(folder, STRATEGY_STATE)
            if os.path.isfile(path):
                self.strategy.load_state_dict(torch.load(path, weights_only=True))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _inner(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model)

    # -- optimizer: the strategy's parameter groups ----------------------------------------
    def create_optimizer(self, model=None):
        """The Trainer's optimizer over ``strategy.param_groups`` (MSLR gives each modality
        its own rate), each group split into decayed and not-decayed parameters."""
        if self.optimizer is not None:
            return self.optimizer
        inner = self._inner(self.model if model is None else model)
        decay = set(self.get_decay_parameter_names(inner))
        names = {id(p): n for n, p in inner.named_parameters()}
        groups = []
        for group in self.strategy.param_groups(inner, self.args.learning_rate):
            for wd, decayed in ((self.args.weight_decay, True), (0.0, False)):
                params = [p for p in group["params"] if (names[id(p)] in decay) == decayed]
                if params:
                    groups.append({**group, "params": params, "weight_decay": wd})
        cls_and_kwargs = getattr(self, "optimizer_cls_and_kwargs", None)
        cls, kwargs = cls_and_kwargs or self.get_optimizer_cls_and_kwargs(self.args, inner)
        if "params" in kwargs or "model" in kwargs:
            raise ConfigError(
                f"optim={self.args.optim}: this optimizer builds its own parameter groups, "
                "which would drop the strategy's; choose another optim"
            )
        self.optimizer = cls(groups, **kwargs)
        return self.optimizer

    # -- the step -------------------------------------------------------------------
    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """One batch: the strategy's backward (or its own steps, MLA) in place of
        ``loss.backward()``.

        Args:
            model: The (wrapped) model.
            inputs: ``{<modality>: input, "labels": target}``.
            num_items_in_batch: Unused (the strategy averages over the batch itself).

        Returns:
            The task loss, detached.
        """
        model.train()
        inputs = self._prepare_inputs(inputs)
        named, target, drops = _common.unpack_batch(inputs, self.modalities)
        own = _common.reduces_own_gradients(self.strategy)
        keep_reducer_out = self.accelerator.no_sync(model) if own else contextlib.nullcontext()
        with keep_reducer_out, self.accelerator.autocast():
            if _common.owns_optimizer_step(self.strategy):  # MLA: its own M steps
                stats, output = self._owned_step(model, named, target, drops), None
            else:
                output = model(named, drop=drops)
                stats = _common.strategy_backward(
                    self.strategy, self._inner(model), output, target, self.accelerator.scaler
                )
        self._meter.add(stats)
        loss = stats.get("loss_task")
        if loss is None:
            with torch.no_grad():
                loss = task_loss(output.logits.float(), target, self._inner(model).task)
        return torch.as_tensor(loss, dtype=torch.float32).detach().to(self.args.device)

    def _owned_step(self, model, named, target, drops) -> dict[str, Any]:
        """``strategy.train_step`` with the Trainer's optimizer: the strategy's steps (MLA:
        one per modality) happen here and leave no gradient, so the Trainer's own step
        after this changes nothing (its clipping sees no gradient either). fp16 is refused:
        that empty step would trip the GradScaler ("no inf checks were recorded")."""
        if self.accelerator.scaler is not None:
            raise ConfigError(
                f"{self.strategy.name} takes its own optimizer steps, which the Trainer's "
                "fp16 GradScaler cannot follow; train with bf16=True or in fp32"
            )
        return self.strategy.train_step(
            self._inner(model),
            named,
            target,
            self.optimizer,
            drop=drops,
            forward=lambda x, drop=None: model(x, drop=drop),
        )

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds the strategy's statistics, averaged since the last line, to training logs."""
        if "loss" in logs and self._meter:
            names, means = self._meter.flush(self.args.device)
            means = self.accelerator.reduce(means, reduction="mean")
            logs = {**logs, **dict(zip(names, means.tolist()))}
        super().log(logs, *args, **kwargs)

    # -- evaluation -----------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The task loss and the fused and unimodal logits (used by evaluation; training
        uses the strategy)."""
        named, target, drops = _common.unpack_batch(inputs, self.modalities)
        out = model(named, drop=drops)
        loss = task_loss(out.logits, target, self._inner(model).task)
        fused = _common.prediction(self.strategy, self._inner(model), out)  # MLA's fusion
        logits = {"logits": fused, **out.unimodal}
        return (loss, logits) if return_outputs else loss

    def _unimodal_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        meter = _common.UnimodalAccuracy(self._inner(self.model).task, self.modalities)
        logits = [torch.as_tensor(z) for z in prediction.predictions]
        meter.update(logits, torch.as_tensor(prediction.label_ids))
        return meter.compute(scale=1.0)

    @torch.no_grad()
    def unimodal_accuracies(self) -> dict[str, float]:
        """Accuracy of the fused logits and of each modality's own on ``eval_dataset``
        (one pass, as fractions, over all processes); empty without an ``eval_dataset``.

        Returns:
            ``{"fused": acc, <modality>: acc, ...}``.
        """
        if self.eval_dataset is None:
            return {}
        model = self._inner(self.model)
        was_training = model.training
        model.eval()
        meter = _common.UnimodalAccuracy(model.task, self.modalities)
        for inputs in self.get_eval_dataloader():
            named, target, drops = _common.unpack_batch(
                self._prepare_inputs(inputs), self.modalities
            )
            with self.accelerator.autocast():
                out = model(named, drop=drops)
                meter.update_from(out, target, _common.prediction(self.strategy, model, out))
        model.train(was_training)
        return meter.compute(scale=1.0)


class _StrategyEpochHooks(TrainerCallback):
    """The strategy's hooks at the Trainer's train/epoch events."""

    def __init__(self, trainer: BalGradTrainer):
        self.trainer = trainer
        self.epoch = 0

    def on_train_begin(self, args, state, control, **kwargs):
        _common.prepare_strategy(self.trainer.strategy, args.logging_steps)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                blob = io.BytesIO()  # in memory first: a full disk is then an OSError
                torch.save(self.trainer.strategy.state_dict(), blob)
                write_bytes(os.path.join(folder, STRATEGY_STATE), blob.getvalue())

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch = int(state.epoch or 0)
        trainer = self.trainer
        trainer.strategy.on_epoch_start(self.epoch, state.num_train_epochs or None)
        if _common.needs_epoch_pass(trainer.strategy):  # PMR's prototypes
            _common.epoch_pass(
                trainer.strategy,
                trainer._inner(trainer.model),
                trainer.get_train_dataloader(),
                trainer.modalities,
                trainer._prepare_inputs,
                trainer.accelerator.autocast(),
                optimizer=trainer.optimizer,  # G-Blend's copies train with one like it
            )

    def on_epoch_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        trainer = self.trainer
        needs = trainer.strategy.needs_unimodal_validation
        accuracies = trainer.unimodal_accuracies() if needs else {}
        extra = _common.epoch_end(
            trainer.strategy,
            self.epoch,
            optimizer,
            accuracies,
            lr_scheduler,
            how_to_validate="pass eval_dataset to BalGradTrainer",
        )
        logs = {f"eval_{k}": v for k, v in accuracies.items()}
        logs.update({k: float(v) for k, v in extra.items()})
        if logs:
            trainer.log(logs)
