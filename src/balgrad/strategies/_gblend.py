"""G-Blend: Gradient Blending (Wang, Tran & Feiszli, "What Makes Training Multi-modal
Classification Networks Hard?", CVPR 2020, arXiv 1905.12681).

Official code: facebookresearch/VMZ @ 4cc542d (Caffe2) trains with FIXED weights
(``c2/lib/models/loss/loss_creator.py::add_weighted_loss``); the code that estimates them
was never released (VMZ#133). The operational reference is pliang279/MultiBench
@ 49f9be2, ``training_structures/gradient_blend.py`` (``train``, ``gb_estimate``,
``train_unimodal``, ``train_multimodal``).

**The step.** With the fused logits z, each modality's unimodal logits z_m and blend
weights w (one per branch k ∈ {1, .., M, fused}, Σ_k w_k = 1):

    L = w_fused ℓ(z, y) + Σ_m w_m ℓ(z_m, y)

one backward pass and the optimizer step (MultiBench's ``blendloss``).

**The weights.** From a copy of the current model per branch, trained alone on that
branch's loss for n epochs (``estimate_epochs``) on the training part, with
ℓ measured on the training part (L_train) and on the held-out part (L_val) before (N)
and after (N + n): overfitting O = L_val − L_train, generalisation G = L_val, and

- ``semantics="paper"`` (default): ΔG_k = G_{k,N} − G_{k,N+n}, ΔO_k = O_{k,N+n} − O_{k,N},
  w_k ∝ abs(ΔG_k) / ΔO_k² (MultiBench with ``delta = True``; the paper's Proposition 1 reads
  w_k* = ⟨∇L*, v_k⟩ / (Z σ_k²) and section 3.3 estimates ⟨∇L*, v_k⟩ by ΔG_k and σ_k² by
  ΔO_k²). The absolute value is MultiBench's; a branch whose held-out loss rose keeps a
  weight, as there;
- ``semantics="multibench"``: w_k ∝ abs(G_{k,N+n}) / O_{k,N+n}² (MultiBench's module-level
  default ``delta = False``): not the paper's Δ form, and a branch with a HIGHER held-out
  loss gets a higher weight.

normalised to sum to 1 (MultiBench's ``w / sum(weights)``; the paper's Z normalises too,
and any constant factor of the loss is a factor of the learning rate). An abs(ΔO) (or O)
below 1e-4 is taken as 1e-4 (MultiBench floors a negative O at 1e-4 under
``delta = False``, and divides by zero at O = 0 or ΔO = 0); all raw weights 0 give equal
weights. The default is ``"paper"``: it is the method the paper defines, and MultiBench's
default inverts its logic (docs/spec.md §3c).

**The lifecycle.** ``mode="online"`` (MultiBench's ``train``, the paper's online G-Blend)
re-estimates at the start of every super-epoch, epochs 0, S, 2S, .. (S =
``super_epoch``); ``mode="offline"`` estimates once, before the first epoch. The
estimate runs in :meth:`GBlend.prepare_epoch` (the epoch-pass hook, ``needs_epoch_pass``)
with ``held_out`` and ``make_optimizer``:

- balgrad's Trainer splits ``held_out_fraction`` of the training set off once, stratified
  by label and deterministic by seed (``balgrad.data._splits.train_val_split``), and never
  trains on it, as MultiBench (which holds out the first ``v_rate`` = 8 % of the dataset
  order, unshuffled); the copies get the run's optimizer and settings
  (MultiBench: ``optimtype(params, lr=lr, weight_decay=weight_decay)``);
- a loop that hands no ``held_out`` (the Lightning and Hugging Face integrations, whose
  data the user's loaders own, or an own loop): the strategy keeps the batches it is
  given in memory and holds out the first max(1, round(f · N)) of the N (all N serve
  both parts when N = 1); the main run then also trains on them;
- without ``make_optimizer``: plain SGD at ``estimate_lr``.

A loop that skips the hook gets a ConfigError naming ``prepare_epoch`` at the first step
that needs fresh weights (never joint training with stale or no weights).

**The copies.** Copy k (a ``copy.deepcopy`` of the model) trains, in train mode, the
parameters its loss reaches: a unimodal copy its tower θ_k and its own unimodal head
(separate heads) or the fusion head f_T evaluated with the other embeddings zeroed (a
shared head: the unimodal network's classifier is the head's modality-k part, here
trainable); the fused copy the towers and f_T. The losses are measured in eval mode
without gradients (MultiBench's ``getloss`` leaves the modules in train mode), per-sample
means over all batches. Under ``torch.distributed`` the copies' gradients are averaged
over ranks at every step and the loss sums are summed, so every rank gets the same
weights, equal to one process's on the whole data.

**Unimodal heads.** The paper and MultiBench give each modality its own classifier
(``unimodal_head="separate"``, the setup to use for the paper's method). With balgrad's
shared head, z_m = f_T(0, .., h_m, .., 0) with θ_T detached: ℓ(z_m) trains θ_m alone,
through the fused head's modality-m part; it is accepted (for concat fusion and a linear
head it is a linear unimodal classifier tied to the fused one), and docs/spec.md states it.

**Not implemented.** MultiBench also fine-tunes a copy of the fusion head for
``finetune_epoch`` = 25 epochs on cached features after every super-epoch and saves that
copy as the model; it is not in the paper's method and balgrad selects models its own way.

M > 2: the same rule for every branch (MultiBench's loops are over any number of
modalities).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from balgrad._grad import add_to_grads_, grads_of
from balgrad.errors import ConfigError
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import Positive, Strategy, unwrap
from balgrad.tasks import task_loss, true_class_prob

#: MultiBench floors a negative overfitting at this under ``delta = False``
O_FLOOR = 1e-4
#: MultiBench ``train``'s defaults: ``gb_epoch`` (the super-epoch and the copies' epochs)
#: and ``v_rate`` (the held-out fraction)
MULTIBENCH_GB_EPOCH = 20
MULTIBENCH_V_RATE = 0.08

MakeOptimizer = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


# -- the method's arithmetic ---------------------------------------------------------------
@validated
def blend_scores(
    train_before: torch.Tensor,
    val_before: torch.Tensor,
    train_after: torch.Tensor,
    val_after: torch.Tensor,
    semantics: Literal["paper", "multibench"] = "paper",
) -> torch.Tensor:
    """The unnormalised weight of each branch from its losses at N (before) and N + n
    (after), each [K]: abs(ΔG) / ΔO² (``"paper"``) or abs(G_{N+n}) / O_{N+n}² (``"multibench"``).

    Args:
        train_before, val_before: Each branch's training and held-out losses at N ``[K]``.
        train_after, val_after: The same at N + n ``[K]``.
        semantics: ``"paper"`` or ``"multibench"``.

    Returns:
        The raw weights ``[K]``.
    """
    o_after = val_after - train_after
    if semantics == "paper":
        g = val_before - val_after
        o = o_after - (val_before - train_before)
        o = o.abs().clamp_min(O_FLOOR)
    else:
        g = val_after
        o = torch.where(o_after > O_FLOOR, o_after, torch.full_like(o_after, O_FLOOR))
    return g.abs() / o.square()


def normalise(raw: torch.Tensor) -> torch.Tensor:
    """w = raw / Σ raw; equal weights where every raw weight is 0.

    Args:
        raw: Non-negative weights ``[K]``.

    Returns:
        Weights summing to 1.
    """
    total = raw.sum()
    if not bool(total > 0):
        return torch.full_like(raw, 1.0 / raw.numel())
    return raw / total


def blend_weights(
    train_before: torch.Tensor,
    val_before: torch.Tensor,
    train_after: torch.Tensor,
    val_after: torch.Tensor,
    semantics: str = "paper",
) -> torch.Tensor:
    """The blend weights [K], summing to 1 (see :func:`blend_scores`).

    Args:
        train_before, val_before: Each branch's training and held-out losses at N ``[K]``.
        train_after, val_after: The same at N + n ``[K]``.
        semantics: ``"paper"`` or ``"multibench"``.

    Returns:
        The weights ``[K]``.
    """
    return normalise(blend_scores(train_before, val_before, train_after, val_after, semantics))


def blended_loss(losses: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k ℓ_k over ``losses`` = [ℓ_1, .., ℓ_M, ℓ_fused], summed in MultiBench's order
    (the fused term first).

    Args:
        losses: ℓ_1, .., ℓ_M, ℓ_fused.
        weights: w ``[M + 1]``.

    Returns:
        The loss, 0-d.
    """
    w = weights.to(losses[-1].dtype)
    total = losses[-1] * w[-1]
    for k in range(len(losses) - 1):
        total = total + losses[k] * w[k]
    return total


def split_batches(batches: Iterable, fraction: float) -> tuple[list, list]:
    """(train part, held-out part) of the batches a loop hands without ``held_out``: the
    first max(1, round(fraction · N)) of N held out, the rest for training (all N for
    both when N = 1).

    Args:
        batches: The batches.
        fraction: The share held out.

    Returns:
        (train part, held-out part).

    Raises:
        ConfigError: There are no batches.
    """
    kept = list(batches)
    if not kept:
        raise ConfigError("gblend: prepare_epoch got no batches to estimate the blend weights on")
    if len(kept) == 1:
        return kept, kept
    k = min(max(1, round(fraction * len(kept))), len(kept) - 1)
    return kept[k:], kept[:k]


# -- the strategy -------------------------------------------------------------------------
class GBlend(Strategy):
    """See the module docstring.

    Args:
        mode: ``"online"`` (re-estimate every ``super_epoch`` epochs) or ``"offline"``
            (once, before the first epoch).
        super_epoch: S, the epochs between estimates (MultiBench ``gb_epoch`` = 20).
        estimate_epochs: n, the epochs each copy trains (MultiBench: ``gb_epoch`` too).
        held_out_fraction: the part of the training set held out (MultiBench
            ``v_rate`` = 0.08).
        estimate_lr: the copies' SGD learning rate where the loop passes no
            ``make_optimizer`` (balgrad's own choice; its loops pass the run's optimizer).
        semantics: ``"paper"`` (abs(ΔG) / ΔO²) or ``"multibench"`` (G / O², MultiBench's
            default ``delta = False``).
    """

    name = "gblend"
    statistics = statistics(
        "G-Blend", ["loss_task", "loss_blend", "weight_fused"], ["loss", "score", "weight"]
    )
    needs_epoch_pass = True
    trains_copies = True
    full_precision_compute = True

    @validated
    def __init__(
        self,
        *,
        mode: Literal["online", "offline"] = "online",
        super_epoch: Annotated[int, Field(ge=1)] = MULTIBENCH_GB_EPOCH,
        estimate_epochs: Annotated[int, Field(ge=1)] = MULTIBENCH_GB_EPOCH,
        held_out_fraction: Annotated[float, Field(gt=0, lt=1)] = MULTIBENCH_V_RATE,
        estimate_lr: Positive = 0.01,
        semantics: Literal["paper", "multibench"] = "paper",
    ):
        super().__init__()
        self.mode = mode
        self.super_epoch = int(super_epoch)
        self.estimate_epochs = int(estimate_epochs)
        self.held_out_fraction = float(held_out_fraction)
        self.estimate_lr = float(estimate_lr)
        self.semantics = semantics
        self.weights: torch.Tensor | None = None  # [M + 1]: the modalities', then fused
        self.estimated_epoch: int | None = None
        self._separate = False  # the model has separate unimodal heads (set by estimate)

    # -- when the hook is due -----------------------------------------------------------
    def needs_preparation(self) -> bool:
        """Whether the weights must be (re-)estimated before the next step.

        Returns:
            True before the first estimate and, online, at each super-epoch's start.
        """
        if self.weights is None:
            return True
        if self.mode == "offline":
            return False
        return self.epoch % self.super_epoch == 0 and self.estimated_epoch != self.epoch

    def check_prepared(self) -> None:
        """Raise unless the blend weights for this epoch are estimated.

        Raises:
            ConfigError: :meth:`prepare_epoch` is due and was not called.
        """
        if self.needs_preparation():
            raise ConfigError(
                f"gblend needs strategy.prepare_epoch(model, batches, held_out=..., "
                f"make_optimizer=...) after strategy.on_epoch_start(epoch) at the start of "
                f"epoch {self.epoch} (mode {self.mode!r}: "
                + (
                    "before the first epoch"
                    if self.mode == "offline"
                    else f"every {self.super_epoch} epochs from epoch 0"
                )
                + "): it trains copies of the model to estimate the blend weights. "
                "balgrad's Trainer, Lightning module and HF Trainer call it"
            )

    # -- the estimate ---------------------------------------------------------------------
    def prepare_epoch(
        self,
        model,
        batches: Any,
        *,
        held_out: Any = None,
        make_optimizer: MakeOptimizer | None = None,
    ) -> dict[str, torch.Tensor]:
        """Estimate the blend weights where due (:meth:`estimate`), on ``held_out`` or on a part
        of ``batches`` held out (:func:`split_batches`); see :meth:`Strategy.prepare_epoch
        <balgrad.strategies._base.Strategy.prepare_epoch>` for the arguments.

        Args:
            model: The model.
            batches: Training batches.
            held_out: Held-out batches, or None to split ``batches``.
            make_optimizer: Builds each copy's optimizer (the training optimizer's kind).

        Returns:
            The weights, by name.
        """
        module = unwrap(model)[0]
        self.layout(module)
        stats: dict[str, torch.Tensor] = {}
        if self.needs_preparation():
            if held_out is None:
                batches, held_out = split_batches(batches, self.held_out_fraction)
            was_training = module.training
            try:
                self.weights = self.estimate(module, batches, held_out, make_optimizer)
            finally:
                module.train(was_training)
            self.estimated_epoch = self.epoch
            names = (*self.modalities(module), "fused")
            stats = {
                stat_name("weight", n) if n != "fused" else "weight_fused": w
                for n, w in zip(names, self.weights)
            }
        self.prepared_epoch = self.epoch
        return stats

    def estimate(
        self, model: nn.Module, train: Any, held_out: Any, make_optimizer: MakeOptimizer | None
    ) -> torch.Tensor:
        """The blend weights [M + 1] from one copy per branch (see the module docstring).

        Args:
            model: The model (copied; it is not trained here).
            train: The training batches.
            held_out: The held-out batches.
            make_optimizer: Builds each copy's optimizer.

        Returns:
            The weights ``[M + 1]``, the fused branch last.
        """
        branches = (*self.modalities(model), None)  # None: the fused head
        self._separate = bool(self.layout(model).groups.get("unimodal_heads"))
        before_train = self._losses(model, train, branches)
        before_val = self._losses(model, held_out, branches)
        after_train, after_val = [], []
        for branch in branches:
            twin = copy.deepcopy(model)
            self._train_copy(twin, branch, train, make_optimizer)
            after_train.append(self._losses(twin, train, (branch,)))
            after_val.append(self._losses(twin, held_out, (branch,)))
            del twin
        weights = blend_weights(
            before_train, before_val, torch.cat(after_train), torch.cat(after_val), self.semantics
        )
        if not bool(torch.isfinite(weights).all()):
            raise ConfigError(
                f"gblend: the blend weights are not finite ({weights.tolist()}): a copy's "
                "loss diverged; lower the learning rate or estimate_lr"
            )
        return weights.detach()

    def _branch_params(self, twin: nn.Module, branch: str | None) -> list[nn.Parameter]:
        groups = self.layout(twin).groups
        if branch is None:
            return [p for m in self.modalities(twin) for p in groups[m]] + list(groups["head"])
        heads = groups.get("unimodal_heads") or groups["head"]
        return list(groups[branch]) + list(heads)

    def _branch_logits(self, net, out, branch: str | None) -> torch.Tensor:
        if branch is None:
            return out.logits
        if self._separate:
            return out.unimodal[branch]
        h = out.embeddings
        return net.classify({m: h[m] if m == branch else torch.zeros_like(h[m]) for m in h})

    def _train_copy(self, twin, branch, train, make_optimizer) -> None:
        params = self._branch_params(twin, branch)
        opt = (
            make_optimizer(params)
            if make_optimizer
            else torch.optim.SGD(params, lr=self.estimate_lr)
        )
        sync = self.sync
        several = sync.world_size > 1
        twin.train()
        with torch.enable_grad():
            for _ in range(self.estimate_epochs):
                for inputs, target in train:
                    opt.zero_grad(set_to_none=True)
                    logits = self._branch_logits(twin, twin(inputs), branch)
                    loss = task_loss(logits, target, twin.task)
                    grads = grads_of(loss, params, retain_graph=False, materialize=several)
                    if several:
                        sync.mean_(grads)
                    add_to_grads_(params, grads)
                    opt.step()

    def _losses(self, net, batches, branches) -> torch.Tensor:
        """Per-sample mean of ℓ over ``batches`` for each branch [len(branches)], in eval
        mode without gradients, summed over ranks."""
        net.eval()
        sums, count = None, 0
        with torch.no_grad():
            for inputs, target in batches:
                out = net(inputs)
                n = target.shape[0]
                losses = [
                    task_loss(self._branch_logits(net, out, b), target, net.task) for b in branches
                ]
                wide = (
                    torch.float32 if target.device.type == "mps" else torch.float64
                )  # MPS: no f64
                batch = torch.stack(losses).to(wide) * n
                sums = batch if sums is None else sums + batch
                count += n
        if sums is None:
            raise ConfigError("gblend: the estimate got an empty training or held-out part")
        total = self.sync.sum(torch.cat([sums, sums.new_tensor([count])]))
        return total[:-1] / total[-1]

    # -- the step -----------------------------------------------------------------------
    def compute(self, model, output, target, ctx):
        """One step: Σ_k w_k ℓ_k over the unimodal and fused losses (:func:`blended_loss`), one
        backward pass.
        """
        task = model.task
        modalities = self.modalities(model)
        loss_t = task_loss(output.logits, target, task)
        uni = [task_loss(output.unimodal[m], target, task) for m in modalities]
        w = self.weights.to(device=loss_t.device, dtype=loss_t.dtype)
        loss = blended_loss([*uni, loss_t], w)
        names = ("task loss L_T", *(f"{m} loss L_{m}" for m in modalities))
        ctx.check_finite(names, torch.stack([loss_t.detach(), *(u.detach() for u in uni)]))
        params = ctx.layout.params
        add_to_grads_(params, ctx.loss_grads(loss, params))
        stats = {"loss_task": loss_t.detach(), "loss_blend": loss.detach(), "weight_fused": w[-1]}
        with torch.no_grad():
            for i, m in enumerate(modalities):
                stats[stat_name("loss", m)] = uni[i].detach()
                stats[stat_name("score", m)] = true_class_prob(
                    output.unimodal[m], target, task
                ).mean()
                stats[stat_name("weight", m)] = w[i]
        return stats

    # -- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The base state plus the blend weights and the epoch they were estimated at.

        Returns:
            A dict of plain values and tensors.
        """
        state = super().state_dict()
        if self.weights is not None:
            state["weights"] = self.weights.detach().cpu()
            state["estimated_epoch"] = -1 if self.estimated_epoch is None else self.estimated_epoch
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the blend weights and the epoch they were estimated at.

        Args:
            state: What :meth:`state_dict` returned.
        """
        super().load_state_dict(state)
        weights = state.get("weights")
        self.weights = None if weights is None else weights.clone()
        estimated = int(state.get("estimated_epoch", -1))
        self.estimated_epoch = None if estimated < 0 else estimated
