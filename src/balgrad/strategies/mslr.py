"""MSLR (Yao & Mihalcea, "Modality-specific Learning Rates for Effective Multimodal
Additive Late-fusion", Findings of ACL 2022), SPEC section 3.

Each modality gets its own learning rate through optimizer parameter groups; the
gradient itself is joint training's (one backward pass per step).

- ``mode="keep"``: fixed rates, ``lr * lr_scales[m]`` for each modality m (and
  ``"head"``); ``image_lr_scale``, ``text_lr_scale`` and ``head_lr_scale`` are the
  (image, text) spelling of the same.
- ``mode="dynamic"``: after each epoch, modality m's rate is multiplied by
  acc_m(this epoch) / mean(acc_m over the previous ``window`` epochs), acc_m being the
  validation accuracy of the unimodal prediction z_m, for every modality of the model.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from balgrad.errors import ConfigError
from balgrad.strategies.base import Positive
from balgrad.strategies.joint import Joint

MODES = ("keep", "dynamic")
#: a learning-rate scale: NaN or inf would train on NaN weights (and be reported as a rate
#: too high to train with)
Scale = Positive


class MSLR(Joint):
    name = "mslr"

    def __init__(
        self,
        *,
        mode: str = "dynamic",
        lr_scales: dict[str, Scale] | None = None,
        image_lr_scale: Scale = 1.0,
        text_lr_scale: Scale = 1.0,
        head_lr_scale: Scale = 1.0,
        window: Annotated[int, Field(ge=1)] = 5,
    ):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode: unknown value {mode!r}; expected one of {MODES}")
        scales = {"image": image_lr_scale, "text": text_lr_scale, "head": head_lr_scale}
        for name, v in (
            *((f"{k}_lr_scale", v) for k, v in scales.items()),
            *((f"lr_scales[{k!r}]", v) for k, v in (lr_scales or {}).items()),
        ):
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{name}: must be a finite number > 0, got {v}")
        if window < 1:
            raise ConfigError(f"window: must be >= 1, got {window}")
        self.mode = mode
        self.scales = {**scales, **(lr_scales or {})}
        self._named_scales = set(lr_scales or {})
        self.window = int(window)
        self.history: dict[str, list[float]] = {}
        self.needs_unimodal_validation = mode == "dynamic"

    def param_groups(self, model, lr):
        groups = super().param_groups(model, lr)
        unknown = sorted(self._named_scales - {g["name"] for g in groups} - {"unimodal_heads"})
        if unknown:
            raise ConfigError(
                f"mslr lr_scales: {unknown} name no parameter group of the model; its groups "
                f"are {[g['name'] for g in groups]}"
            )
        for g in groups:
            g["lr"] = lr * self.scales.get(g["name"], 1.0)
        return groups

    def lr_factor(self, modality: str, acc: float) -> float:
        """acc / mean of the previous ``window`` accuracies (1.0 with no history)."""
        history = self.history.setdefault(modality, [])
        prev = history[-self.window :]
        history.append(acc)
        if not prev:
            return 1.0
        mean_prev = sum(prev) / len(prev)
        return acc / mean_prev if mean_prev > 0 else 1.0

    def on_epoch_end(self, epoch, optimizer, unimodal_scores=None):
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
            for group in optimizer.param_groups:
                if group.get("name") == m:
                    group["lr"] *= factor
                    out[f"lr_{m}"] = group["lr"]
            out[f"lr_factor_{m}"] = factor
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
        return {**super().state_dict(), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.history = {k: list(v) for k, v in state.get("history", self.history).items()}
