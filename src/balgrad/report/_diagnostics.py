"""Numbers drawn from the per-step logs (``<method>/seed<k>/metrics.jsonl``).

- per-modality training-loss curves (paper Fig. 2b, 6; the strategies log ``loss_<m>``
  per modality m) and the *loss-curve gap*, the mean of ``loss_a − loss_b`` over the
  last ``tail`` fraction of steps for two modalities (a, b) (the paper's
  ``loss_image − loss_text``), for M > 2 the spread (max − min) of the per-modality
  tail means;
- the cosines cos(g_T, g_kl) before and after projection (Fig. 7), their histogram,
  and the fraction of conflicting steps (Table 3).

Everything here is plain numpy on the logged values; the figures are drawn in
:mod:`balgrad.report._figures`, the tables written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balgrad.errors import ConfigError
from balgrad.report._grid import Table
from balgrad.report._stats import mean_std
from balgrad.report._tables import format_cell, method_label
from balgrad.strategies._balgrad import STATISTICS as BALGRAD
from balgrad.strategies._base import MONITOR
from balgrad.strategies._registry import method_role, strategy_options
from balgrad.train._metrics_log import read_jsonl

#: a post-projection cosine below this still counts as conflicting (float round-off
#: leaves values of about −1e-8 where the projection removed the conflict exactly)
PROJECTED_TOL = 1e-6
#: the loss-curve gap averages the last 20% of steps
GAP_TAIL = 0.2
#: the step statistics read here, through the schemas the strategies declare and build
#: their keys with (a renamed statistic fails at import, not as an empty figure)
COS_RAW = BALGRAD.key("cos_task_kl")
COS_PROJECTED = BALGRAD.key("cos_task_kl_projected")
PROJECTED = BALGRAD.key("projected")


def loss_key(m: str) -> str:
    """``loss_<m>``: modality m's unimodal training loss."""
    return MONITOR.key("loss", m)


#: 41 bins of width 0.05 over [−1.025, 1.025]: 0 is the centre of a bin, so cosines that
#: round-off leaves at ±1e-8 after the projection fall in the same bar as an exact 0
COS_BINS = np.linspace(-1.025, 1.025, 42)


# -- loading ----------------------------------------------------------------------------
def load_step_logs(
    run_dir: Path, methods: list[str], seeds: list[int]
) -> dict[str, dict[int, list[dict]]]:
    """{method: {seed: [step rows sorted by step]}}; methods/seeds without a log are left out.

    Rows are de-duplicated by step (the last one wins), which tolerates a log written
    across a resume.
    """
    out: dict[str, dict[int, list[dict]]] = {}
    for method in methods:
        for seed in seeds:
            rows = read_jsonl(Path(run_dir) / method / f"seed{seed}" / "metrics.jsonl", steps=True)
            if not rows:
                continue
            by_step = {int(r.get("step", i)): r for i, r in enumerate(rows)}
            out.setdefault(method, {})[seed] = [by_step[s] for s in sorted(by_step)]
    return out


def column(rows: list[dict], key: str) -> np.ndarray:
    """The values of ``key`` over the steps that logged it (float array)."""
    values = [r.get(key) for r in rows]  # a value that is not a number is a damaged row's
    return np.array([v for v in values if isinstance(v, int | float)], dtype=float)


# -- loss curves --------------------------------------------------------------------------
def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average of the same length (the first points average what exists)."""
    x = np.asarray(x, dtype=float)
    if window <= 1 or len(x) == 0:
        return x.copy()
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def default_window(n_steps: int) -> int:
    """About 2% of the run, at least 1, at most 200 steps."""
    return int(min(200, max(1, round(n_steps / 50))))


@dataclass
class LossCurves:
    """Smoothed per-modality training loss of one method, mean and std over seeds
    (``mean[m]``, ``std[m]``)."""

    steps: np.ndarray
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    n_seeds: int
    window: int


def _loss_rows(rows: list[dict], modalities) -> list[dict]:
    return [r for r in rows if all(loss_key(m) in r for m in modalities)]


def logged_modalities(per_seed: dict[int, list[dict]], modalities: Sequence[str]) -> list[str]:
    """Those of ``modalities`` whose loss (``loss_<m>``) some step logged, in order."""
    return [m for m in modalities if any(loss_key(m) in r for rs in per_seed.values() for r in rs)]


def loss_curves(
    per_seed: dict[int, list[dict]], window: int | None = None, *, modalities: Sequence[str]
) -> LossCurves | None:
    """Smoothed ``loss_<m>`` curves of the logged ``modalities`` (at least two) over the
    steps every seed has."""
    names = logged_modalities(per_seed, modalities)
    if len(names) < 2:
        return None
    series = []
    for rows in per_seed.values():
        rows = _loss_rows(rows, names)
        if rows:
            losses = [column(rows, loss_key(m)) for m in names]
            series.append((column(rows, "step"), losses))
    if not series:
        return None
    n = min(len(s[0]) for s in series)
    w = window or default_window(n)
    stacks = {
        m: np.stack([moving_average(s[1][i][:n], w) for s in series]) for i, m in enumerate(names)
    }
    over_seeds = {m: mean_std(a) for m, a in stacks.items()}
    return LossCurves(
        series[0][0][:n],
        {m: np.array(c["mean"]) for m, c in over_seeds.items()},
        {m: np.array(c["std"]) for m, c in over_seeds.items()},
        len(series),
        w,
    )


def tail_losses(
    rows: list[dict], tail: float = GAP_TAIL, *, modalities: Sequence[str]
) -> dict | None:
    """{m: mean of loss_<m> over the last ``tail`` fraction of the steps that logged every
    one of ``modalities``} (raw values), or None without such steps."""
    rows = _loss_rows(rows, modalities)
    if not rows:
        return None
    k = max(1, int(np.ceil(len(rows) * tail)))
    last = rows[-k:]
    return {m: float(np.mean(column(last, loss_key(m)))) for m in modalities}


def loss_gap(
    rows: list[dict], tail: float = GAP_TAIL, *, modalities: Sequence[str]
) -> float | None:
    """Two modalities (a, b): mean of loss_a − loss_b over the last ``tail`` fraction of
    the steps (raw, unsmoothed values; positive: the a loss stays higher, so the b
    tower learned the task faster). More: max − min of :func:`tail_losses`."""
    modalities = list(modalities)
    if len(modalities) > 2:
        t = tail_losses(rows, tail, modalities=modalities)
        return None if t is None else max(t.values()) - min(t.values())
    a, b = modalities
    rows = _loss_rows(rows, modalities)
    if not rows:
        return None
    k = max(1, int(np.ceil(len(rows) * tail)))
    last = rows[-k:]
    return float(np.mean(column(last, loss_key(a)) - column(last, loss_key(b))))


def seed_cell(values: list[float]) -> dict:
    """A table cell of ``values`` over seeds: :func:`~balgrad.report._stats.mean_std`, the
    ``values`` and no negative transfer."""
    values = [float(v) for v in values]
    return {**mean_std(values), "values": values, "negative_transfer": False}


def loss_gaps(
    logs: dict[str, dict[int, list[dict]]], tail: float = GAP_TAIL, *, modalities: Sequence[str]
) -> dict[str, dict]:
    """{method: seed_cell of the per-seed loss-curve gap (:func:`loss_gap`)}; for M > 2
    with ``"tail"``: {m: mean over seeds of :func:`tail_losses`} as well."""
    modalities = list(modalities)
    out = {}
    for method, per_seed in logs.items():
        gaps = [loss_gap(rows, tail, modalities=modalities) for rows in per_seed.values()]
        vals = [g for g in gaps if g is not None]
        if not vals:
            continue
        out[method] = seed_cell(vals)
        if len(modalities) > 2:
            tails = [
                t
                for rows in per_seed.values()
                if (t := tail_losses(rows, tail, modalities=modalities))
            ]
            out[method]["tail"] = {m: float(np.mean([t[m] for t in tails])) for m in modalities}
    return out


# -- gradient cosines and conflicts ------------------------------------------------------
def logs_kl_gradient(rows: list[dict], modalities: Sequence[str]) -> bool:
    """True when the strategy computed a KL gradient (so its cosines mean something).

    ``balgrad_unimodal_only`` (kl_weight = 0, no projection) logs zero cosines
    against a zero g_kl; those steps are neither conflicting nor not.
    """
    if not any(COS_RAW in r for r in rows):
        return False
    norms = [
        sum(r.get(BALGRAD.key("norm_kl", m), 1.0) for m in modalities) for r in rows if COS_RAW in r
    ]
    return any(n > 0 for n in norms)


def conflict_fraction(cosines: np.ndarray, threshold: float = 0.0) -> float:
    """Fraction of steps whose cosine is below ``-threshold`` (strictly)."""
    cosines = np.asarray(cosines, dtype=float)
    if len(cosines) == 0:
        return float("nan")
    return float(np.mean(cosines < -threshold))


def cosine_histogram(
    cosines: np.ndarray, bins: np.ndarray = COS_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of the cosines on fixed bins over [−1, 1]."""
    return np.histogram(np.clip(np.asarray(cosines, dtype=float), -1.0, 1.0), bins=bins)


def method_projects(
    method: str, method_options: dict | None = None, rows: list[dict] | None = None
) -> bool:
    """Whether ``method`` projects g_T away from g_kl: its strategy's ``project`` option
    (defaults, preset and the run's options); for a strategy without that option, or
    one not registered here, whether a step logged ``projected``."""
    try:
        opts = {**strategy_options(method), **(method_options or {}).get(method, {})}
    except ConfigError:  # a plug-in that is not installed here
        opts = {}
    if "project" in opts:
        return bool(opts["project"])
    return any(r.get(PROJECTED, 0) for r in rows or [])


def conflict_stats(
    logs: dict[str, dict[int, list[dict]]],
    method_options: dict | None = None,
    *,
    modalities: Sequence[str],
) -> dict[str, dict]:
    """Per method that logs the cosines (and computed a KL gradient): the per-seed
    fractions of steps with raw cos < 0 and with post-projection cos < −1e-6.

    {method: {"projects": bool, "steps": int, "raw": seed_cell, "projected": seed_cell}}
    """
    out = {}
    for method, per_seed in logs.items():
        raw, post, steps = [], [], 0
        for rows in per_seed.values():
            if not logs_kl_gradient(rows, modalities):
                continue
            raw.append(conflict_fraction(column(rows, COS_RAW)))
            post.append(conflict_fraction(column(rows, COS_PROJECTED), PROJECTED_TOL))
            steps += len(column(rows, COS_RAW))
        if raw:
            all_rows = [r for rows in per_seed.values() for r in rows]
            out[method] = {
                "projects": method_projects(method, method_options, all_rows),
                "steps": steps,
                "raw": seed_cell(raw),
                "projected": seed_cell(post),
            }
    return out


def pooled(per_seed: dict[int, list[dict]], key: str) -> np.ndarray:
    """``key`` over every seed's steps, concatenated."""
    parts = [column(rows, key) for rows in per_seed.values()]
    return np.concatenate(parts) if parts else np.zeros(0)


def cosine_series(
    logs: dict[str, dict[int, list[dict]]],
    method_options: dict | None = None,
    *,
    modalities: Sequence[str],
) -> list[tuple[str, np.ndarray]]:
    """The cosines of Fig. 7, pooled over seeds: the raw and post-projection cosines of
    each proposed method (registered ``role="proposed"``), then the raw cosines of each
    ablation without projection (BalGrad's "w/ reweighting")."""
    series = []
    for role in ("proposed", "ablation"):
        for m, per_seed in logs.items():
            kl = any(logs_kl_gradient(r, modalities) for r in per_seed.values())
            if method_role(m) != role or not kl:
                continue
            label = method_label(m)
            if role == "proposed":
                series.append((f"{label}, before projection", pooled(per_seed, COS_RAW)))
                series.append((f"{label}, after projection", pooled(per_seed, COS_PROJECTED)))
            elif not method_projects(
                m, method_options, [r for rs in per_seed.values() for r in rs]
            ):
                series.append((f"{label} (no projection)", pooled(per_seed, COS_RAW)))
    return [(name, v) for name, v in series if len(v)]


def write_cosine_histogram_csv(
    series: list[tuple[str, np.ndarray]], path: Path, bins: np.ndarray = COS_BINS
) -> Path:
    out = Table(["bin_low", "bin_high", *(name for name, _ in series)])
    counts = [cosine_histogram(v, bins)[0] for _, v in series]
    for i in range(len(bins) - 1):
        out.add(f"{bins[i]:.3f}", f"{bins[i + 1]:.3f}", *(int(c[i]) for c in counts))
    return out.write_csv(path)


# -- Table 3 ------------------------------------------------------------------------------
MS = ("mean", "std")


def _pct(cell: dict) -> dict:
    return {**cell, "mean": 100 * cell["mean"], "std": 100 * cell["std"]}


def write_conflict_table(
    stats: dict[str, dict],
    gaps: dict[str, dict | None],
    methods: list[str],
    out_dir: Path,
    metric: str,
) -> dict[str, Path]:
    """Table 3: per method, % of steps with cos(g_T, g_kl) < 0 before and after the
    projection, and the missing-modality ΔGap (``gaps[method]`` is an aggregate cell)."""
    out_dir = Path(out_dir)
    order = [m for m in methods if m in stats] + [m for m in stats if m not in methods]
    paths = {"conflicts_md": out_dir / "conflicts.md", "conflicts_csv": out_dir / "conflicts.csv"}
    intro = (
        "Fraction of training steps with conflicting gradients, cos(g_T, g_kl) < 0 (%), "
        f"and missing-modality ΔGap ({metric}, points); mean ± std over seeds."
    )
    md = Table(["Method", "Projection", "Steps", "Conflicting, raw (%)"])
    md.header += ["Conflicting, after projection (%)", "ΔGap"]
    stat_columns = ("conflict_raw", "conflict_projected", "gap")
    sheet = Table(["method", "projects", "steps", *(f"{c}_{k}" for c in stat_columns for k in MS)])
    for m in order:
        st, g = stats[m], gaps.get(m)
        raw, post = st["raw"], st["projected"]
        md.add(method_label(m), "yes" if st["projects"] else "no", st["steps"])
        md.rows[-1] += [format_cell(_pct(raw)), format_cell(_pct(post)), format_cell(g)]
        gap = ["", ""] if g is None else [f"{g[k]:.4f}" for k in MS]
        sheet.add(
            m,
            int(st["projects"]),
            st["steps"],
            *(f"{c[k]:.6f}" for c in (raw, post) for k in MS),
            *gap,
        )
    md.write_markdown(paths["conflicts_md"], [intro, ""])
    sheet.write_csv(paths["conflicts_csv"])
    return paths
