"""MSLR (Yao & Mihalcea, "Modality-specific Learning Rates for Effective Multimodal
Additive Late-fusion", Findings of ACL 2022), SPEC section 3.

Each modality gets its own learning rate through optimizer parameter groups; the
gradient itself is joint training's (one backward pass per step).

- ``mode="keep"``: fixed rates, ``lr * lr_scales[g]`` for each parameter group g (a
  modality, or ``"head"``); a group not named keeps ``lr``.
- ``mode="dynamic"``: after each epoch, with acc_m the validation accuracy of the
  unimodal prediction z_m and ratio_m = acc_m(this epoch) / mean(acc_m over the previous
  ``window`` epochs), for every modality of the model:

  - ``rule="cumulative"`` (default; SPEC section 3): modality m's rate is multiplied by
    ratio_m (from the first epoch with any history), so the factors compound;
  - ``rule="non_cumulative"`` (the MSLR of the AGM repository, ``run/CREMAD_main.py``,
    whose gradient coefficient is ``lr_init_coeff * lr_ratio``): the rate is the
    starting rate (``lr * lr_scales[m]``) times this epoch's ratio_m, which stays 1
    until ``window`` accuracies are recorded. The factors never compound. (The AGM code
    scales gradients rather than rates, the same update under SGD, and only inside its
    modulation window; a learning-rate scheduler's changes are kept, as under that
    code: the rate is divided by last epoch's factor before this epoch's is applied.)

  Under the cumulative rule a modality whose accuracy keeps rising has its rate raised
  every epoch: on a held-out task it pushed the dominant modality's rate to 3-3.7x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from balgrad.errors import ConfigError
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import Positive
from balgrad.strategies._joint import Joint

#: a learning-rate scale: NaN or inf would train on NaN weights (and be reported as a rate
#: too high to train with)
Scale = Positive


def lr_ratio(acc: float, previous: Sequence[float], needed: int) -> float:
    """ratio_m = acc / mean(previous): this epoch's unimodal validation accuracy over the
    mean of the previous ones (the last ``window``); 1.0 with fewer than ``needed``
    previous accuracies (1 under the cumulative rule, ``window`` under the
    non-cumulative one) or a mean that is not positive.

    Args:
        acc: This epoch's accuracy.
        previous: The previous accuracies.
        needed: How many previous accuracies the ratio needs.

    Returns:
        ratio_m.
    """
    if len(previous) < needed:
        return 1.0
    mean_prev = sum(previous) / len(previous)
    return acc / mean_prev if mean_prev > 0 else 1.0


def rate_change(factor: float, applied: float, rule: str) -> float:
    """What the current rate is multiplied by: ``factor`` itself under the cumulative
    rule (the factors compound); under the non-cumulative one, ``factor`` over the factor
    the rate already carries (``applied``), so the rate is the start rate times
    ``factor`` (a scheduler's own changes kept).

    Args:
        factor: This epoch's ratio_m.
        applied: The factor the rate carries now.
        rule: ``"cumulative"`` or ``"non_cumulative"``.

    Returns:
        The multiplier.
    """
    return factor / applied if rule == "non_cumulative" else factor


class MSLR(Joint):
    """Modality-specific learning rates (see the module docstring).

    Args:
        mode: ``"dynamic"`` (rates follow the unimodal validation accuracies) or
            ``"keep"`` (fixed rates).
        lr_scales: ``{group: factor}`` for any parameter group: a modality or ``"head"``.
        image_lr_scale, text_lr_scale, head_lr_scale: The factors of the ``image``,
            ``text`` and ``head`` groups (the two-modality spelling; ``lr_scales`` names
            any modality and wins).
        window: How many previous epochs' accuracies ratio_m averages.
        rule: ``"cumulative"`` or ``"non_cumulative"``.

    Raises:
        ConfigError: An unknown ``mode`` or ``rule``, a factor that is not finite and
            positive, or ``window < 1``.
    """

    name = "mslr"
    # the step's statistics are joint training's; lr and lr_factor go in the epoch rows
    statistics = statistics("MSLR", ["loss_task"], ["loss", "score", "lr", "lr_factor"])

    @validated
    def __init__(
        self,
        *,
        mode: Literal["keep", "dynamic"] = "dynamic",
        lr_scales: dict[str, Scale] | None = None,
        window: Annotated[int, Field(ge=1)] = 5,
        rule: Literal["cumulative", "non_cumulative"] = "cumulative",
    ):
        super().__init__()
        self.mode = mode
        self.scales = dict(lr_scales or {})
        self.window = int(window)
        self.rule = rule
        self.history: dict[str, list[float]] = {}
        # non_cumulative: the factor each modality's rate carries now (to divide out)
        self.applied: dict[str, float] = {}
        self.needs_unimodal_validation = mode == "dynamic"

    def param_groups(self, model, lr):
        """One optimizer group per layout group, its rate ``lr`` times its factor.

        Args:
            model: The model.
            lr: The base rate.

        Returns:
            The parameter groups.

        Raises:
            ConfigError: ``lr_scales`` names a group the model does not have.
        """
        groups = super().param_groups(model, lr)
        unknown = sorted(set(self.scales) - {g["name"] for g in groups} - {"unimodal_heads"})
        if unknown:
            raise ConfigError(
                f"mslr lr_scales: {unknown} name no parameter group of the model; its groups "
                f"are {[g['name'] for g in groups]}"
            )
        for g in groups:
            g["lr"] = lr * self.scales.get(g["name"], 1.0)
        return groups

    def lr_factor(self, modality: str, acc: float) -> float:
        """acc / mean of the previous ``window`` accuracies: 1.0 with no history, and
        under ``rule="non_cumulative"`` until ``window`` accuracies are recorded.

        Args:
            modality: The modality.
            acc: Its validation accuracy this epoch (recorded in the history).

        Returns:
            ratio_m.
        """
        history = self.history.setdefault(modality, [])
        prev = history[-self.window :]
        history.append(acc)
        return lr_ratio(acc, prev, self.window if self.rule == "non_cumulative" else 1)

    def on_epoch_end(self, epoch, optimizer, unimodal_scores=None):
        """Under ``mode="dynamic"``, set each modality's rate from its accuracy this epoch.

        Args:
            epoch: The epoch that ended.
            optimizer: The optimizer whose groups :meth:`param_groups` built.
            unimodal_scores: ``{modality: validation accuracy}``.

        Returns:
            Each modality's rate and factor.

        Raises:
            ConfigError: ``unimodal_scores`` is missing under ``mode="dynamic"``.
        """
        if self.mode != "dynamic":
            return {}
        modalities = self._modalities(optimizer)
        if unimodal_scores is None:
            raise ConfigError(
                "mslr: mode='dynamic' needs the unimodal validation accuracies each epoch "
                f"(pass unimodal_scores={{modality: accuracy}} for {modalities} to on_epoch_end)"
            )
        missing = [m for m in modalities if m not in unimodal_scores]
        if missing:
            raise ConfigError(
                f"mslr: unimodal_scores lacks {missing}; give one accuracy per modality "
                f"{modalities}"
            )
        out = {}
        for m in modalities:
            factor = self.lr_factor(m, float(unimodal_scores[m]))
            change = rate_change(factor, self.applied.get(m, 1.0), self.rule)
            if self.rule == "non_cumulative":
                self.applied[m] = factor
            for group in optimizer.param_groups:
                if group.get("name") == m:
                    group["lr"] *= change
                    out[stat_name("lr", m)] = group["lr"]
            out[stat_name("lr_factor", m)] = factor
        return out

    @staticmethod
    def _modalities(optimizer) -> list[str]:
        """The modalities whose rates the optimizer holds: its named groups other than
        the head's, each once (a trainer may split a modality's group, e.g. the Hugging
        Face Trainer into decayed and not-decayed parameters)."""
        skip = ("head", "unimodal_heads")
        names = [g["name"] for g in optimizer.param_groups if g.get("name") not in (None, *skip)]
        return list(dict.fromkeys(names))

    def state_dict(self):
        """The base state plus the accuracy history and the factors applied.

        Returns:
            A dict of plain values.
        """
        history = {k: list(v) for k, v in self.history.items()}
        return {**super().state_dict(), "history": history, "applied": dict(self.applied)}

    def load_state_dict(self, state):
        """Restore the accuracy history and the factors applied.

        Args:
            state: What :meth:`state_dict` returned.
        """
        super().load_state_dict(state)
        self.history = {k: list(v) for k, v in state.get("history", self.history).items()}
        self.applied = {k: float(v) for k, v in state.get("applied", self.applied).items()}
