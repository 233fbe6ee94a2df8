"""Everything drawn from a finished run folder: tables, figures, summary."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from balgrad.report.plots import plot_gap_vs_ratio
from balgrad.report.tables import aggregate, aggregate_sweep, write_tables


def load_results(run_dir: Path, methods: list[str] | None = None, seeds: list[int] | None = None) -> list[dict]:
    results = []
    for path in sorted(Path(run_dir).glob("*/seed*/eval.json")):
        r = json.loads(path.read_text())
        if methods is not None and r["method"] not in methods:
            continue
        if seeds is not None and r["seed"] not in seeds:
            continue
        results.append(r)
    return results


def build_report(run_dir: Path, methods: list[str] | None = None, seeds: list[int] | None = None) -> dict:
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    methods = methods or cfg["methods"]
    seeds = seeds or cfg["seeds"]
    results = load_results(run_dir, methods, seeds)
    if not results:
        from balgrad.errors import BalgradError

        raise BalgradError(f"report: no eval.json under {run_dir}; nothing to report")
    present = [m for m in methods if any(r["method"] == m for r in results)]
    metric = _primary_metric(cfg, results)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    table = aggregate(results, metric)
    n_seeds = len({r["seed"] for r in results})
    title = f"{cfg['dataset']}: {metric} (%), {n_seeds} seed{'s' if n_seeds > 1 else ''}" + (" (mean ± std)" if n_seeds > 1 else "")
    paths = write_tables(table, present, run_dir, metric, title)
    curves = aggregate_sweep(results, metric)
    if curves:
        paths["gap_vs_ratio"] = plot_gap_vs_ratio(curves, run_dir / "gap_vs_ratio.png", metric, f"{cfg['dataset']}: ΔGap vs missing ratio")
    return {"table": table, "paths": paths, "metric": metric}


def _primary_metric(cfg: dict, results: list[dict]) -> str:
    if results[0].get("primary_metric"):
        return results[0]["primary_metric"]
    metrics = list(results[0]["conditions"]["full"].keys())
    for m in ("auroc", "f1_macro", "accuracy"):
        if m in metrics:
            return m
    return [m for m in metrics if m != "condition"][0]
