"""The strategy contract: an object that replaces ``loss.backward()``.

    output = model({"audio": x_a, "visual": x_v})   # a ModelOutput
    stats = strategy.backward(model, output, y)     # writes .grad, returns diagnostics
    optimizer.step()

``model`` is anything with the :class:`BalancedModel` shape (balgrad's
``MultimodalModel`` has it): its named ``modalities``, its
``parameter_groups()`` (one group per modality, ``"head"`` and optionally
``"unimodal_heads"``), ``classify(h, detach_head)`` and ``task``. The contract is
checked, not assumed: a model whose groups are not exactly its modalities plus those
keys, or that leaves a trainable parameter in no group or in two, is refused with a
message naming the groups and the modalities (a strategy that silently found no
"image" group would fall back to joint training).

Diagnostics are returned as a flat ``dict[str, torch.Tensor]`` of 0-d
detached tensors on the gradients' device (``float(v)`` reads one; reading them is the
only host synchronisation, so read them in bulk, not every step), and handed to every
observer registered with :meth:`Strategy.add_observer` (loggers, callbacks):
strategies expose statistics, they never write files. Per-modality statistics are named
``<statistic>_<modality>`` (``loss_audio``, ``weight_visual``), by
:func:`balgrad.names.stat_name`; a strategy declares the statistics it returns in
``statistics`` (:func:`balgrad.names.statistics`), and the modality names are checked
against every declared name (``task`` is refused: its ``loss_task`` would be the task loss).

Mixed precision: ``backward()`` may be called inside or outside a ``torch.autocast``
region (joint, MSLR and BalGrad run their own arithmetic with autocast off, losses in
float32); with
``scaler=torch.amp.GradScaler(...)`` every loss the strategy differentiates is scaled
by it and non-finite gradients are left to the scaler (``scaler.step`` skips the step).

Several optimizer steps per batch (``owns_optimizer_step``, MLA: one per modality) and
a prediction other than the fused logits at evaluation (``test_time_fusion``, MLA's
entropy-weighted unimodal logits) are two capabilities a strategy declares:

    stats = strategy.train_step(model, inputs, y, optimizer)   # zero, forward, step(s)
    z = strategy.fuse(model, model(inputs))                    # the prediction to score

``train_step`` works for every strategy (forward, ``backward``, one ``optimizer.step()``)
and is the only way to train one that owns its optimizer steps: its ``backward()``
refuses to run alone. Call it where you would run the forward (inside your autocast).

Validity checks are lazy: every ``check_every`` steps (default 1) ``backward()`` makes
one host sync to verify that every loss, every gradient (without a scaler) and every
label since the last check was valid, and raises ``NonFiniteLossError`` / ``DataError``
naming the quantity and the step where it first went bad.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Annotated, Any, Protocol, runtime_checkable

import torch
from pydantic import Field
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from balgrad._grad import GradientSync, ParamLayout, default_sync, full_precision
from balgrad.errors import ConfigError, DataError
from balgrad.names import Schema, check_modality_names, statistics
from balgrad.strategies._checks import PendingChecks
from balgrad.strategies._context import StepContext
from balgrad.tasks import (
    TASKS,
    check_finite,
    check_target_shape,
    screen_target,
    task_loss,
    true_class_prob,
)

Observer = Callable[[int, dict[str, torch.Tensor]], None]


#: the statistics :meth:`Strategy.unimodal_monitor` builds, with the task loss every
#: built-in strategy returns: the report reads the per-modality losses through it
MONITOR = statistics("the unimodal monitor", ["loss_task"], ["loss", "score"])

#: the parameter groups besides one per modality: θ_T, and the separate unimodal heads
HEAD_GROUPS = ("head",)
OPTIONAL_GROUPS = ("unimodal_heads",)


@runtime_checkable
class BalancedModel(Protocol):
    """Everything a strategy may use of a model. Only the first four are required.

    - ``modalities``: the modality names, in order (at least two).
    - ``task``: ``"single_label"`` or ``"multi_label"``.
    - ``parameter_groups()``: ``{modality: θ_m, ..., "head": θ_T}`` and optionally
      ``"unimodal_heads"``: every trainable parameter in exactly one group.
    - ``classify(h, detach_head=False)``: f_T(F(h)) from the embeddings ``{m: h_m}``
      (AGM's blanked passes, BalGrad's head diagnostic).

    Optional, for the options that need them:

    - ``blank_embeddings(inputs) -> {m: h_m of a blank input, [1, d]}``: AGM
      ``zero="input"``.
    - ``readout() -> balgrad.models.Readout | None``: the head's output layer and each
      modality's columns of it, for a head additive over modalities: OGM-GE
      ``fusion_bias="half"``.

    The model's forward returns a :class:`~balgrad.models.ModelOutput`: fused logits and,
    keyed by modality, the unimodal logits z_m and embeddings h_m.
    """

    task: str
    modalities: tuple[str, ...]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every trainable parameter, grouped.

        Returns:
            ``{modality: θ_m, ..., "head": θ_T}`` (modalities in order) and optionally
            ``"unimodal_heads"``; each trainable parameter in exactly one group.
        """

    def classify(self, h: Mapping[str, torch.Tensor], detach_head: bool = False) -> torch.Tensor:
        """The head on given embeddings: f_T(F(h)).

        Args:
            h: The embeddings ``{modality: h_m}``, each ``[batch, d_m]``.
            detach_head: Run the head without gradient into its own parameters (the
                gradient still reaches ``h``).

        Returns:
            The fused logits, ``[batch, classes]``.
        """


def unwrap(model: Any) -> tuple[Any, bool]:
    """(the model itself, whether it came wrapped in DistributedDataParallel).

    ``nn.DataParallel`` is unwrapped too: its replicas' gradients flow back to the
    wrapped module's own parameters, so a strategy works on ``model.module`` as it is
    (the official OGM-GE code wraps its model so).

    Args:
        model: The model, DDP- or DataParallel-wrapped or not.

    Returns:
        The module and whether it was DDP-wrapped.
    """
    if isinstance(model, DistributedDataParallel):
        return model.module, True
    if isinstance(model, DataParallel):
        return model.module, False
    return model, False


def model_modalities(model: Any) -> tuple[str, ...]:
    """The model's modality names, checked: a tuple of at least two distinct strings.

    Args:
        model: The model.

    Returns:
        Its modality names.

    Raises:
        ConfigError: It has none, or they are not distinct strings, or fewer than two.
    """
    names = getattr(model, "modalities", None)
    if names is None:
        raise ConfigError(
            f"model: {type(model).__name__} has no 'modalities' attribute; a balanced model "
            "names its modalities in order, e.g. model.modalities = ('audio', 'visual') "
            "(see balgrad.strategies.BalancedModel)"
        )
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"model.modalities: expected a sequence of names, got {names!r}")
    return check_modality_names(names, "model.modalities")  # cached: cheap at every step


def check_contract(model: Any, groups: Mapping[str, Sequence[nn.Parameter]]) -> None:
    """Raise ConfigError unless ``groups`` are exactly the model's modalities plus
    ``"head"`` (and optionally ``"unimodal_heads"``), no parameter is in two groups and
    every trainable parameter of the model is in one.

    Args:
        model: The model.
        groups: What its ``parameter_groups()`` returned.

    Raises:
        ConfigError: A group is missing or unknown, or a parameter is in two or none.
    """
    modalities = model_modalities(model)
    task = getattr(model, "task", None)
    if task not in TASKS:
        raise ConfigError(f"model.task: unknown task {task!r}; expected one of {TASKS}")
    expected = set(modalities) | set(HEAD_GROUPS)
    missing = [g for g in (*modalities, *HEAD_GROUPS) if g not in groups]
    unknown = [g for g in groups if g not in expected and g not in OPTIONAL_GROUPS]
    if missing or unknown:
        problems = [f"missing {missing}"] * bool(missing) + [f"unknown {unknown}"] * bool(unknown)
        raise ConfigError(
            f"parameter_groups(): got groups {list(groups)} for a model with modalities "
            f"{list(modalities)} ({'; '.join(problems)}); expected exactly one group per "
            f"modality plus {list(HEAD_GROUPS)} (and optionally {list(OPTIONAL_GROUPS)})"
        )
    owner: dict[int, str] = {}
    for name, params in groups.items():
        for p in params:
            if id(p) in owner and owner[id(p)] != name:
                raise ConfigError(
                    f"parameter_groups(): a parameter of shape {list(p.shape)} is in two "
                    f"groups, {owner[id(p)]!r} and {name!r}"
                )
            owner[id(p)] = name
    if isinstance(model, nn.Module):
        loose = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
        if loose:
            shown = ", ".join(loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
            raise ConfigError(
                f"parameter_groups(): trainable parameter(s) {shown} are in no group, so no "
                f"strategy would ever train them; add them to a group of "
                f"{[*modalities, *HEAD_GROUPS]} or set requires_grad=False"
            )


class Strategy:
    """Base class. Subclasses implement :meth:`compute` and may override the hooks.

    ``compute(model, output, target, ctx)`` gets the step's
    :class:`~balgrad.strategies._context.StepContext` (scaler, sync, layout, step index,
    checks, and the helpers over them); nothing step-scoped is stored on the strategy.

    Capabilities are declared as class attributes, never inferred from the code (the
    trainer, the integrations and a run's pre-flight read them as they are):
    ``supports_ddp``, ``reduces_own_gradients``, ``supports_grad_scaler``,
    ``full_precision_compute``, ``needs_unimodal_validation``, ``needs_epoch_pass``,
    ``max_modalities`` and ``statistics`` (the step's statistics, checked against what
    ``backward()`` returns; see each below).

    Attributes a training loop may set:
        check_every: every this many steps ``backward()`` verifies the pending validity
            checks in one host sync (1: every step; the trainer uses its log interval).
        sync: the :class:`~balgrad._grad.GradientSync` gradients and statistics are
            reduced through. Unset (``None``), it is resolved at every ``backward()``:
            an all-reduce over the default process group once ``torch.distributed`` is
            initialised with several ranks, the identity otherwise; so a strategy made
            before ``init_process_group`` still all-reduces.
    """

    name = "strategy"
    #: the whole update comes from ONE backward pass through the model, so the model may
    #: be wrapped in DistributedDataParallel (whose reducer then averages the gradients)
    supports_ddp = False
    #: run :meth:`compute` with autocast off, so that it works the same inside or outside
    #: an autocast region (a subclass then recomputes any module pass at a precision of
    #: its choice, e.g. casting the embeddings to the head's dtype)
    full_precision_compute = False
    #: ``on_epoch_end`` needs the unimodal validation accuracies (MSLR's dynamic mode);
    #: a training loop without its own validation pass (the Hugging Face Trainer
    #: integration) reads it to run one
    needs_unimodal_validation = False
    #: the statistics ``backward()`` returns (and ``on_epoch_end``'s), declared:
    #: ``balgrad.names.statistics(owner, global_=[...], per_modality=[...])``; None: not
    #: declared (a plug-in's names are then not checked against the modality names)
    statistics: Schema | None = None
    #: the most modalities the strategy supports (None: any number); a run checks it for
    #: every method before the first one trains
    max_modalities: int | None = None
    #: the method needs :meth:`prepare_epoch` (a pass over a sample of the training data)
    #: at the start of every epoch, after :meth:`on_epoch_start` (PMR's class prototypes);
    #: ``backward()`` refuses to run an epoch that was not prepared
    needs_epoch_pass = False
    #: the method takes its own optimizer steps, several per batch (MLA: one per modality,
    #: through the shared head): a loop calls :meth:`train_step` instead of ``backward()``
    #: and ``optimizer.step()``; ``backward()`` alone is refused
    owns_optimizer_step = False
    #: the method's prediction at evaluation is :meth:`fuse` of the model's output, not its
    #: fused logits (MLA's entropy-weighted unimodal logits): evaluation scores that
    test_time_fusion = False
    #: ``backward()`` averages its gradients over ranks itself, through :attr:`sync`, so a
    #: framework integration keeps DDP's reducer out of the step; False: the strategy calls
    #: ``.backward()`` once and leaves the average to DDP's reducer (only its scalar
    #: statistics go through ``sync``)
    reduces_own_gradients = True
    #: ``backward()`` takes ``scaler=`` and multiplies every loss it differentiates by it,
    #: so the strategy can train in fp16 (a subclass overriding ``backward`` without
    #: ``scaler=`` sets it False)
    supports_grad_scaler = True
    #: the fraction of the training set the method holds out of training (G-Blend's
    #: held-out set V, on which it measures generalisation): a training loop that owns
    #: the data splits it off once, deterministically by seed, never trains on it, and
    #: hands it to :meth:`prepare_epoch` as ``held_out``; 0: none
    held_out_fraction = 0.0
    #: :meth:`prepare_epoch` trains copies of the model (G-Blend's loss curves): a loop
    #: passes ``make_optimizer`` (a list of parameters -> an optimizer of the run's kind
    #: and settings) for them
    trains_copies = False
    check_every = 1

    def __init__(self) -> None:
        self._sync: GradientSync | None = None
        self.step = 0
        self.epoch = 0
        self.num_epochs: int | None = None
        self._observers: list[Observer] = []
        self._checks = PendingChecks()
        self._layout_cache: tuple[tuple, ParamLayout] | None = None
        self._declared_keys: tuple[str, ...] | None = None  # the last keys found declared
        self.prepared_epoch: int | None = None  # the epoch prepare_epoch last ran for
        self._stepper: tuple[Any, Any] | None = None  # (optimizer, scaler) in train_step

    @property
    def sync(self) -> GradientSync:
        """The :class:`~balgrad._grad.GradientSync` the strategy all-reduces through (one for
        the default process group unless a loop set its own).
        """
        return self._sync if self._sync is not None else default_sync()

    @sync.setter
    def sync(self, value: GradientSync | None) -> None:
        self._sync = value

    # -- the step ---------------------------------------------------------------------
    def backward(
        self, model: BalancedModel, output: Any, target: torch.Tensor, *, scaler=None
    ) -> dict[str, torch.Tensor]:
        """Compute this strategy's gradient for one batch and add it to ``.grad``.

        Args:
            model: The model (a :class:`BalancedModel`, possibly DDP-wrapped).
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels: class indices ``[batch]`` or multi-hot ``[batch, classes]``.
            scaler: A ``torch.amp.GradScaler`` under fp16 mixed precision, else None.

        Returns:
            The step's statistics (losses, weights, norms), as tensors.

        Raises:
            ConfigError: The strategy owns its optimizer steps (use :meth:`train_step`), or
                the model is DDP-wrapped and the strategy does not support it.
        """
        if self.owns_optimizer_step and self._stepper is None:
            raise ConfigError(
                f"{self.name} takes {self.steps_per_batch(model)} optimizer steps per batch "
                "(its own, between its backward passes), so backward() + optimizer.step() "
                "would train something else: call strategy.train_step(model, inputs, target, "
                "optimizer) instead (balgrad's Trainer, Lightning module and HF Trainer do)"
            )
        module, ddp = unwrap(model)
        if ddp and not self.supports_ddp:
            raise ConfigError(
                f"strategy {self.name!r} takes several separate gradients, which "
                "DistributedDataParallel's reducer does not see: pass the unwrapped model "
                "(the strategy all-reduces its gradients itself)"
            )
        layout = self.layout(module)  # checks the model's contract (once per parameter set)
        if output.logits.shape[0] == 0:
            raise DataError("batch: the batch is empty (0 samples); nothing to train on")
        outputs = tuple(getattr(output, "unimodal", {}))
        if outputs != self.modalities(module):
            raise ConfigError(
                f"output: the model's modalities are {list(self.modalities(module))} but its "
                f"output has unimodal logits for {list(outputs)}"
            )
        check_target_shape(output.logits, target, module.task)
        target, ok, bad, message = screen_target(output.logits, target, module.task)
        self._checks.target(self.step, ok, bad, message)
        self.check_prepared()
        ctx = StepContext(
            sync=self.sync,
            layout=layout,
            step=self.step,
            checks=self._checks,
            scaler=scaler if scaler is not None and scaler.is_enabled() else None,
            ddp=ddp,
        )
        device = output.logits.device
        with full_precision(device) if self.full_precision_compute else nullcontext():
            stats = self.compute(module, output, target, ctx)
        if not ddp and isinstance(module, nn.Module):
            # DDP broadcasts rank 0's buffers (BatchNorm statistics) at the start of
            # every forward. Broadcasting them here, after the forward that changed
            # them, gives every rank the same buffers at every next forward, and also
            # at evaluation after the last step.
            ctx.sync.broadcast_buffers(module)
        stats = {k: _as_stat(v, device) for k, v in stats.items()}
        self._check_declared(tuple(stats), outputs)
        if self.step % max(1, int(self.check_every)) == 0:
            self._checks.verify()
        for observer in self._observers:
            observer(self.step, stats)
        self.step += 1
        return stats

    def compute(
        self, model: BalancedModel, output: Any, target: torch.Tensor, ctx: StepContext
    ) -> dict[str, torch.Tensor | float]:
        """One step's gradient, added to ``.grad``; returns the step's statistics. Every
        step-scoped thing (scaler, sync, layout, step index, checks) comes in ``ctx``.

        Args:
            model: The unwrapped model.
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels.
            ctx: The step's :class:`~balgrad.strategies._context.StepContext`.

        Returns:
            The step's statistics.
        """
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        compute = cls.__dict__.get("compute")
        if compute is not None and _takes_no_context(compute):
            raise TypeError(
                f"{cls.__qualname__}.compute(self, model, output, target) is the old "
                "signature: compute now takes the step's context, "
                "compute(self, model, output, target, ctx), and the step helpers moved "
                "onto it (self.scaled(...) -> ctx.scaled(...), self.sync -> ctx.sync, "
                "self.layout(model) -> ctx.layout, self.step -> ctx.step; see "
                "balgrad.strategies._context.StepContext)"
            )

    def _check_declared(self, keys: tuple[str, ...], modalities: tuple[str, ...]) -> None:
        """A strategy that declares its statistics (its own ``statistics`` or the one it
        inherits) returns only those (checked when the keys change, not every step): the
        modality names were checked against them. A subclass that returns more declares
        its own."""
        if self.statistics is None or keys == self._declared_keys:
            return
        if stray := sorted(set(keys) - set(self.statistics.names(modalities))):
            raise ConfigError(
                f"strategy {self.name!r} returned statistics {stray} that its `statistics` "
                f"({self.statistics.owner}) does not declare for the modalities "
                f"{list(modalities)}; declare them (balgrad.names.statistics)"
            )
        self._declared_keys = keys

    def verify(self) -> None:
        """Run the pending validity checks now (one host sync), e.g. at the end of an epoch."""
        self._checks.verify()

    # -- the whole step (owns_optimizer_step) and the prediction (test_time_fusion) -------
    def train_step(
        self,
        model: BalancedModel,
        inputs: Any,
        target: torch.Tensor,
        optimizer: Any,
        *,
        scaler=None,
        drop: Mapping[str, torch.Tensor] | None = None,
        forward: Callable[..., Any] | None = None,
        scaler_steps: bool = True,
    ) -> dict[str, torch.Tensor]:
        """One batch of training, optimizer step(s) included: zero the gradients, run the
        model on ``inputs`` (with the ``drop`` masks, if any), :meth:`backward`, and the
        optimizer step; a strategy with ``owns_optimizer_step`` takes its own steps inside
        (MLA: one per modality) and leaves the gradients at None. Returns the statistics.

        ``scaler``: a mixed-precision GradScaler; each step is then ``scaler.step`` and
        ``scaler.update``, unless ``scaler_steps=False`` (an optimizer whose ``step()`` does
        that itself: Lightning's). ``forward``: what runs the model (default ``model``;
        e.g. the DDP-wrapped module whose unwrapped ``model`` the strategy reads).

        Args:
            model: The model (possibly DDP-wrapped).
            inputs: The batch's inputs, as ``model`` takes them.
            target: The labels.
            optimizer: The training optimizer.
            scaler: A ``torch.amp.GradScaler`` under fp16, else None.
            drop: Per-modality boolean masks ``[batch]`` of samples whose modality is
                dropped (the impairment protocol), passed to the model.
            forward: Calls the model instead of ``model(inputs, drop=drop)``.
            scaler_steps: Whether this call steps the scaler (False when the loop does).

        Returns:
            The step's statistics.
        """
        optimizer.zero_grad(set_to_none=True)
        run = model if forward is None else forward
        output = run(inputs, drop=drop) if drop else run(inputs)
        self._stepper = (optimizer, scaler if scaler_steps else None)
        try:
            stats = self.backward(model, output, target, scaler=scaler)
            if not self.owns_optimizer_step:
                self.optimizer_step()
            optimizer.zero_grad(set_to_none=True)  # no gradient outlives the batch
        finally:
            self._stepper = None
        return stats

    def optimizer_step(self, set_to_none: bool = True) -> None:
        """Inside :meth:`train_step`: step its optimizer (through its scaler), then zero the
        gradients (to None by default: the next step then moves only what its own
        gradient reaches; ``False``: to zero tensors, as torch < 2.0's ``zero_grad()``).

        Args:
            set_to_none: Zero the gradients to None (default) rather than to zero tensors.

        Raises:
            ConfigError: Called outside :meth:`train_step`.
        """
        if self._stepper is None:
            raise ConfigError(f"{self.name}: optimizer_step() runs only inside train_step()")
        optimizer, scaler = self._stepper
        if scaler is not None and scaler.is_enabled():
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=set_to_none)

    def steps_per_batch(self, model: BalancedModel) -> int:
        """How many optimizer steps :meth:`train_step` takes per batch (1 unless the
        strategy owns its steps).

        Args:
            model: The model.

        Returns:
            The number of optimizer steps per batch.
        """
        return 1

    def fuse(self, model: BalancedModel, output: Any) -> torch.Tensor:
        """The prediction evaluation scores for ``output`` (a batch's ModelOutput): its
        fused logits, unless the strategy has ``test_time_fusion`` (MLA).

        Args:
            model: The model.
            output: The batch's :class:`~balgrad.models.ModelOutput`.

        Returns:
            The logits evaluation scores.
        """
        return output.logits

    # -- hooks for the training loop ----------------------------------------------------
    def param_groups(self, model: BalancedModel, lr: float) -> list[dict]:
        """Optimizer parameter groups (MSLR gives each modality its own rate).

        Args:
            model: The model.
            lr: The base learning rate.

        Returns:
            ``torch.optim`` parameter groups, one per non-empty layout group.
        """
        return [
            {"params": ps, "lr": lr, "name": name}
            for name, ps in self.layout(model).groups.items()
            if ps
        ]

    def on_epoch_start(self, epoch: int, num_epochs: int | None = None) -> None:
        """Record the epoch about to start; call it before the epoch's first step.

        A modulation window (OGM-GE, AGM) and a schedule over the run (``num_epochs``) read it.

        Args:
            epoch: The epoch (0-based).
            num_epochs: The run's length, where the strategy schedules over it.
        """
        self.epoch = epoch
        self.num_epochs = num_epochs

    def on_epoch_end(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        unimodal_scores: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """Per-epoch update; returns diagnostics (e.g. MSLR's rates).

        Args:
            epoch: The epoch that ended (0-based).
            optimizer: The training optimizer (MSLR sets its groups' rates).
            unimodal_scores: Each modality's validation score this epoch, where the loop has
                them (MSLR needs them).

        Returns:
            Diagnostics, by name.
        """
        return {}

    # -- the epoch-start pass (needs_epoch_pass) ---------------------------------------
    def needs_preparation(self) -> bool:
        """Whether a training loop must call :meth:`prepare_epoch` before the next step:
        the method needs the pass and the current epoch has none yet (a run resumed in
        the middle of an epoch whose pass is in the loaded state needs none).

        Returns:
            True when :meth:`prepare_epoch` is due.
        """
        return self.needs_epoch_pass and self.prepared_epoch != self.epoch

    def prepare_epoch(
        self,
        model: BalancedModel,
        batches: Any,
        *,
        held_out: Any = None,
        make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The epoch-start pass: call it after :meth:`on_epoch_start`, before the epoch's
        first step, with ``batches`` an iterable of ``(inputs, target)`` already on the
        model's device (a list, or a generator over a training loader; the strategy takes
        what it needs of it, e.g. PMR the first tenth). The model runs in eval mode
        without gradients and is put back in the mode it was in. Returns diagnostics.

        A strategy with :attr:`held_out_fraction` > 0 takes the held-out part of the
        training data as ``held_out`` (batches like ``batches``), one with
        :attr:`trains_copies` the optimizer factory ``make_optimizer``; the others ignore
        both (G-Blend overrides this method).

        Args:
            model: The model.
            batches: Training batches, ``(inputs, target)`` on the model's device.
            held_out: Held-out batches, for a method that measures on them (G-Blend).
            make_optimizer: Builds an optimizer for a list of parameters (G-Blend's probe
                training), where the method needs one.

        Returns:
            The pass's diagnostics.
        """
        module = unwrap(model)[0]
        stats: dict[str, torch.Tensor] = {}
        if self.needs_epoch_pass:
            self.layout(module)
            was_training = getattr(module, "training", None)
            if isinstance(module, nn.Module):
                module.eval()
            try:
                with torch.no_grad():
                    stats = self.epoch_pass(module, batches)
            finally:
                if isinstance(module, nn.Module):
                    module.train(bool(was_training))
        self.prepared_epoch = self.epoch
        return stats

    def epoch_pass(self, model: BalancedModel, batches: Any) -> dict[str, torch.Tensor]:
        """What :meth:`prepare_epoch` computes (a strategy with ``needs_epoch_pass``).

        Args:
            model: The model, in eval mode, without gradients.
            batches: An iterable of ``(inputs, target)`` on the model's device.

        Returns:
            The pass's diagnostics.
        """
        raise NotImplementedError

    def check_prepared(self) -> None:
        """Refuse a step of an epoch whose pass never ran: the method would silently train
        as joint training (or on last epoch's state)."""
        if self.needs_preparation():
            raise ConfigError(
                f"{self.name} needs strategy.prepare_epoch(model, batches) at the start of "
                f"every epoch, after strategy.on_epoch_start(epoch) (epoch {self.epoch} has "
                "none); batches: (inputs, target) pairs of the training data on the model's "
                "device. balgrad's Trainer, Lightning module and HF Trainer call it"
            )

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(step, stats)`` after every step (the trainer's metrics log).

        Args:
            observer: Takes the step index and the step's statistics.
        """
        self._observers.append(observer)

    # -- checkpointing --------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a checkpoint saves of the strategy: its step and epoch, and each method's own
        running state (running scores, rates, the last epoch pass).

        Returns:
            A dict of ints, floats and tensors.
        """
        state = {"step": self.step, "epoch": self.epoch}
        if self.needs_epoch_pass:  # -1: none yet (a checkpoint holds ints and tensors)
            state["prepared_epoch"] = -1 if self.prepared_epoch is None else self.prepared_epoch
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (a resumed run continues the same schedule).

        Args:
            state: A dict :meth:`state_dict` returned.
        """
        self.step = int(state.get("step", 0))
        self.epoch = int(state.get("epoch", 0))
        if self.needs_epoch_pass:
            prepared = int(state.get("prepared_epoch", -1))
            self.prepared_epoch = None if prepared < 0 else prepared

    # -- shared pieces ----------------------------------------------------------------
    def layout(self, model: BalancedModel) -> ParamLayout:
        """The model's trainable parameter groups, checked against the contract
        (:func:`check_contract`) and cached until its parameter set (or a parameter's
        ``requires_grad``) changes.

        Args:
            model: The model (possibly DDP-wrapped).

        Returns:
            The parameter layout.

        Raises:
            ConfigError: The groups break the contract.
        """
        model = unwrap(model)[0]
        if not isinstance(model, nn.Module):
            groups = model.parameter_groups()
            check_contract(model, groups)
            return ParamLayout.of(groups)
        key = (id(model), *((id(p), p.requires_grad) for p in model.parameters()))
        if self._layout_cache is None or self._layout_cache[0] != key:
            groups = model.parameter_groups()
            check_contract(model, groups)
            self._layout_cache = (key, ParamLayout.of(groups))
        return self._layout_cache[1]

    @staticmethod
    def modalities(model: BalancedModel) -> tuple[str, ...]:
        """The model's modality names, in order.

        Args:
            model: The model (possibly wrapped).

        Returns:
            The modality names.
        """
        return model_modalities(unwrap(model)[0])

    def modality_params(self, model: BalancedModel) -> list[list[nn.Parameter]]:
        """θ_m for each modality, in the model's order.

        Args:
            model: The model.

        Returns:
            One list of parameters per modality.
        """
        groups = self.layout(model).groups
        return [groups[m] for m in self.modalities(model)]

    def unimodal_monitor(
        self, model: BalancedModel, output: Any, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """L_m and mean true-class probabilities per modality, without gradient (loss
        curves).

        Args:
            model: The model.
            output: The batch's :class:`~balgrad.models.ModelOutput`.
            target: The labels.

        Returns:
            ``{key: value}`` of per-modality losses and scores.
        """
        z = output.unimodal
        with torch.no_grad():
            losses = {MONITOR.key("loss", m): task_loss(z[m], target, model.task) for m in z}
            scores = {
                MONITOR.key("score", m): true_class_prob(z[m], target, model.task).mean() for m in z
            }
            return {**losses, **scores}


class EpochBatches:
    """The ``batches`` a training loop hands to :meth:`Strategy.prepare_epoch`: a loader
    seen through ``convert`` (a batch -> ``(inputs, target)`` on the model's device),
    with the loader's length, so that a strategy can take a fraction of it; batches are
    read and moved only as the strategy takes them.

    Args:
        loader: The training loader (anything iterable with a ``len()``).
        convert: A batch -> ``(inputs, target)`` on the model's device.
    """

    def __init__(self, loader: Any, convert: Callable[[Any], tuple[Any, torch.Tensor]]):
        self.loader, self.convert = loader, convert

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return (self.convert(batch) for batch in self.loader)


def fusion_of(strategy: Any) -> Callable[[Any, Any], torch.Tensor] | None:
    """``strategy.fuse`` (model, output) -> prediction where the strategy predicts by
    test-time fusion (``test_time_fusion``: MLA), else None (the fused logits).

    Args:
        strategy: A strategy.

    Returns:
        Its ``fuse`` method, or None.
    """
    return strategy.fuse if getattr(strategy, "test_time_fusion", False) else None


def _takes_no_context(compute: Any) -> bool:
    """Whether ``compute`` has the old signature (self, model, output, target): four
    positional parameters, no ``ctx`` and no ``*args``."""
    try:
        params = list(inspect.signature(compute).parameters.values())
    except (TypeError, ValueError):  # not introspectable: leave it to the call
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 4 and "ctx" not in {p.name for p in params}


def _as_stat(value: Any, device: torch.device) -> torch.Tensor:
    """A statistic as a 0-d detached tensor; a Python number goes to ``device`` without a
    host sync (a fill kernel, not a copy)."""
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(())
    dtype = torch.float32 if device.type == "mps" else torch.float64
    return torch.full((), float(value), device=device, dtype=dtype)


#: option types with their ranges, part of the strategies' signatures (checked by name and
#: on every direct call, ``registry.validated``): NaN or inf in any of them would train on NaN
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Epoch = Annotated[int, Field(ge=0)]


def check_window(start: int, end: int | None) -> None:
    """The cross-option rule of OGM-GE, AGM and PMR: an ordered epoch window (each
    option's own range is in its annotation).

    Args:
        start: The first modulated epoch.
        end: The last modulated epoch, or None for no end.

    Raises:
        ConfigError: ``end < start``.
    """
    if end is not None and end < start:
        raise ConfigError("modulation_end: must be >= modulation_start")


def in_window(epoch: int, start: int, end: int | float) -> bool:
    """``start <= epoch <= end``: both ends inclusive, as the official OGM-GE and AGM code.

    Args:
        epoch: The epoch.
        start: The window's first epoch.
        end: Its last epoch (``math.inf`` for none).

    Returns:
        Whether ``epoch`` is in the window.
    """
    return start <= epoch <= end


def checked_loss(name: str, loss: torch.Tensor) -> torch.Tensor:
    """Check ``loss`` now (a host sync); :meth:`Strategy.check_finite` checks lazily.

    Args:
        name: The loss's name, for the message.
        loss: The loss.

    Returns:
        ``loss``, unchanged.

    Raises:
        NonFiniteLossError: The loss is NaN or infinite.
    """
    check_finite(name, loss)
    return loss
