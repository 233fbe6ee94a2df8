"""Table 1 layout: conditions as rows, methods as columns, mean ± std over seeds. The rows
follow the run's modalities (:mod:`balgrad.report._layout`): per impairment each modality,
Avg and ΔGap, and for M > 2 each ``only_<m>``.

Written as Markdown, CSV and JSON. A ``*`` marks negative transfer (an impaired score
above the full score), as in the paper. Below it, each method's change versus the
reference (Baseline, joint training), paired by seed, with a 95% t-interval over seeds:
a method whose interval contains 0 made no significant change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from balgrad.atomic import write_text
from balgrad.evaluate._metrics import is_defined
from balgrad.evaluate._protocol import summarize, sweep_gaps
from balgrad.names import condition_name, parse_condition
from balgrad.report._grid import Table
from balgrad.report._layout import Layout, run_layout
from balgrad.report._stats import CONFIDENCE, mean_std, t_interval
from balgrad.strategies._registry import method_label, method_role
from balgrad.train._metrics_log import nan_to_null

NO_CHANGE = "no significant change"


def reference_method(methods: list[str]) -> str | None:
    """The method every other is compared to: the registered reference (joint training)
    when it ran, else the first method."""
    return next(
        (m for m in methods if method_role(m) == "reference"), methods[0] if methods else None
    )


def aggregate(
    results: list[dict], metric: str, layout: Layout | None = None
) -> dict[str, dict[str, dict]]:
    """{method: {row: {"mean", "std", "n", "values", "negative_transfer"}}} from eval.json
    payloads (``layout``: by default the one the payloads name, ``run_layout``).

    Table 1: each row (full, then per impairment each modality, Avg and ΔGap, and for
    M > 2 each ``only_<m>``) summarised per seed, then its mean and std (ddof 1; 0 for one
    seed) over the seeds. ``negative_transfer``: some seed scored an impaired condition
    above the full one.

    Args:
        results: eval.json payloads (:func:`load_results`).
        metric: The metric to tabulate (e.g. ``"accuracy"``).
        layout: The run's modalities; None to read them from ``results``.

    Returns:
        ``{method: {row key: cell}}``.

    Raises:
        BalgradError: Payloads whose modalities differ.
    """
    layout = layout or run_layout(results)
    by_method: dict[str, list[dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(
            summarize(r["conditions"], metric, layout.names)
        )
    out: dict[str, dict[str, dict]] = {}
    for method, summaries in by_method.items():
        rows = {}
        for key, _ in layout.rows():
            vals = [s[key] for s in summaries if key in s]
            if not vals:
                continue
            rows[key] = {
                **mean_std(vals),
                "values": vals,
                "negative_transfer": any(
                    s.get(f"{key}_negative_transfer", False) for s in summaries
                ),
            }
        out[method] = rows
    return out


def _curve(values: np.ndarray) -> dict[str, list[float]]:
    """Mean and std of each point over the seeds of [seeds, points]."""
    over_seeds = mean_std(values)
    return {"mean": over_seeds["mean"], "std": over_seeds["std"]}


def aggregate_sweep(results: list[dict], metric: str) -> dict[str, dict]:
    """{method: {"ratio": [...], "mean": [...], "std": [...], "modalities": {m: {"mean",
    "std"}}}}: ΔGap versus r, and each ``missing_<m>`` score versus r (over seeds)."""
    by_method: dict[str, list[dict]] = {}
    for r in results:
        if "sweep" in r:
            by_method.setdefault(r["method"], []).append(r["sweep"])
    out = {}
    for method, sweeps in by_method.items():
        curves = [sweep_gaps(sw, metric) for sw in sweeps]
        ratios = [x for x, _ in curves[0]]
        gaps = np.array([[g for _, g in c] for c in curves])
        parsed = (parse_condition(k) for k in sweeps[0][0])
        names = [p[1] for p in parsed if p is not None and p[0] == "missing"]
        scores = {
            m: np.array(
                [[row[condition_name("missing", m)][metric] for row in sw] for sw in sweeps],
                dtype=float,
            )
            for m in names
        }
        out[method] = {
            "ratio": ratios,
            **_curve(gaps),
            "modalities": {m: _curve(v) for m, v in scores.items()},
        }
    return out


def per_seed_rows(
    results: list[dict], metric: str, layout: Layout | None = None
) -> dict[str, dict[int, dict]]:
    """{method: {seed: Table 1 rows of that run}} from eval.json payloads."""
    names = (layout or run_layout(results)).names
    out: dict[str, dict[int, dict]] = {}
    for r in results:
        out.setdefault(r["method"], {})[int(r["seed"])] = summarize(r["conditions"], metric, names)
    return out


def paired_change(rows: dict[str, dict[int, dict]], a: str, b: str, key: str) -> dict | None:
    """(a − b) on row ``key`` over the seeds both methods ran: :func:`t_interval` of the
    per-seed differences, plus their ``values`` and ``seeds``."""
    seeds = sorted(s for s in set(rows.get(a, {})) & set(rows.get(b, {})))
    seeds = [s for s in seeds if key in rows[a][s] and key in rows[b][s]]
    if not seeds:
        return None
    diffs = [float(rows[a][s][key] - rows[b][s][key]) for s in seeds]
    return {**t_interval(diffs), "values": diffs, "seeds": seeds}


def paired_table(
    results: list[dict],
    metric: str,
    methods: list[str],
    reference: str | None = None,
    layout: Layout | None = None,
) -> dict[str, dict[str, dict]]:
    """{method: {row: paired change versus ``reference``}} for every other method
    (``reference``: by default the registered reference method, see ``reference_method``)
    on the rows of ``Layout.paired_rows``.

    A cell is the mean of the per-seed differences (method − reference) over the seeds
    both ran, with its 95% t-interval: ``{"mean", "std", "n", "low", "high",
    "significant", "values", "seeds"}`` (``low``, ``high`` and ``significant`` are None
    for one seed).

    Args:
        results: eval.json payloads (:func:`load_results`).
        metric: The metric compared.
        methods: The methods; the reference among them is not compared with itself.
        reference: The method compared against; None for the registered reference (joint
            training) where it ran, else the first method.
        layout: The run's modalities; None to read them from ``results``.

    Returns:
        ``{method: {row key: cell}}``; empty when the reference has no results.
    """
    reference = reference or reference_method(methods)
    layout = layout or run_layout(results)
    rows = per_seed_rows(results, metric, layout)
    out: dict[str, dict[str, dict]] = {}
    for m in methods:
        if m == reference or m not in rows or reference not in rows:
            continue
        cells = {key: paired_change(rows, m, reference, key) for key, _ in layout.paired_rows()}
        out[m] = {k: v for k, v in cells.items() if v is not None}
    return out


UNDEFINED = "n/a"


def number(x: float | None, spec: str) -> str:
    """``x`` formatted, or "n/a" for an undefined score (NaN or null)."""
    return format(x, spec) if is_defined(x) else UNDEFINED


def format_change(cell: dict | None, digits: int = 2, short: bool = True) -> str:
    """``+1.23 [+0.40, +2.06]``; with the interval containing 0, ``n.s.`` (short) or
    "no significant change"; a single seed gives the bare difference; "n/a" where a
    score is undefined.

    Args:
        cell: A :func:`paired_table` cell, or None for "–" (no such row).
        digits: Decimals.
        short: ``n.s.`` rather than ", no significant change".

    Returns:
        The cell's text.

    Example:
        >>> from balgrad.report import format_change
        >>> cell = {"mean": 1.5, "n": 3, "low": -0.2, "high": 3.2, "significant": False}
        >>> format_change(cell)
        '+1.50 [-0.20, +3.20] n.s.'
    """
    if cell is None:
        return "–"
    if not is_defined(cell["mean"]):
        return UNDEFINED
    text = f"{cell['mean']:+.{digits}f}"
    if cell["n"] < 2:
        return text
    text += f" [{cell['low']:+.{digits}f}, {cell['high']:+.{digits}f}]"
    if not cell["significant"]:
        text += " n.s." if short else f", {NO_CHANGE}"
    return text


def paired_markdown(
    paired: dict[str, dict[str, dict]],
    methods: list[str],
    reference: str | None = None,
    *,
    rows: list[tuple[str, str]],
) -> str:
    """The paired comparison as Markdown (empty when there is nothing to compare)."""
    cols = [m for m in methods if m in paired]
    if not cols:
        return ""
    ref = method_label(reference or reference_method(methods))
    n = max(c["n"] for m in cols for c in paired[m].values())
    if n < 2:
        return (
            f"Change versus {ref}: one seed, so no interval can be computed "
            "(run several seeds, e.g. `--seeds 0 1 2 3 4`).\n"
        )
    intro = (
        f"Change versus {ref}, paired by seed (mean of the per-seed differences in points, "
        f"[{CONFIDENCE:.0%} t-interval over {n} seeds]; n.s. = {NO_CHANGE}: the interval "
        "contains 0; for ΔGap a negative change is more balanced):"
    )
    return f"{intro}\n\n{condition_table(paired, cols, rows, format_change).markdown()}\n"


#: the legend of the ``*`` that :func:`format_cell` puts on a negative-transfer score
NEGATIVE_TRANSFER_NOTE = (
    "A score marked * shows negative transfer: it is above the same method's Full score "
    "although a modality was impaired."
)


def format_cell(cell: dict | None, digits: int = 2) -> str:
    """A Table 1 cell as text: ``mean ± std`` (the mean alone for one seed), with a ``*``
    for negative transfer; "n/a" for an undefined score, "–" for no cell.

    Args:
        cell: An :func:`aggregate` cell, or None.
        digits: Decimals.

    Returns:
        The cell's text.

    Example:
        >>> from balgrad.report import format_cell
        >>> format_cell({"mean": 71.234, "std": 0.5, "n": 3, "negative_transfer": True})
        '71.23 ± 0.50*'
    """
    if cell is None:
        return "–"
    if not is_defined(cell["mean"]):
        return UNDEFINED
    text = f"{cell['mean']:.{digits}f}"
    if cell["n"] > 1:
        text += f" ± {cell['std']:.{digits}f}"
    if cell["negative_transfer"]:
        text += "*"
    return text


def csv_cell(cell: dict | None) -> list[str]:
    """mean and std for a CSV row: empty for a method without the row, "n/a" (which
    pandas reads as missing) for an undefined score."""
    if cell is None:
        return ["", ""]
    return [number(cell["mean"], ".4f"), number(cell["std"], ".4f")]


def _present(table: dict, methods: list[str], rows, every: bool):
    return [(k, label) for k, label in rows if every or any(k in table.get(m, {}) for m in methods)]


def condition_table(table: dict, methods: list[str], rows, fmt=format_cell, every=False) -> Table:
    """Conditions as rows (those some method has, or ``every`` one), methods as columns,
    each cell ``fmt(cell)``."""
    out = Table(["Condition", *(method_label(m) for m in methods)])
    for key, label in _present(table, methods, rows, every):
        out.add(label, *(fmt(table.get(m, {}).get(key)) for m in methods))
    return out


def condition_csv(table: dict, methods: list[str], rows, every: bool = False) -> Table:
    """:func:`condition_table` for a CSV: the row keys, and a mean and a std column per method."""
    out = Table(["condition", *(f"{m}_{s}" for m in methods for s in ("mean", "std"))])
    for key, _ in _present(table, methods, rows, every):
        out.add(key, *(x for m in methods for x in csv_cell(table.get(m, {}).get(key))))
    return out


def markdown_table(
    table: dict[str, dict[str, dict]],
    methods: list[str],
    title: str = "",
    *,
    rows: list[tuple[str, str]],
) -> str:
    lines = [title, ""] if title else []
    lines.append(condition_table(table, methods, rows).markdown())
    cells = [c for m in methods for c in table.get(m, {}).values() if c]
    if any(c.get("negative_transfer") for c in cells):
        lines += ["", NEGATIVE_TRANSFER_NOTE]
    return "\n".join(lines) + "\n"


def write_tables(
    table: dict,
    methods: list[str],
    out_dir: Path,
    metric: str,
    title: str,
    paired: dict[str, dict[str, dict]] | None = None,
    reference: str | None = None,
    *,
    layout: Layout,
) -> dict[str, Path]:
    """table.md (Table 1, then the paired comparison), table.csv (Table 1), table.json (both;
    with the run's ``modalities`` and ``noise`` unless it is the (image, text) run).

    An undefined score is "n/a" in table.md and table.csv, null in table.json; a ``*``
    in table.md is explained below the table.

    Args:
        table: Table 1 (:func:`aggregate`).
        methods: The methods, in column order.
        out_dir: The folder written into (the run folder).
        metric: The metric tabulated.
        title: The line above Table 1 in table.md.
        paired: The paired comparison (:func:`paired_table`), or None to leave it out.
        reference: Its reference method; None for the registered reference where it ran,
            else the first method.
        layout: The run's modalities (the rows).

    Returns:
        ``{"md": path, "csv": path, "json": path}``.

    Raises:
        WriteError: A file cannot be written.
    """
    reference = reference or reference_method(methods)
    rows = layout.rows()
    out_dir = Path(out_dir)
    paths = {
        "md": out_dir / "table.md",
        "csv": out_dir / "table.csv",
        "json": out_dir / "table.json",
    }
    md = markdown_table(table, methods, title, rows=rows)
    if paired:
        md += "\n" + paired_markdown(paired, methods, reference, rows=layout.paired_rows())
    write_text(paths["md"], md)
    condition_csv(table, methods, rows).write_csv(paths["csv"])
    payload = {"metric": metric, "methods": methods, "table": table}
    if not layout.legacy:
        payload.update({"modalities": layout.modalities, "noise": layout.noise})
    if paired:
        payload.update({"reference": reference, "confidence": CONFIDENCE, "paired": paired})
    write_text(paths["json"], json.dumps(nan_to_null(payload), indent=2))  # undefined: null
    return paths
