"""Everything drawn from a finished run folder: tables, figures, summary."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from balgrad.atomic import write_text
from balgrad.data._kinds import KINDS
from balgrad.evaluate._metrics import is_defined
from balgrad.report import _diagnostics as diag
from balgrad.report._figures import plot_condition_bars, plot_cosine_histograms, plot_loss_curves
from balgrad.report._layout import Layout, run_layout
from balgrad.report._plots import plot_gap_vs_ratio
from balgrad.report._runfiles import read_config_mapping, read_eval
from balgrad.report._summary import has_ablation, write_ablation_table, write_summary
from balgrad.report._tables import (
    aggregate,
    aggregate_sweep,
    paired_table,
    reference_method,
    write_tables,
)
from balgrad.train._metrics_log import nan_to_null

log = logging.getLogger("balgrad.report")


def load_results(
    run_dir: Path, methods: list[str] | None = None, seeds: list[int] | None = None
) -> list[dict]:
    """The eval.json payloads, an undefined score (null) read back as NaN.

    Args:
        run_dir: A run folder (its ``<method>/seed<k>/eval.json`` files are read).
        methods: Only these methods; None for every one found.
        seeds: Only these seeds; None for every one found.

    Returns:
        One payload per run, in path order (:func:`read_eval`'s, in the current schema).

    Raises:
        RunFileError: A damaged eval.json (it names the file and the way out).
    """
    results = []
    for path in sorted(Path(run_dir).glob("*/seed*/eval.json")):
        r = read_eval(path)  # a damaged one is an error naming it and the way out
        if methods is not None and r["method"] not in methods:
            continue
        if seeds is not None and r["seed"] not in seeds:
            continue
        for scores in _score_dicts(r):
            scores.update({k: math.nan for k, v in scores.items() if v is None})
        results.append(r)
    return results


def _score_dicts(result: dict) -> list[dict]:
    rows = result.get("sweep") or []
    return [
        *(result.get("conditions") or {}).values(),
        *(v for row in rows for k, v in row.items() if k.startswith("missing_")),
    ]


def _warn_undefined(results: list[dict], metric: str) -> None:
    """One warning per run whose ``metric`` is undefined in some condition (n/a in the tables)."""
    for r in results:
        where = [
            role for role, s in (r.get("conditions") or {}).items() if not is_defined(s.get(metric))
        ]
        if where:
            log.warning(
                "report: %s of %s seed %s is undefined on the test split (%s), shown as n/a; "
                "e.g. AUROC of a split with one class",
                metric,
                r["method"],
                r["seed"],
                ", ".join(where),
            )


def expected_roles(layout: Layout) -> list[str]:
    """The conditions the protocol scores for ``layout``'s modalities (as
    :meth:`balgrad.evaluate._protocol.ProtocolConfig.table_conditions` makes them)."""
    roles = ["full", *(f"missing_{m}" for m in layout.names)]
    for m, kind in layout.modalities.items():
        known = KINDS.get(kind)  # a plug-in's kind not installed here: no noisy row known
        if known is not None and known.has_noise:
            roles.append(f"noisy_{m}")
    if layout.has_only:
        roles += [f"only_{m}" for m in layout.names]
    return roles


def _warn_missing(results: list[dict], layout: Layout) -> None:
    """One warning per run whose eval.json lacks a condition of the protocol (its rows
    show "–" in the tables, and its Avg and ΔGap cover the modalities it has)."""
    roles = expected_roles(layout)
    for r in results:
        missing = [role for role in roles if role not in (r.get("conditions") or {})]
        if missing:
            log.warning(
                "report: the eval.json of %s seed %s has no condition %s, shown as –; run "
                "`balgrad evaluate` on the run folder to score it",
                r["method"],
                r["seed"],
                ", ".join(missing),
            )


def build_report(
    run_dir: Path,
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    draw: bool = True,
) -> dict:
    """Tables (Table 1, 2, 3), figures (Fig. 2a, 2b/6, 4, 7) and ``report.md`` of a run folder.

    Returns {"table", "paths", "metric", "summary" (report.md's text), "conflicts",
    "loss_gaps"}. ``draw=False`` writes the tables and report.md but no figures.

    Also writes ``results.json`` (every payload). The tables and figures follow the run's
    modalities, whatever their number (``protocol.modalities`` of the eval.json files).

    Args:
        run_dir: A run folder with a ``config.yaml`` and at least one eval.json.
        methods: The methods to report, in column order; None for the config's.
        seeds: The seeds to report; None for the config's.
        draw: Draw the figures (matplotlib).

    Returns:
        A dict: ``table`` (:func:`aggregate`'s), ``paired`` (:func:`paired_table`'s),
        ``paths`` (name -> file written), ``metric`` (the primary metric), ``summary``
        (report.md's text), ``conflicts`` (the gradient-conflict statistics) and
        ``loss_gaps`` (the per-modality loss gaps).

    Raises:
        RunFileError: A damaged ``config.yaml`` or eval.json.
        BalgradError: No eval.json to report, or runs whose modalities differ.
        WriteError: A file cannot be written.

    Example:
        >>> from balgrad.report import build_report
        >>> out = build_report("runs/digits-demo", draw=False)  # doctest: +SKIP
        >>> print(out["paths"]["md"].read_text())  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    cfg = read_config_mapping(run_dir / "config.yaml")
    methods = methods or cfg["methods"]
    seeds = seeds or cfg["seeds"]
    results = load_results(run_dir, methods, seeds)
    if not results:
        from balgrad.errors import BalgradError

        raise BalgradError(f"report: no eval.json under {run_dir}; nothing to report")
    present = [m for m in methods if any(r["method"] == m for r in results)]
    metric = _primary_metric(cfg, results)
    _warn_undefined(results, metric)
    write_text(run_dir / "results.json", json.dumps(nan_to_null(results), indent=2))
    layout = run_layout(results)
    _warn_missing(results, layout)
    table = aggregate(results, metric, layout)
    n_seeds = len({r["seed"] for r in results})
    title = f"{cfg['dataset']}: {metric} (%), {n_seeds} seed{'s' if n_seeds > 1 else ''}" + (
        " (mean ± std)" if n_seeds > 1 else ""
    )
    reference = reference_method(present)
    paired = paired_table(results, metric, present, reference, layout)
    paths = write_tables(table, present, run_dir, metric, title, paired, reference, layout=layout)
    curves = aggregate_sweep(results, metric)
    figures: dict[str, Path] = {}
    if curves and draw:
        figures["gap_vs_ratio"] = plot_gap_vs_ratio(
            curves, run_dir / "gap_vs_ratio.png", metric, f"{cfg['dataset']}: ΔGap vs missing ratio"
        )
    elif not curves:
        # re-evaluated without the sweep: an older curve would no longer match the tables
        (run_dir / "gap_vs_ratio.png").unlink(missing_ok=True)
    out = {"table": table, "paths": paths, "metric": metric, "paired": paired}
    seeds_run = sorted({int(r["seed"]) for r in results})
    out.update(
        _diagnostics(
            run_dir, cfg, present, seeds_run, results, table, metric, figures, paths, draw, layout
        )
    )
    paths.update(figures)
    return out


def _diagnostics(
    run_dir: Path,
    cfg: dict,
    methods: list[str],
    seeds: list[int],
    results: list[dict],
    table: dict,
    metric: str,
    figures: dict[str, Path],
    paths: dict[str, Path],
    draw: bool = True,
    layout: Layout | None = None,
) -> dict:
    """Fig. 2a, 2b/6, 7, Tables 2 and 3, and ``report.md`` (figures of methods absent from
    the run, or without step logs, are skipped)."""
    dataset = cfg["dataset"]
    layout = layout or run_layout(results)
    if draw:
        figures["condition_bars"] = _condition_bars(
            run_dir, dataset, table, methods, metric, layout
        )
    tables = {"table": paths["md"]}
    if has_ablation(table):  # Table 2 needs more than the reference
        tables.update(write_ablation_table(table, run_dir, metric, layout=layout))
    logs = diag.load_step_logs(run_dir, methods, seeds)
    loss_gaps = diag.loss_gaps(logs, modalities=layout.names)
    if draw and (curves := _loss_curves(logs, methods, layout)):
        title = f"{dataset}: per-modality training loss"
        figures["loss_curves"] = plot_loss_curves(
            curves, loss_gaps, run_dir / "loss_curves.png", title
        )
    options = cfg.get("method_options") or {}
    figs = figures if draw else None
    conflicts = _gradient_outputs(
        run_dir, logs, options, table, methods, metric, layout, figs, tables
    )
    if not logs:
        log.info(
            "report: no metrics.jsonl under %s; no loss curves or gradient diagnostics", run_dir
        )
    summary = write_summary(
        run_dir,
        dataset=dataset,
        metric=metric,
        methods=methods,
        seeds=seeds,
        table=table,
        results=results,
        conflicts=conflicts,
        loss_gaps=loss_gaps,
        figures=figures,
        tables=tables,
        layout=layout,
    )
    paths.update({k: v for k, v in tables.items() if k != "table"})
    paths["report"] = run_dir / "report.md"
    return {"summary": summary, "conflicts": conflicts, "loss_gaps": loss_gaps}


def _condition_bars(
    run_dir: Path, dataset: str, table: dict, methods: list[str], metric: str, layout: Layout
) -> Path:
    """Fig. 2a: the scores per condition, with their spread over seeds where there is one."""
    n_seeds = max((c["n"] for rows in table.values() for c in rows.values()), default=1)
    spread = "std over seeds" if n_seeds > 1 else "1 seed: no spread to show"
    title = f"{dataset}: {metric} per condition ({spread})"
    return plot_condition_bars(
        table, methods, run_dir / "condition_bars.png", metric, title, layout=layout
    )


def _loss_curves(logs: dict, methods: list[str], layout: Layout) -> dict:
    """Each method's smoothed per-modality loss curves (Fig. 2b, 6), where it logged them."""
    curves = {m: diag.loss_curves(logs[m], modalities=layout.names) for m in methods if m in logs}
    return {m: c for m, c in curves.items() if c is not None}


def _gradient_outputs(
    run_dir: Path,
    logs: dict,
    options: dict,
    table: dict,
    methods: list[str],
    metric: str,
    layout: Layout,
    figures: dict[str, Path] | None,
    tables: dict[str, Path],
) -> dict:
    """Fig. 7 (into ``figures``, unless None) and its CSV and Table 3 (into ``tables``)
    from the logged gradient cosines; returns
    :func:`~balgrad.report._diagnostics.conflict_stats`."""
    series = diag.cosine_series(logs, options, modalities=layout.names)
    if series and figures is not None:
        figures["cosine_histogram"] = plot_cosine_histograms(
            series, run_dir / "cosine_histogram.png"
        )
    if series:
        tables["cosine_histogram_csv"] = diag.write_cosine_histogram_csv(
            series, run_dir / "cosine_histogram.csv"
        )
    stats = diag.conflict_stats(logs, options, modalities=layout.names)
    if stats:
        gaps = {m: table.get(m, {}).get("missing_gap") for m in stats}
        tables.update(diag.write_conflict_table(stats, gaps, methods, run_dir, metric))
    return stats


def _primary_metric(cfg: dict, results: list[dict]) -> str:
    if results[0].get("primary_metric"):
        return results[0]["primary_metric"]
    metrics = list(results[0]["conditions"]["full"].keys())
    for m in ("auroc", "f1_macro", "accuracy"):
        if m in metrics:
            return m
    return [m for m in metrics if m != "condition"][0]
