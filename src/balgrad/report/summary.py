"""The ablation table (paper Table 2 layout) and the run's ``report.md``: a short,
factual "what this run shows", generated from the numbers in the run folder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from balgrad.atomic import atomic_open, write_text
from balgrad.evaluate.metrics import is_defined
from balgrad.report.tables import (
    CONFIDENCE,
    NO_CHANGE,
    PAIRED_ROWS,
    csv_cell,
    format_cell,
    format_change,
    method_label,
    number,
    paired_table,
    reference_method,
)
from balgrad.strategies.registry import ablation_order, default_methods, method_role

ABLATION_ROWS = [
    ("full", "Full"),
    ("missing_image", "Missing image"),
    ("missing_text", "Missing text"),
    ("missing_avg", "Avg"),
    ("missing_gap", "ΔGap"),
]


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
    table: dict[str, dict[str, dict]], out_dir: Path, metric: str, title: str = ""
) -> dict[str, Path]:
    """Table 2 (missing modality) as Markdown and CSV; columns absent from the run are skipped."""
    out_dir = Path(out_dir)
    methods = ablation_columns(table)
    paths = {"ablation_md": out_dir / "ablation.md", "ablation_csv": out_dir / "ablation.csv"}
    lines = [title or f"Ablation, missing modality ({metric}, %; mean ± std over seeds)", ""]
    lines += [
        "| Condition | " + " | ".join(method_label(m) for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for key, label in ABLATION_ROWS:
        lines.append(
            f"| {label} | " + " | ".join(format_cell(table[m].get(key)) for m in methods) + " |"
        )
    write_text(paths["ablation_md"], "\n".join(lines) + "\n")
    with atomic_open(paths["ablation_csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["condition", *(f"{m}_{s}" for m in methods for s in ("mean", "std"))])
        for key, _ in ABLATION_ROWS:
            row = [key]
            for m in methods:
                cell = table[m].get(key)
                row += csv_cell(cell)
            w.writerow(row)
    return paths


# -- report.md ----------------------------------------------------------------------------
def _pm(cell: dict | None, digits: int = 1) -> str:
    if cell is None or not is_defined(cell["mean"]):
        return "n/a"
    text = f"{cell['mean']:.{digits}f}"
    return text + (f" ± {number(cell['std'], f'.{digits}f')}" if cell.get("n", 1) > 1 else "")


def _signed(x: float, digits: int = 1) -> str:
    return number(x, f"+.{digits}f")


def dominance(table: dict[str, dict[str, dict]], reference: str | None = None) -> dict | None:
    """Which modality dominated ``reference`` (default: :func:`reference_method`): the one
    whose absence costs the most.

    ``missing_text`` is the image-only score and ``missing_image`` the text-only score;
    the lower of the two marks the absent modality the model relied on.
    Returns {"method", "dominant" ("image" | "text" | None), "image_only", "text_only",
    "gap", "diff", "consistent_seeds", "n_seeds"} or None when the rows are missing.
    """
    reference = reference or reference_method(list(table))
    cells = table.get(reference, {})
    img_only, txt_only = cells.get("missing_text"), cells.get("missing_image")
    if img_only is None or txt_only is None:
        return None
    diff = np.array(img_only["values"], dtype=float) - np.array(txt_only["values"], dtype=float)
    mean = float(diff.mean())
    dominant = "text" if mean < 0 else "image" if mean > 0 else None
    same = int(np.sum(np.sign(diff) == np.sign(mean))) if dominant else 0
    return {
        "method": reference,
        "dominant": dominant,
        "image_only": img_only,
        "text_only": txt_only,
        "full": cells.get("full"),
        "gap": cells.get("missing_gap"),
        "diff": mean,
        "diff_std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
        "consistent_seeds": same,
        "n_seeds": len(diff),
    }


def _dominance_text(d: dict, metric: str) -> list[str]:
    ref = method_label(d["method"])
    where = (
        "under joint training"
        if method_role(d["method"]) == "reference"
        else f"under {ref} (joint training is not in this run)"
    )
    lines = [
        f"Full-input {metric} {where} was {_pm(d['full'])}%. With the text removed (image only) it was "
        f"{_pm(d['image_only'])}%; with the image removed (text only) it was {_pm(d['text_only'])}%."
    ]
    if d["dominant"] is None:
        lines.append("Neither modality dominated: both single-modality scores were equal (ΔGap 0).")
        return lines
    weak = "image" if d["dominant"] == "text" else "text"
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


def _method_lines(table: dict, paired: dict, methods: list[str], ref: str) -> list[str]:
    """One line per method: its scores and its paired change versus ``ref`` per row."""
    lines: list[str] = []
    better: dict[str, list[str]] = {"missing_gap": [], "missing_avg": [], "full": []}
    unchanged: list[str] = []
    for m in methods:
        if m == ref or m not in paired:
            continue
        parts = []
        for key, name in PAIRED_ROWS:
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


def _loss_gap_lines(gaps: dict[str, dict], methods: list[str], ref: str) -> list[str]:
    lines = []
    base = gaps.get(ref)
    for m in [m for m in methods if m in gaps]:
        g = gaps[m]
        shown = round(g["mean"], 3)
        where = (
            "the image loss stayed higher"
            if shown > 0
            else "the text loss stayed higher"
            if shown < 0
            else "the two losses ended level"
        )
        text = (
            f"- {method_label(m)}: L_image − L_text = {_signed(g['mean'], 3)}"
            + (f" ± {g['std']:.3f}" if g["n"] > 1 else "")
            + f" ({where}"
        )
        if base is not None and m != ref:
            a, b = round(abs(g["mean"]), 3), round(abs(base["mean"]), 3)
            cmp = "smaller than" if a < b else "larger than" if a > b else "the same as"
            text += f"; magnitude {cmp} under {method_label(ref)}"
        lines.append(text + ").")
    return lines


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
) -> str:
    """Write ``report.md`` in ``run_dir`` and return its text."""
    present = [m for m in methods if m in table]
    ref = reference_method(present)
    out = [f"# What this run shows: {dataset}", ""]
    out.append(
        f"Test {metric} in %, {len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
        f"({', '.join(str(s) for s in seeds)}), mean ± std over seeds; methods: "
        f"{', '.join(method_label(m) for m in present)}. ΔGap = |missing image − missing text| "
        "in points, Avg = their mean. Generated by `balgrad report` from the files in this folder."
    )
    out.append("")
    out += ["## Which modality dominated", ""]
    d = dominance(table, ref) if ref else None
    out += (
        _dominance_text(d, metric) if d else ["The missing-modality conditions were not evaluated."]
    )
    out.append("")
    paired = paired_table(results, metric, present, ref) if ref else {}
    method_lines = _method_lines(table, paired, present, ref) if ref else []
    if method_lines:
        several = len(seeds) > 1
        how = (
            f"paired by seed: the mean of the per-seed differences in points with its "
            f"{CONFIDENCE:.0%} t-interval over seeds; where the interval contains 0 the "
            f'change is labelled "{NO_CHANGE}"'
            if several
            else "in points, from the one seed"
        )
        out += [
            f"## Each method relative to {method_label(ref)}",
            "",
            f"Each row's score (mean ± std over seeds) and, in brackets, the change versus "
            f"{method_label(ref)} {how}. ΔGap: lower is more balanced.",
            "",
        ]
        out += method_lines + [""]
    if conflicts:
        out += ["## Gradient conflicts (Table 3)", ""]
        out += _conflict_lines(conflicts, present) + [""]
    if loss_gaps:
        out += [
            "## Per-modality training loss",
            "",
            "Loss-curve gap: mean of L_image − L_text over the last 20% of training steps "
            "(positive: the image tower's unimodal loss stayed above the text tower's).",
            "",
        ]
        out += _loss_gap_lines(loss_gaps, present, ref) + [""]
    if figures:
        out += ["## Figures", ""]
        captions = {
            "condition_bars": "Scores per condition (paper Fig. 2a)",
            "loss_curves": "Per-modality training loss (Fig. 2b, 6)",
            "cosine_histogram": "cos(g_T, g_kl) with and without projection (Fig. 7)",
            "gap_vs_ratio": "ΔGap versus missing ratio (Fig. 4)",
        }
        for key, path in figures.items():
            out += [f"![{captions.get(key, key)}]({Path(path).name})", ""]
    if tables:
        out += ["## Tables", ""]
        out += [f"- [{Path(p).name}]({Path(p).name})" for p in tables.values()] + [""]
    text = "\n".join(out)
    write_text(Path(run_dir) / "report.md", text)
    return text
