"""The ablation table (paper Table 2 layout) and the run's ``report.md``: a short,
factual "what this run shows", generated from the numbers in the run folder.

Two modalities (a, b): the dominant one is the one whose absence costs more
(``missing_b`` is the a-only score). More (M > 2): it is read from the ``only_<m>``
scores, every other modality missing: the modality that alone scores highest dominated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from balgrad.atomic import write_text
from balgrad.evaluate._metrics import is_defined
from balgrad.names import condition_name
from balgrad.report._layout import Layout
from balgrad.report._stats import mean_std
from balgrad.report._tables import (
    CONFIDENCE,
    NO_CHANGE,
    condition_csv,
    condition_table,
    format_change,
    method_label,
    number,
    paired_change,
    paired_table,
    per_seed_rows,
    reference_method,
)
from balgrad.strategies._registry import (
    ablation_order,
    default_methods,
    method_description,
    method_role,
)


def ablation_columns(methods) -> list[str]:
    """Table 2's columns among ``methods``, in their registered ``ablation_order``."""
    return sorted((m for m in methods if ablation_order(m) is not None), key=ablation_order)


def has_ablation(methods) -> bool:
    """Whether Table 2 has something beside the reference: an ablation or the method."""
    return any(method_role(m) != "reference" for m in ablation_columns(methods))


def __getattr__(name: str):
    if name == "ABLATION_METHODS":  # Table 2's built-in columns, in the paper's order
        return ablation_columns(default_methods())
    raise AttributeError(name)


def write_ablation_table(
    table: dict[str, dict[str, dict]],
    out_dir: Path,
    metric: str,
    title: str = "",
    *,
    layout: Layout,
) -> dict[str, Path]:
    """Table 2 (missing modality) as Markdown and CSV; columns absent from the run are skipped."""
    rows = layout.ablation_rows()
    out_dir = Path(out_dir)
    methods = ablation_columns(table)
    paths = {"ablation_md": out_dir / "ablation.md", "ablation_csv": out_dir / "ablation.csv"}
    n_seeds = max((c["n"] for m in methods for c in table[m].values() if c), default=1)
    spread = "; mean ± std over seeds" if n_seeds > 1 else "; 1 seed"
    above = [title or f"Ablation, missing modality ({metric}, %{spread})", ""]
    condition_table(table, methods, rows, every=True).write_markdown(paths["ablation_md"], above)
    condition_csv(table, methods, rows, every=True).write_csv(paths["ablation_csv"])
    return paths


# -- report.md ----------------------------------------------------------------------------
def _pm(cell: dict | None, digits: int = 1) -> str:
    if cell is None or not is_defined(cell["mean"]):
        return "n/a"
    text = f"{cell['mean']:.{digits}f}"
    return text + (f" ± {number(cell['std'], f'.{digits}f')}" if cell.get("n", 1) > 1 else "")


def _signed(x: float, digits: int = 1) -> str:
    return number(x, f"+.{digits}f")


def dominance(
    table: dict[str, dict[str, dict]], reference: str | None = None, *, layout: Layout
) -> dict | None:
    """Which of two modalities (a, b) dominated ``reference`` (default:
    :func:`reference_method`): the one whose absence costs the most.

    ``missing_b`` is the a-only score and ``missing_a`` the b-only score; the lower of
    the two marks the absent modality the model relied on.
    Returns {"method", "modalities" [a, b], "alone" {m: cell}, "dominant" (a, b or
    None), "gap", "diff" (a-only − b-only), "consistent_seeds", "n_seeds"} or None when
    the rows are missing.
    """
    reference = reference or reference_method(list(table))
    a, b = layout.names
    cells = table.get(reference, {})
    a_only, b_only = (
        cells.get(condition_name("missing", b)),
        cells.get(condition_name("missing", a)),
    )
    if a_only is None or b_only is None:
        return None
    diff = np.array(a_only["values"], dtype=float) - np.array(b_only["values"], dtype=float)
    spread = mean_std(diff)
    mean = spread["mean"]
    dominant = b if mean < 0 else a if mean > 0 else None
    same = int(np.sum(np.sign(diff) == np.sign(mean))) if dominant else 0
    return {
        "method": reference,
        "modalities": [a, b],
        "alone": {a: a_only, b: b_only},
        "dominant": dominant,
        "full": cells.get("full"),
        "gap": cells.get("missing_gap"),
        "diff": mean,
        "diff_std": spread["std"],
        "consistent_seeds": same,
        "n_seeds": len(diff),
    }


def _where(method: str) -> str:
    return (
        "under joint training"
        if method_role(method) == "reference"
        else f"under {method_label(method)} (joint training is not in this run)"
    )


def _dominance_text(d: dict, metric: str) -> list[str]:
    a, b = d["modalities"]
    lines = [
        f"Full-input {metric} {_where(d['method'])} was {_pm(d['full'])}%. With the {b} removed "
        f"({a} only) it was {_pm(d['alone'][a])}%; with the {a} removed ({b} only) it was "
        f"{_pm(d['alone'][b])}%."
    ]
    if d["dominant"] is None:
        lines.append("Neither modality dominated: both single-modality scores were equal (ΔGap 0).")
        return lines
    weak = a if d["dominant"] == b else b
    lines.append(
        f"The **{d['dominant']}** modality dominated: the model lost more without it, and the "
        f"{weak}-only score was {abs(d['diff']):.1f} points lower than the {d['dominant']}-only score "
        f"(ΔGap {_pm(d['gap'])} points)."
    )
    if d["n_seeds"] > 1:
        spread = (
            " (the difference is within one seed std)" if abs(d["diff"]) <= d["diff_std"] else ""
        )
        lines.append(
            f"The direction held in {d['consistent_seeds']} of {d['n_seeds']} seeds{spread}."
        )
    return lines


# -- dominance for M > 2: the only_<m> scores ---------------------------------------------
def alone_rows(layout: Layout, cells: dict) -> tuple[str, dict[str, str]]:
    """("only", {m: row}) where every ``only_<m>`` was evaluated, else ("missing", {m:
    ``missing_<m>``}) (without the ``only_<m>`` conditions, the modality whose absence costs the
    most is the one relied on)."""
    only = {m: condition_name("only", m) for m in layout.names}
    if all(k in cells for k in only.values()):
        return "only", only
    return "missing", {m: condition_name("missing", m) for m in layout.names}


def spread_rows(rows: dict[str, dict[int, dict]], keys: dict[str, str]) -> dict:
    """{method: {seed: {"spread": max − min of the ``keys`` rows, "top": the modality
    highest}}} of per-seed Table 1 rows (seeds without every row are left out)."""
    out: dict[str, dict[int, dict]] = {}
    for method, by_seed in rows.items():
        for seed, row in by_seed.items():
            if all(k in row for k in keys.values()):
                vals = {m: float(row[k]) for m, k in keys.items()}
                top = max(vals, key=vals.get)
                out.setdefault(method, {})[seed] = {
                    "spread": max(vals.values()) - min(vals.values()),
                    "top": top,
                }
    return out


def dominance_many(
    table: dict[str, dict[str, dict]],
    rows: dict[str, dict[int, dict]],
    method: str,
    layout: Layout,
) -> dict | None:
    """Which modality dominated ``method`` among M > 2: with the ``only_<m>`` scores, the
    one that alone scores highest (``weakest``: lowest); without them, the one whose
    absence costs the most. Returns {"method", "source" (``"only"`` or ``"missing"``), "alone"
    {m: cell}, "dominant", "weakest", "diff" (their difference of means), "spread"
    (mean_std over seeds of max − min), "consistent_seeds", "n_seeds"} or None."""
    cells = table.get(method, {})
    source, keys = alone_rows(layout, cells)
    if not all(k in cells for k in keys.values()):
        return None
    means = {m: cells[k]["mean"] for m, k in keys.items()}
    order = sorted(means, key=means.get, reverse=source == "only")
    top, bottom = order[0], order[-1]
    per_seed = spread_rows({method: rows.get(method, {})}, keys).get(method, {})
    spreads = [v["spread"] for v in per_seed.values()]
    if source == "missing":  # the lowest missing_<m> score marks the modality relied on
        tops = [min(layout.names, key=lambda m: rows[method][s][keys[m]]) for s in per_seed]
    else:
        tops = [v["top"] for v in per_seed.values()]
    dominant = None if means[top] == means[bottom] else top
    return {
        "method": method,
        "source": source,
        "alone": {m: cells[k] for m, k in keys.items()},
        "dominant": dominant,
        "weakest": bottom if dominant else None,
        "diff": abs(means[top] - means[bottom]),
        "spread": {**mean_std(spreads), "values": spreads} if spreads else None,
        "consistent_seeds": sum(t == dominant for t in tops),
        "n_seeds": len(tops),
    }


def _alone_list(d: dict) -> str:
    return ", ".join(f"{m} {_pm(c)}%" for m, c in d["alone"].items())


def _dominance_many_text(d: dict, metric: str, full: dict | None) -> list[str]:
    if d["source"] == "only":
        lines = [
            f"Full-input {metric} {_where(d['method'])} was {_pm(full)}%. Each modality alone "
            f"(every other one missing): {_alone_list(d)}."
        ]
    else:
        lines = [
            f"Full-input {metric} {_where(d['method'])} was {_pm(full)}%. The only_<m> "
            f"conditions were not evaluated; with one modality missing: {_alone_list(d)}."
        ]
    if d["dominant"] is None:
        lines.append("No modality dominated: the single-modality scores were all equal.")
        return lines
    spread = f" (spread max − min {_pm(d['spread'])} points)" if d["spread"] else ""
    if d["source"] == "only":
        lines.append(
            f"The **{d['dominant']}** modality dominated: alone it scored highest, "
            f"{d['diff']:.1f} points above the weakest, {d['weakest']}{spread}."
        )
        held = "The same modality scored highest alone"
    else:
        lines.append(
            f"The **{d['dominant']}** modality dominated: the model lost the most without it, "
            f"{d['diff']:.1f} points more than without {d['weakest']}{spread}."
        )
        held = "Its absence cost the most"
    if d["n_seeds"] > 1:
        lines.append(f"{held} in {d['consistent_seeds']} of {d['n_seeds']} seeds.")
    return lines


def _dominance_many_methods(
    table: dict, rows: dict, methods: list[str], ref: str, layout: Layout
) -> list[str]:
    """Under each other method: its single-modality scores, the modality on top, and the
    spread's paired change versus ``ref``."""
    lines = []
    spreads = None
    for m in methods:
        if m == ref:
            continue
        d = dominance_many(table, rows, m, layout)
        if d is None:
            continue
        if spreads is None:
            spreads = spread_rows(rows, alone_rows(layout, table.get(m, {}))[1])
        top = f"highest {d['dominant']}" if d["dominant"] else "all equal"
        text = f"- Under {method_label(m)}: {_alone_list(d)}; {top}"
        if d["spread"]:
            text += f", spread {_pm(d['spread'])} points"
            change = paired_change(spreads, m, ref, "spread")
            if change is not None and ref in spreads:
                text += f" ({format_change(change, 1, short=False)} versus {method_label(ref)})"
        lines.append(text + ".")
    return lines


def _method_lines(
    table: dict, paired: dict, methods: list[str], ref: str, rows: list[tuple[str, str]]
) -> list[str]:
    """One line per method: its scores and its paired change versus ``ref`` per row."""
    lines: list[str] = []
    better: dict[str, list[str]] = {"missing_gap": [], "missing_avg": [], "full": []}
    unchanged: list[str] = []
    for m in methods:
        if m == ref or m not in paired:
            continue
        parts = []
        for key, name in rows:
            d = paired[m].get(key)
            if d is None or table[m].get(key) is None:
                continue
            parts.append(f"{name} {_pm(table[m][key])} ({format_change(d, 1, short=False)})")
            improved = (d["mean"] < 0) == (key == "missing_gap")  # lower ΔGap, higher score
            if d["significant"] and key in better and improved:
                better[key].append(method_label(m))
        if not parts:
            continue
        lines.append(f"- {method_label(m)}: " + "; ".join(parts) + ".")
        if all(not d["significant"] for d in paired[m].values() if d["n"] > 1):
            unchanged.append(method_label(m))
    if not lines:
        return lines
    n = max(d["n"] for m in paired for d in paired[m].values())
    label = method_label(ref)
    lines.append("")
    if n < 2:
        lines.append(
            f"One seed: no interval can be computed, so no change versus {label} can be called "
            "significant (run several seeds, e.g. `--seeds 0 1 2 3 4`)."
        )
        return lines
    lines.append(
        f"Significantly lower missing ΔGap than {label} (interval below 0): "
        f"{', '.join(better['missing_gap']) or 'none'}. Significantly higher missing Avg: "
        f"{', '.join(better['missing_avg']) or 'none'}. Significantly higher Full: "
        f"{', '.join(better['full']) or 'none'}."
    )
    if unchanged:
        lines.append(f"No significant change in any row: {', '.join(unchanged)}.")
    return lines


def _pct(cell: dict) -> str:
    return (
        f"{100 * cell['mean']:.1f}" + (f" ± {100 * cell['std']:.1f}" if cell["n"] > 1 else "") + "%"
    )


def _conflict_lines(conflicts: dict[str, dict], methods: list[str]) -> list[str]:
    lines = []
    for m in [m for m in methods if m in conflicts] + [m for m in conflicts if m not in methods]:
        s = conflicts[m]
        raw, post = s["raw"], s["projected"]
        text = f"- {method_label(m)}: {_pct(raw)} of {s['steps']} steps had cos(g_T, g_kl) < 0"
        if not s["projects"]:
            text += " (no projection: the conflicting task gradients were applied unchanged)."
        elif post["mean"] == 0:
            text += "; after projection none stayed below −1e-6 (every conflict was removed)."
        else:
            text += f"; after projection {_pct(post)} stayed below −1e-6 (the projection left conflicts)."
        lines.append(text)
    return lines


def _loss_gap_lines(
    gaps: dict[str, dict], methods: list[str], ref: str, names: list[str]
) -> list[str]:
    a, b = names
    lines = []
    base = gaps.get(ref)
    for m in [m for m in methods if m in gaps]:
        g = gaps[m]
        shown = round(g["mean"], 3)
        where = (
            f"the {a} loss stayed higher"
            if shown > 0
            else f"the {b} loss stayed higher"
            if shown < 0
            else "the two losses ended level"
        )
        text = (
            f"- {method_label(m)}: L_{a} − L_{b} = {_signed(g['mean'], 3)}"
            + (f" ± {g['std']:.3f}" if g["n"] > 1 else "")
            + f" ({where}"
        )
        if base is not None and m != ref:
            x, y = round(abs(g["mean"]), 3), round(abs(base["mean"]), 3)
            cmp = "smaller than" if x < y else "larger than" if x > y else "the same as"
            text += f"; magnitude {cmp} under {method_label(ref)}"
        lines.append(text + ").")
    return lines


def _loss_spread_lines(gaps: dict[str, dict], methods: list[str], ref: str) -> list[str]:
    """M > 2: each method's spread of the per-modality tail losses, highest and lowest."""
    lines = []
    base = gaps.get(ref)
    for m in [m for m in methods if m in gaps]:
        g = gaps[m]
        tail = g["tail"]
        hi, lo = max(tail, key=tail.get), min(tail, key=tail.get)
        text = f"- {method_label(m)}: max − min = {g['mean']:.3f}" + (
            f" ± {g['std']:.3f}" if g["n"] > 1 else ""
        )
        text += f" (highest: the {hi} loss; lowest: the {lo} loss"
        if base is not None and m != ref:
            x, y = round(g["mean"], 3), round(base["mean"], 3)
            cmp = "smaller than" if x < y else "larger than" if x > y else "the same as"
            text += f"; {cmp} under {method_label(ref)}"
        lines.append(text + ").")
    return lines


def _method_definitions(methods: list[str]) -> list[str]:
    """One line per method: its label, the name ``--methods`` takes, what it is."""
    lines = ["## The methods", ""]
    for m in methods:
        what = method_description(m)
        lines.append(f"- **{method_label(m)}** (`{m}`)" + (f": {what}." if what else "."))
    return lines


def _definitions(layout: Layout) -> str:
    if layout.has_only:
        return (
            "ΔGap = max − min over the modalities of the impaired scores in points, Avg = "
            "their mean; Only <m> = every other modality missing."
        )
    a, b = layout.names
    return f"ΔGap = |missing {a} − missing {b}| in points, Avg = their mean."


def write_summary(
    run_dir: Path,
    *,
    dataset: str,
    metric: str,
    methods: list[str],
    seeds: list[int],
    table: dict[str, dict[str, dict]],
    results: list[dict],
    conflicts: dict[str, dict],
    loss_gaps: dict[str, dict],
    figures: dict[str, Path],
    tables: dict[str, Path],
    layout: Layout,
) -> str:
    """Write ``report.md`` in ``run_dir`` and return its text.

    Its sections: what was run (and what each method is), which modality dominated, each
    method relative to the reference (paired by seed), the gradient conflicts and the
    per-modality loss gaps where the run logged them, and links to the figures and tables.

    Args:
        run_dir: The run folder.
        dataset: The dataset's name (the title).
        metric: The primary metric.
        methods: The methods, in column order (those absent from ``table`` are left out).
        seeds: The seeds that ran.
        table: Table 1 (:func:`aggregate`).
        results: The eval.json payloads (:func:`load_results`).
        conflicts: The gradient-conflict statistics per method (Table 3); empty for none.
        loss_gaps: The per-modality training-loss gaps per method; empty for none.
        figures: ``{name: file}`` of the figures drawn.
        tables: ``{name: file}`` of the tables written.
        layout: The run's modalities (``run_layout`` of ``results``).

    Returns:
        report.md's text.

    Raises:
        WriteError: The file cannot be written.
    """
    present = [m for m in methods if m in table]
    ref = reference_method(present)
    out = _intro(dataset, metric, present, seeds, layout)
    out += ["## Which modality dominated", ""]
    out += _dominance_section(table, results, metric, present, ref, layout) + [""]
    if ref:
        paired = paired_table(results, metric, present, ref, layout)
        out += _relative_section(table, paired, present, ref, layout, several=len(seeds) > 1)
    if conflicts:
        out += ["## Gradient conflicts (Table 3)", ""]
        out += _conflict_lines(conflicts, present) + [""]
    if loss_gaps:
        out += _loss_section(loss_gaps, present, ref, layout)
    out += _links(figures, tables)
    text = "\n".join(out)
    write_text(Path(run_dir) / "report.md", text)
    return text


def _intro(dataset: str, metric: str, present: list[str], seeds: list[int], layout) -> list[str]:
    """The title, what was run and the methods' definitions."""
    line = (
        f"Test {metric} in %, {len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
        f"({', '.join(str(s) for s in seeds)})"
        + (", mean ± std over seeds" if len(seeds) > 1 else "")
        + f"; methods: {', '.join(method_label(m) for m in present)}. {_definitions(layout)} "
        "Generated by `balgrad report` from the files in this folder."
    )
    return [f"# What this run shows: {dataset}", "", line, "", *_method_definitions(present), ""]


def _relative_section(table, paired, present, ref, layout: Layout, several: bool) -> list[str]:
    """Each method's scores and its change versus the reference (none without another)."""
    method_lines = _method_lines(table, paired, present, ref, layout.paired_rows())
    if not method_lines:
        return []
    how = (
        f"paired by seed: the mean of the per-seed differences in points with its "
        f"{CONFIDENCE:.0%} t-interval over seeds; where the interval contains 0 the "
        f'change is labelled "{NO_CHANGE}"'
        if several
        else "in points, from the one seed"
    )
    return [
        f"## Each method relative to {method_label(ref)}",
        "",
        f"Each row's score{' (mean ± std over seeds)' if several else ''} and, in "
        f"brackets, the change versus {method_label(ref)} {how}. ΔGap: lower is more "
        "balanced.",
        "",
        *method_lines,
        "",
    ]


def _loss_section(loss_gaps: dict, present: list[str], ref, layout: Layout) -> list[str]:
    """The loss spread over the modalities (M > 2) or the loss-curve gap of the pair."""
    out = ["## Per-modality training loss", ""]
    if layout.has_only:
        out += [
            "Loss spread: max − min over the modalities of each one's mean unimodal loss "
            "over the last 20% of training steps (0: the towers' losses ended level).",
            "",
        ]
        return out + _loss_spread_lines(loss_gaps, present, ref) + [""]
    a, b = layout.names
    out += [
        f"Loss-curve gap: mean of L_{a} − L_{b} over the last 20% of training steps "
        f"(positive: the {a} tower's unimodal loss stayed above the {b} tower's).",
        "",
    ]
    return out + _loss_gap_lines(loss_gaps, present, ref, layout.names) + [""]


#: the figures' captions in report.md
CAPTIONS = {
    "condition_bars": "Scores per condition (paper Fig. 2a)",
    "loss_curves": "Per-modality training loss (Fig. 2b, 6)",
    "cosine_histogram": "cos(g_T, g_kl) with and without projection (Fig. 7)",
    "gap_vs_ratio": "ΔGap versus missing ratio (Fig. 4)",
}


def _links(figures: dict[str, Path], tables: dict[str, Path]) -> list[str]:
    """The figures, inline, and links to the tables' files."""
    out = []
    if figures:
        out += ["## Figures", ""]
        for key, path in figures.items():
            out += [f"![{CAPTIONS.get(key, key)}]({Path(path).name})", ""]
    if tables:
        out += ["## Tables", ""]
        out += [f"- [{Path(p).name}]({Path(p).name})" for p in tables.values()] + [""]
    return out


def _dominance_section(
    table: dict, results: list[dict], metric: str, methods: list[str], ref, layout: Layout
) -> list[str]:
    none = ["The missing-modality conditions were not evaluated."]
    if not ref:
        return none
    if not layout.has_only:
        d = dominance(table, ref, layout=layout)
        return _dominance_text(d, metric) if d else none
    rows = per_seed_rows(results, metric, layout)
    d = dominance_many(table, rows, ref, layout)
    if d is None:
        return none
    lines = _dominance_many_text(d, metric, table.get(ref, {}).get("full"))
    others = _dominance_many_methods(table, rows, methods, ref, layout)
    if others:
        lines += ["", *others]
    return lines
