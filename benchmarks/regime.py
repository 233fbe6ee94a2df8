"""Is a benchmark setting in the paper's regime? Criteria 1-4 of docs/default-benchmark.md,
for any number of modalities (docs/three-modality-benchmark.md).

Takes every flag (and ``--config`` YAML) of ``balgrad compare``, trains what the chosen
criteria need through :class:`balgrad.experiment.Experiment` (one feature cache and one
in-process feature store shared by every run), and prints one PASS/FAIL line per
criterion with its numbers:

1. each modality alone, trained alone, reaches >= 3x chance;
2. under joint training the single-modality scores (only m: every other modality missing;
   with two modalities, missing the other one) spread 15-60 points (max - min; with two
   modalities that is the missing ΔGap), the weakest >= 2x chance;
3. what a missing modality feeds the model is an input its encoder gives a meaningful
   feature for (frozen pretrained tower, or a zero embedding), with feature statistics;
4. over the seeds (5 asked), the std of joint's and BalGrad's missing Avg and ΔGap <= 2.5.

BalGrad is trained only for criterion 4, and only the spread of its scores over seeds is
printed or written: the regime is chosen without looking at which method wins.

    python benchmarks/regime.py                               # the default benchmark, 5 seeds
    python benchmarks/regime.py --criteria 1 2 3 --seeds 0 1  # the cheap ones first
    python benchmarks/regime.py --dataset fashion --dataset-option text_signal=0.6 --json f.json
    python benchmarks/regime.py --dataset keypad              # the three-modality job
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from balgrad.cli import build_parser, config_from_args
from balgrad.config import RunConfig
from balgrad.data import Condition
from balgrad.errors import BalgradError
from balgrad.evaluate import compute_scores, summarize
from balgrad.experiment import Experiment

log = logging.getLogger("balgrad.regime")

CRITERIA = (1, 2, 3, 4)
ALONE_MIN_RATIO = 3.0  # criterion 1: each modality alone >= 3x chance
GAP_RANGE = (15.0, 60.0)  # criterion 2: joint's missing ΔGap, points
WEAK_MIN_RATIO = 2.0  # criterion 2: joint's weaker single-modality score >= 2x chance
MAX_SEED_STD = 2.5  # criterion 4, points
STABILITY_SEEDS = 5
#: what a missing input is, by kind, in the verdict's words
MISSING_INPUT = {
    "image": "blank image",
    "text": "empty string",
    "audio": "silence",
    "video": "zero frames",
    "features": "zero features",
}


# -- criterion 1: one modality, trained alone ---------------------------------------------
class ZeroTower(nn.Module):
    """Stands in for the absent tower: a constant zero feature whatever the input."""

    trainable = False

    def __init__(self, out_dim: int):
        super().__init__()
        self.out_dim = out_dim
        self.identity = "zero"

    def forward(self, x) -> torch.Tensor:
        ref = next(iter(x.values())) if isinstance(x, dict) else x
        return torch.zeros(ref.shape[0], self.out_dim, device=ref.device)


class AloneExperiment(Experiment):
    """The same runs as ``Experiment`` with every tower but ``kept`` replaced by
    :class:`ZeroTower` in training, model selection and test: a model that only ever sees
    that one modality."""

    def __init__(self, cfg: RunConfig, run_dir: Path, kept: str, share_with: Experiment):
        super().__init__(cfg, run_dir)
        self.kept = kept
        self._frozen_memory = share_with._frozen_memory  # frozen features are encoded once

    def pipeline(self, run_dir: Path | None = None):
        pipe = super().pipeline(run_dir)
        both = pipe.model_encoders

        def one_tower():
            return {m: e if m == self.kept else ZeroTower(e.out_dim) for m, e in both().items()}

        pipe.model_encoders = one_tower  # only build_model asks for the model's encoders
        return pipe


# -- chance ---------------------------------------------------------------------------------
def chance_score(exp: Experiment, metric: str) -> float:
    """The test score of a constant predictor that outputs the training class frequencies."""
    info, train, test = exp.data.info, exp.data.train, exp.data.test
    y_train = torch.as_tensor(np.asarray(_labels(train)))
    y_test = torch.as_tensor(np.asarray(_labels(test)))
    if info.task == "single_label":
        prior = torch.bincount(y_train, minlength=info.num_classes).double() + 1e-9
        logits = prior.log().float().expand(len(y_test), -1)
    else:
        prior = y_train.double().mean(0).clamp(1e-6, 1 - 1e-6)
        logits = (prior.log() - (1 - prior).log()).float().expand(len(y_test), -1)
    return compute_scores(logits, y_test, info.task, [metric])[metric]


def _labels(ds):
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return labels
    return [ds[i].label.numpy() for i in range(len(ds))]


# -- criterion 3: what a missing / noisy input feeds the model -----------------------------
@torch.no_grad()
def _tower_features(model, pipeline, dataset, condition: Condition, tower: str, device):
    enc = getattr(model, f"{tower}_encoder")
    model.eval()
    out = []
    for batch in pipeline.loader(dataset, condition, batch_size=256):
        b = batch.to(device)
        out.append(enc(b.inputs[tower]).float().cpu())
    return torch.cat(out)


def feature_statistics(train_feats: torch.Tensor, missing_feat: torch.Tensor) -> dict:
    """Where the missing input's feature lies relative to the training features."""
    mean = train_feats.mean(0)
    norms = train_feats.norm(dim=1)
    dist_train = (train_feats - mean).norm(dim=1)
    dist_missing = float((missing_feat - mean).norm())
    return {
        "cos_to_mean": float(torch.nn.functional.cosine_similarity(missing_feat, mean, dim=0)),
        "norm_ratio": float(missing_feat.norm() / norms.mean().clamp_min(1e-12)),
        "distance_percentile": float(100.0 * (dist_train < dist_missing).double().mean()),
    }


def tower_is_frozen(pipeline, tower: str) -> bool:
    return not getattr(pipeline.encoders[tower], "trainable", True)


def impairment_check(exp: Experiment, seed: int) -> dict:
    """Criterion 3 for each tower, with feature statistics from the trained joint model."""
    cfg = exp.cfg
    model, pipeline = exp.load_trained("joint", seed)
    out = {}
    for tower, plan in cfg.specs.items():
        frozen = tower_is_frozen(pipeline, tower)
        row = {"backbone": plan.backbone, "frozen": frozen, "missing": cfg.missing}
        row["kind"] = plan.kind
        if cfg.missing == "input":
            train = _tower_features(model, pipeline, exp.data.train, Condition(), tower, exp.device)
            gone = _tower_features(
                model,
                pipeline,
                exp.data.train,
                Condition(f"missing_{tower}", ratio=1.0),
                tower,
                exp.device,
            )
            row.update(feature_statistics(train, gone.mean(0)))
        level = plan.noise
        clean = _tower_features(model, pipeline, exp.data.test, Condition(), tower, exp.device)
        noisy = _tower_features(
            model,
            pipeline,
            exp.data.test,
            Condition(f"noisy_{tower}", level=level),
            tower,
            exp.device,
        )
        row["noisy_clean_cos"] = float(
            torch.nn.functional.cosine_similarity(noisy, clean, dim=1).mean()
        )
        row["pass"] = cfg.missing == "embedding" or frozen
        out[tower] = row
    return out


# -- the verdicts (pure functions of the measured numbers) ----------------------------------
@dataclass
class Verdict:
    criterion: int
    passed: bool | None  # None: not decidable from this run (too few seeds)
    text: str

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "UNDECIDED"}[self.passed]
        return f"criterion {self.criterion} {word}  {self.text}"


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def verdict_alone(alone: dict[str, list[float]], chance: float) -> Verdict:
    means = {m: _mean(v) for m, v in alone.items()}
    ok = all(x >= ALONE_MIN_RATIO * chance for x in means.values())
    parts = [f"{m} alone {x:.1f} ({x / chance:.1f}x chance)" for m, x in means.items()]
    need = f"need >= {ALONE_MIN_RATIO:g}x chance ({ALONE_MIN_RATIO * chance:.1f}) each"
    return Verdict(1, ok, ", ".join(parts) + f"; {need}")


def single_modality_scores(row: dict, modalities: list[str]) -> dict[str, float]:
    """Each modality's score with every other one missing: ``only_<m>``, or with two
    modalities the other one's missing score."""
    if len(modalities) == 2:
        a, b = modalities
        return {a: row[f"missing_{b}"], b: row[f"missing_{a}"]}
    return {m: row[f"only_{m}"] for m in modalities}


def verdict_dominance(
    joint: list[dict], chance: float, modalities: tuple[str, ...] = ("image", "text")
) -> Verdict:
    modalities = list(modalities)
    single = {
        m: _mean([single_modality_scores(r, modalities)[m] for r in joint]) for m in modalities
    }
    if len(modalities) == 2:
        spread, what = _mean([r["missing_gap"] for r in joint]), "missing ΔGap"
    else:
        spread, what = max(single.values()) - min(single.values()), "only-m spread (max - min)"
    weak_name = min(single, key=lambda m: (single[m], modalities.index(m)))
    weak = single[weak_name]
    lo, hi = GAP_RANGE
    ok = lo <= spread <= hi and weak >= WEAK_MIN_RATIO * chance
    scores = ", ".join(f"{m} only {x:.1f}" for m, x in single.items())
    return Verdict(
        2,
        ok,
        f"joint {what} {spread:.1f} (need {lo:g}-{hi:g}); {scores}; weaker "
        f"({weak_name} only) {weak / chance:.1f}x chance "
        f"(need >= {WEAK_MIN_RATIO:g}x = {WEAK_MIN_RATIO * chance:.1f})",
    )


def verdict_impairments(towers: dict[str, dict]) -> Verdict:
    parts = []
    for tower, r in towers.items():
        how = (
            "zero embedding" if r["missing"] == "embedding" else MISSING_INPUT[r.get("kind", tower)]
        )
        kind = "frozen pretrained" if r["frozen"] else "trained on the task"
        text = f"{tower}: {r['backbone']} ({kind}), missing = {how}"
        if "cos_to_mean" in r:
            text += (
                f" [cos to mean training feature {r['cos_to_mean']:.2f}, norm ratio "
                f"{r['norm_ratio']:.2f}, distance percentile {r['distance_percentile']:.0f}]"
            )
        text += f", noisy/clean feature cos {r['noisy_clean_cos']:.2f}"
        parts.append(text)
    ok = all(r["pass"] for r in towers.values())
    return Verdict(
        3, ok, "; ".join(parts) + "; need a frozen pretrained tower or a zero embedding each"
    )


def verdict_stability(joint: list[dict], balgrad_std: dict[str, float]) -> Verdict:
    stds = {
        "joint Avg": _std([r["missing_avg"] for r in joint]),
        "joint ΔGap": _std([r["missing_gap"] for r in joint]),
        "BalGrad Avg": balgrad_std["missing_avg"],
        "BalGrad ΔGap": balgrad_std["missing_gap"],
    }
    n = len(joint)
    ok: bool | None = all(s <= MAX_SEED_STD for s in stds.values())
    note = ""
    if n < STABILITY_SEEDS:
        ok, note = None, f" (the criterion asks for {STABILITY_SEEDS} seeds)"
    text = ", ".join(f"{k} {v:.2f}" for k, v in stds.items())
    return Verdict(4, ok, f"std over {n} seeds{note}: {text} (need <= {MAX_SEED_STD:g} each)")


# -- driver ---------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> tuple[argparse.Namespace, RunConfig]:
    own = argparse.ArgumentParser(
        prog="regime.py",
        description=__doc__.split("\n\n")[0] + " Every `balgrad compare` flag is accepted too.",
    )
    own.add_argument("--criteria", type=int, nargs="+", default=list(CRITERIA), choices=CRITERIA)
    own.add_argument("--json", help="also write every number to this JSON file")
    args, rest = own.parse_known_args(argv)
    compare = build_parser().parse_args(["compare", *rest])
    overrides: dict = {"sweep": False}
    if "seeds" not in vars(compare):
        overrides["seeds"] = list(range(STABILITY_SEEDS))
    if "out" not in vars(compare):
        overrides["out"] = "runs/regime"
    cfg = config_from_args(compare, overrides)
    methods = ["joint", "balgrad"] if 4 in args.criteria else ["joint"]
    return args, cfg.model_copy(update={"methods": methods})


def run(args: argparse.Namespace, cfg: RunConfig) -> tuple[dict, list[Verdict]]:
    run_dir = Path(cfg.out) / (cfg.name or f"{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    exp = Experiment(cfg, run_dir)
    modalities = list(cfg.specs)
    metric = exp.data.info.primary_metric
    chance = chance_score(exp, metric)
    rows: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    for seed in cfg.seeds:
        for method in cfg.methods:
            result = exp.train_one(method, seed)
            rows[method].append(summarize(result.evaluation["conditions"], metric))
    joint = rows["joint"]
    report: dict = {
        "dataset": cfg.dataset,
        "config": cfg.model_dump(mode="json"),
        "metric": metric,
        "chance": chance,
        "seeds": cfg.seeds,
        "joint": {
            k: [r[k] for r in joint]
            for k in (
                "full",
                *(f"missing_{m}" for m in modalities),
                *(f"only_{m}" for m in modalities if len(modalities) > 2),
            )
        },
    }
    verdicts = []
    if 1 in args.criteria:
        alone: dict[str, list[float]] = {}
        for kept in modalities:
            aexp = AloneExperiment(cfg, run_dir / f"{kept}_alone", kept, share_with=exp)
            alone[kept] = [
                aexp.train_one("joint", seed).evaluation["conditions"]["full"][metric]
                for seed in cfg.seeds
            ]
        report["alone"] = alone
        verdicts.append(verdict_alone(alone, chance))
    if 2 in args.criteria:
        verdicts.append(verdict_dominance(joint, chance, tuple(modalities)))
    if 3 in args.criteria:
        report["impairments"] = impairment_check(exp, cfg.seeds[0])
        verdicts.append(verdict_impairments(report["impairments"]))
    if 4 in args.criteria:
        keys = ("missing_avg", "missing_gap")
        balgrad_std = {k: _std([r[k] for r in rows["balgrad"]]) for k in keys}
        report["balgrad_std"] = balgrad_std  # only the spread: never the mean
        verdicts.append(verdict_stability(joint, balgrad_std))
    report["verdicts"] = {v.criterion: {"pass": v.passed, "text": v.text} for v in verdicts}
    report["run_dir"] = str(run_dir)
    return report, verdicts


def describe(cfg: RunConfig, chance: float, metric: str) -> str:
    towers = " + ".join(p.backbone for p in cfg.specs.values())
    towers += ", fine-tuned" if cfg.finetune else ""
    opts = ", ".join(f"{k}={v}" for k, v in cfg.dataset_options.items()) or "defaults"
    given = {m: s.backbone_options for m, s in cfg.modalities.items() if s.backbone_options}
    bb = f"; backbone options {given}" if given else ""
    seeds = " ".join(str(s) for s in cfg.seeds)
    return (
        f"regime of {cfg.dataset} ({opts}) with {towers}{bb}; missing = {cfg.missing}; "
        f"seeds {seeds}; {metric}, chance {chance:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args, cfg = parse_args(sys.argv[1:] if argv is None else argv)
        t0 = time.perf_counter()
        report, verdicts = run(args, cfg)
    except BalgradError as err:
        print(f"regime.py: error: {err}", file=sys.stderr)
        return 2
    report["seconds"] = time.perf_counter() - t0
    print(describe(cfg, report["chance"], report["metric"]))
    for v in verdicts:
        print(v.line())
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
