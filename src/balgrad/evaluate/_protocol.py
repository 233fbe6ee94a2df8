"""The evaluation protocol of SPEC sections 4 and 6 (paper Table 1 and Fig. 4).

Conditions: full; missing m at ratio r and noisy m (at m's noise level) for each modality
m; for M > 2 also only m (every other modality missing). Per impairment kind: Avg = the
mean over modalities of the m-impaired score and ΔGap = max − min over them, in points
(M = 2: ``|a − b|``); negative transfer is flagged where an impaired score exceeds the full
score.

Nothing non-finite is scored: a condition whose model inputs (the impaired raw inputs
after ``preprocess``, or a frozen tower's features of them) or logits hold a NaN or an
infinity is *undefined*: every score of it is NaN (null in eval.json, "n/a" in the
tables, and so are the Avg and ΔGap it enters), with a warning naming the condition.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from balgrad.data._conditioned_view import modalities_of
from balgrad.data._impairments import Condition
from balgrad.data._kinds import modality_kind
from balgrad.data._pipeline import InputPipeline
from balgrad.data._progress import with_progress
from balgrad.errors import ConfigError
from balgrad.evaluate._metrics import compute_scores
from balgrad.evaluate._sentiment import dataset_readouts
from balgrad.names import check_modality_names, condition_name, parse_condition
from balgrad.train._precision import autocast_region

log = logging.getLogger("balgrad.evaluate")

#: the missing ratios r of the robustness sweep (paper Fig. 4)
SWEEP_RATIOS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(kw_only=True)
class ProtocolConfig:
    """The protocol's settings. ``modalities``: name -> kind, in the dataset's order (no
    default set); ``noise``: name -> the noisy condition's level (a modality it leaves out
    gets its kind's default)."""

    modalities: dict[str, str]
    missing_ratio: float = 1.0
    noise: dict[str, float] | None = None
    sweep_ratios: tuple[float, ...] = SWEEP_RATIOS
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        check_modality_names(self.modalities, "protocol")
        for m, level in self.noise_levels().items():
            kind = modality_kind(self.modalities[m], f"protocol: modality {m!r}")
            try:
                kind.check_noise(float(level))
            except ConfigError as err:
                raise ConfigError(f"protocol: noise of {m!r} ({kind.name}): {err}") from None

    def noise_levels(self) -> dict[str, float]:
        """The noisy condition's level for each modality.

        Returns:
            ``{modality: level}``.

        Raises:
            ConfigError: ``noise`` names a modality the run does not have.
        """
        given = self.noise or {}
        if stray := [m for m in given if m not in self.modalities]:
            raise ConfigError(
                f"protocol: noise for {stray[0]!r}, which is not among the modalities "
                f"{list(self.modalities)}"
            )
        return {
            m: float(given[m]) if m in given else modality_kind(kind).default_noise
            for m, kind in self.modalities.items()
        }

    def table_conditions(self) -> dict[str, Condition]:
        """Table 1's rows by role -> condition: full, missing_<m> for every m, noisy_<m>
        for every m, and only_<m> for every m when there are more than two.

        Returns:
            ``{role: condition}``.
        """
        s, names = self.seed, list(self.modalities)
        levels = self.noise_levels()
        conds = {"full": Condition("full", seed=s)}
        for m in names:
            key = condition_name("missing", m)
            conds[key] = Condition(key, ratio=self.missing_ratio, seed=s)
        for m in names:
            if modality_kind(self.modalities[m]).has_noise:
                key = condition_name("noisy", m)
                conds[key] = Condition(key, level=levels[m], seed=s)
        if len(names) > 2:
            for m in names:
                key = condition_name("only", m)
                conds[key] = Condition(key, seed=s)
        return conds

    def sweep_conditions(self) -> list[tuple[float, dict[str, Condition]]]:
        """(r, {"missing_<m>": condition at r}) for every ratio of the sweep.

        Returns:
            One (r, conditions) per ratio.
        """
        return [
            (
                r,
                {
                    condition_name("missing", m): Condition(
                        condition_name("missing", m), ratio=r, seed=self.seed
                    )
                    for m in self.modalities
                },
            )
            for r in self.sweep_ratios
        ]


@dataclass
class Predictions:
    """A model's outputs over one condition of a split (:func:`predict`).

    Attributes:
        logits: The fused logits, ``[N, classes]``.
        unimodal: Each modality's logits z_m.
        target: The labels.
        index: Each sample's index in its split.
        nonfinite: What held a NaN or an infinity (``"input <m>"``, ``"logits"``); empty
            when every value was finite.
    """

    logits: torch.Tensor
    unimodal: dict[str, torch.Tensor]  # z_m by modality
    target: torch.Tensor
    index: torch.Tensor  # each sample's index in its split
    #: what held a NaN or an infinity: ``"input <m>"`` for a modality's model input,
    #: ``"logits"``; empty when every value was finite
    nonfinite: tuple[str, ...] = ()


def _finite(x) -> bool:
    """Whether a model input (a tensor, or a mapping with ``features``) is all finite;
    token ids and texts are."""
    if isinstance(x, Mapping):
        x = x.get("features")
    if not torch.is_tensor(x) or not x.is_floating_point():
        return True
    return bool(torch.isfinite(x).all())


@torch.no_grad()
def predict(
    model,
    loader,
    device="cpu",
    desc: str | None = None,
    progress: bool = False,
    precision: str = "fp32",
    fuse: Callable[[Any, Any], torch.Tensor] | None = None,
) -> Predictions:
    """Logits of every batch (as float32 on the CPU), the forward under ``precision``'s
    autocast, as in training. ``fuse(model, output)``: the method's prediction from a
    batch's output where it is not the fused logits (a strategy's test-time fusion, MLA:
    computed batch by batch, as the method's weights may depend on the batch).

    Args:
        model: The model (put back in its mode afterwards).
        loader: Batches of the split.
        device: The device.
        desc: The progress bar's label.
        progress: Show a progress bar.
        precision: The resolved ``--precision``.
        fuse: The method's test-time fusion, or None.

    Returns:
        The :class:`Predictions`.
    """
    was_training = model.training
    model.eval()
    zs, zm, ys, idx = [], {}, [], []
    bad: dict[str, None] = {}  # ordered set
    for batch in with_progress(loader, desc=desc, disable=not progress, leave=False):
        b = batch.to(device)
        bad.update({f"input {m}": None for m, x in batch.inputs.items() if not _finite(x)})
        with autocast_region(precision, device):
            out = model(b.inputs, drop=b.drop)
        zs.append((out.logits if fuse is None else fuse(model, out)).float().cpu())
        if not bool(torch.isfinite(zs[-1]).all()):
            bad["logits"] = None
        for m, z in out.unimodal.items():
            zm.setdefault(m, []).append(z.float().cpu())
        ys.append(b.target.cpu())
        idx.append(b.index.cpu())
    model.train(was_training)
    return Predictions(
        torch.cat(zs),
        {m: torch.cat(z) for m, z in zm.items()},
        torch.cat(ys),
        torch.cat(idx),
        tuple(bad),
    )


@dataclass
class Evaluator:
    """Scores a model on one dataset split under the protocol's conditions."""

    pipeline: InputPipeline
    dataset: object
    metrics: list[str]
    #: None: the protocol's defaults for the dataset's own modalities
    config: ProtocolConfig | None = None
    device: str = "cpu"
    progress: bool = False
    precision: str = "fp32"  # resolved: fp32, bf16 or fp16
    #: the method's test-time fusion (``balgrad.strategies._base.fusion_of``): what is
    #: scored as the fused prediction; None: the model's fused logits
    fuse: Callable[[Any, Any], torch.Tensor] | None = None

    def __post_init__(self):
        if self.config is None:
            self.config = ProtocolConfig(modalities=modalities_of(self.dataset))

    def predict(self, model, condition: Condition | None) -> Predictions:
        """The model's logits over the split under ``condition`` (:func:`predict`).

        Args:
            model: The model.
            condition: The impairment, or None for the full data.

        Returns:
            The :class:`Predictions`.
        """
        loader = self.pipeline.loader(self.dataset, condition, batch_size=self.config.batch_size)
        return predict(model, loader, self.device, precision=self.precision, fuse=self.fuse)

    def score(self, model, condition: Condition) -> dict[str, float]:
        """The metrics of the fused logits under ``condition``, and the dataset's own
        read-outs (``readout_scores``: MOSEI's MAE, ...) where it has any; all NaN
        (undefined, with a warning) when an input or a logit is not finite.

        Args:
            model: The model.
            condition: The impairment.

        Returns:
            The scores, in percent.
        """
        pred = self.predict(model, condition)
        logits = pred.logits
        if pred.nonfinite:
            log.warning(
                "evaluate: condition %s: the %s hold NaN or infinite values; its scores are "
                "undefined (null in eval.json, n/a in the tables)",
                condition.name,
                " and the ".join(pred.nonfinite),
            )
            logits = torch.zeros_like(logits)  # only to name the scores: none is computed
        scores = compute_scores(logits, pred.target, model.task, self.metrics)
        extra = dataset_readouts(self.dataset, logits, pred.index)
        if clash := sorted(set(extra) & set(scores)):
            raise ConfigError(f"readout_scores of {self.dataset!r} repeats metrics {clash}")
        scores.update(extra)
        if pred.nonfinite:
            scores = dict.fromkeys(scores, math.nan)
        return scores

    def modality_scores(self, model, condition: Condition | None = None) -> dict[str, float]:
        """Scores of the fused logits (``<metric>``) and of each tower's own logits
        (``<modality>_<metric>``) under ``condition`` (default: full): the trainer's
        validation, which picks the best epoch and gives MSLR its unimodal accuracies.

        Args:
            model: The model.
            condition: The impairment (None: the full data).

        Returns:
            The scores, in percent.
        """
        pred = self.predict(model, condition)
        heads = {"": pred.logits, **{f"{m}_": z for m, z in pred.unimodal.items()}}
        return {
            f"{head}{name}": value
            for head, logits in heads.items()
            for name, value in compute_scores(logits, pred.target, model.task, self.metrics).items()
        }

    def run(self, model, sweep: bool = True) -> dict:
        """Table conditions (+ the robustness sweep): {"conditions": {role: scores},
        "sweep": [{"ratio", "missing_<m>": scores for every modality m}]}.

        Args:
            model: The model (its best epoch).
            sweep: Also run the robustness sweep.

        Returns:
            The result, as eval.json holds it.
        """
        conds = self.config.table_conditions()
        it = tqdm(conds.items(), desc="evaluate", disable=not self.progress, leave=False)
        result = {
            "conditions": {role: {"condition": c.name, **self.score(model, c)} for role, c in it}
        }
        if sweep:
            rows = []
            for r, conds in tqdm(
                self.config.sweep_conditions(),
                desc="robustness sweep",
                disable=not self.progress,
                leave=False,
            ):
                rows.append(
                    {"ratio": r, **{role: self.score(model, c) for role, c in conds.items()}}
                )
            result["sweep"] = rows
        return result


#: the impairment kinds summarised per modality, in Table 1's order
IMPAIRMENTS = ("missing", "noisy")


def condition_modalities(conditions: dict) -> list[str]:
    """The modalities named by the roles ``missing_<m>``, then ``noisy_<m>`` and
    ``only_<m>``, in the order they first appear (the order eval.json lists them).

    Args:
        conditions: ``{role: scores}``.

    Returns:
        The modality names.
    """
    names: list[str] = []
    parsed = [p for p in map(parse_condition, conditions) if p is not None]
    for action in (*IMPAIRMENTS, "only"):
        names += [m for a, m in parsed if a == action and m not in names]
    return names


def modality_mean(values: list[float]) -> float:
    """Avg over modalities, summed left to right (M = 2: exactly (a + b) / 2).

    Args:
        values: One score per modality.

    Returns:
        The mean.
    """
    return sum(values[1:], values[0]) / len(values)


def modality_gap(values: list[float]) -> float:
    """ΔGap over modalities: max − min (M = 2: exactly ``|a − b|``); NaN when a score is.

    Args:
        values: One score per modality.

    Returns:
        The gap.
    """
    if any(v != v for v in values):
        return float("nan")
    return max(values) - min(values)


def summarize(
    conditions: dict[str, dict[str, float]], metric: str, modalities=None
) -> dict[str, float | bool]:
    """Table 1's rows for one run: Full; per impairment kind (missing, noisy)
    ``<kind>_<m>`` for each modality m that has the condition, ``<kind>_avg`` (mean over
    them) and ``<kind>_gap`` (max − min) where at least two have it, and
    ``<kind>_<m>_negative_transfer`` (impaired score above the full score); then
    ``only_<m>`` (every other modality missing) where evaluated.

    ``modalities``: names (or a name -> kind mapping) in the tables' order; by default
    those the roles name (:func:`condition_modalities`).

    Args:
        conditions: ``{role: scores}`` of one run.
        metric: The metric.
        modalities: The modalities, in order (default: read from the roles).

    Returns:
        The rows, by name.
    """
    names = list(modalities) if modalities is not None else condition_modalities(conditions)
    full = conditions["full"][metric]
    out: dict[str, float | bool] = {"full": full}
    for kind in IMPAIRMENTS:
        scores = {m: conditions.get(condition_name(kind, m), {}).get(metric) for m in names}
        scores = {m: v for m, v in scores.items() if v is not None}
        out.update({condition_name(kind, m): v for m, v in scores.items()})
        if len(scores) >= 2:
            out[f"{kind}_avg"] = modality_mean(list(scores.values()))
            out[f"{kind}_gap"] = modality_gap(list(scores.values()))
        out.update(
            {f"{condition_name(kind, m)}_negative_transfer": v > full for m, v in scores.items()}
        )
    for m in names:
        v = conditions.get(condition_name("only", m), {}).get(metric)
        if v is not None:
            out[condition_name("only", m)] = v
            out[f"{condition_name('only', m)}_negative_transfer"] = v > full
    return out


def sweep_gaps(sweep: list[dict], metric: str) -> list[tuple[float, float]]:
    """(r, ΔGap at r) for the robustness curve (paper Fig. 4): max − min over the row's
    ``missing_<m>`` entries (M = 2: ``|missing image − missing text|``).

    Args:
        sweep: The sweep's rows.
        metric: The metric.

    Returns:
        One (r, gap) per ratio.
    """
    return [
        (
            row["ratio"],
            modality_gap(
                [v[metric] for k, v in row.items() if (parse_condition(k) or ("",))[0] == "missing"]
            ),
        )
        for row in sweep
    ]
