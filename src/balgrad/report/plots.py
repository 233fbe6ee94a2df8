"""Figures. ``gap_vs_ratio``: ΔGap as the missing ratio r grows, per method (paper Fig. 4)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from balgrad.atomic import atomic_path
from balgrad.report.tables import method_label


def plot_gap_vs_ratio(
    curves: dict[str, dict[str, list[float]]], path: Path, metric: str, title: str = ""
) -> Path:
    # a bare Figure draws headless and leaves the user's pyplot backend alone
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for method, c in curves.items():
        ax.plot(c["ratio"], c["mean"], marker="o", label=method_label(method))
        if any(c["std"]):
            lo = [m - s for m, s in zip(c["mean"], c["std"])]
            hi = [m + s for m, s in zip(c["mean"], c["std"])]
            ax.fill_between(c["ratio"], lo, hi, alpha=0.15)
    ax.set_xlabel("missing ratio r")
    ax.set_ylabel(f"ΔGap ({metric}, points)")
    ax.set_title(title or "ΔGap between missing image and missing text")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # the format from the target's name, not the temporary's
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    return Path(path)
