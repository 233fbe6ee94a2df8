"""Table 1 layout: conditions as rows, methods as columns, mean ± std over seeds.

Written as Markdown, CSV and JSON. A ``*`` marks negative transfer (an impaired score
above the full score), as in the paper.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from balgrad.evaluate.protocol import summarize, sweep_gaps
from balgrad.strategies.registry import method_label  # the label a strategy registered

ROWS = [
    ("full", "Full"),
    ("missing_image", "Missing image"),
    ("missing_text", "Missing text"),
    ("missing_avg", "Missing Avg"),
    ("missing_gap", "Missing ΔGap"),
    ("noisy_image", "Noisy image"),
    ("noisy_text", "Noisy text"),
    ("noisy_avg", "Noisy Avg"),
    ("noisy_gap", "Noisy ΔGap"),
]


def aggregate(results: list[dict], metric: str) -> dict[str, dict[str, dict]]:
    """{method: {row: {"mean", "std", "n", "values", "negative_transfer"}}} from eval.json payloads."""
    by_method: dict[str, list[dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(summarize(r["conditions"], metric))
    out: dict[str, dict[str, dict]] = {}
    for method, summaries in by_method.items():
        rows = {}
        for key, _ in ROWS:
            vals = [s[key] for s in summaries if key in s]
            if not vals:
                continue
            arr = np.array(vals, dtype=float)
            rows[key] = {
                "mean": float(arr.mean()),
                "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
                "n": len(arr),
                "values": vals,
                "negative_transfer": any(
                    s.get(f"{key}_negative_transfer", False) for s in summaries
                ),
            }
        out[method] = rows
    return out


def aggregate_sweep(results: list[dict], metric: str) -> dict[str, dict[str, list[float]]]:
    """{method: {"ratio": [...], "mean": [...], "std": [...]}} of ΔGap versus r."""
    by_method: dict[str, list[list[tuple[float, float]]]] = {}
    for r in results:
        if "sweep" in r:
            by_method.setdefault(r["method"], []).append(sweep_gaps(r["sweep"], metric))
    out = {}
    for method, curves in by_method.items():
        ratios = [x for x, _ in curves[0]]
        gaps = np.array([[g for _, g in c] for c in curves])
        out[method] = {
            "ratio": ratios,
            "mean": gaps.mean(0).tolist(),
            "std": (gaps.std(0, ddof=1) if len(gaps) > 1 else np.zeros(len(ratios))).tolist(),
        }
    return out


def format_cell(cell: dict | None, digits: int = 2) -> str:
    if cell is None:
        return "–"
    text = f"{cell['mean']:.{digits}f}"
    if cell["n"] > 1:
        text += f" ± {cell['std']:.{digits}f}"
    if cell["negative_transfer"]:
        text += "*"
    return text


def markdown_table(table: dict[str, dict[str, dict]], methods: list[str], title: str = "") -> str:
    header = "| Condition | " + " | ".join(method_label(m) for m in methods) + " |"
    lines = [title, ""] if title else []
    lines += [header, "|---|" + "---|" * len(methods)]
    for key, label in ROWS:
        if not any(key in table.get(m, {}) for m in methods):
            continue
        lines.append(
            f"| {label} | "
            + " | ".join(format_cell(table.get(m, {}).get(key)) for m in methods)
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_tables(
    table: dict, methods: list[str], out_dir: Path, metric: str, title: str
) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {
        "md": out_dir / "table.md",
        "csv": out_dir / "table.csv",
        "json": out_dir / "table.json",
    }
    paths["md"].write_text(markdown_table(table, methods, title))
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["condition", *(f"{m}_{s}" for m in methods for s in ("mean", "std"))])
        for key, _ in ROWS:
            if not any(key in table.get(m, {}) for m in methods):
                continue
            row = [key]
            for m in methods:
                cell = table.get(m, {}).get(key)
                row += ["", ""] if cell is None else [f"{cell['mean']:.4f}", f"{cell['std']:.4f}"]
            w.writerow(row)
    paths["json"].write_text(
        json.dumps({"metric": metric, "methods": methods, "table": table}, indent=2)
    )
    return paths
