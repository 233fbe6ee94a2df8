"""Figures. ``gap_vs_ratio``: ΔGap as the missing ratio r grows, per method (paper Fig. 4),
beside one panel per modality m with each method's ``missing_<m>`` score versus r."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from balgrad.atomic import atomic_path
from balgrad.report._tables import method_label


def _band(ax, c: dict, **kw) -> None:
    """The mean curve of ``c`` with a ±1 std band where the seeds spread."""
    ax.plot(c["ratio"], c["mean"], marker="o", **kw)
    if any(c["std"]):
        lo = [m - s for m, s in zip(c["mean"], c["std"])]
        hi = [m + s for m, s in zip(c["mean"], c["std"])]
        ax.fill_between(c["ratio"], lo, hi, alpha=0.15)


def sweep_modalities(curves: dict[str, dict]) -> list[str]:
    """The modalities whose missing_<m> score the curves hold, in the first method's order."""
    names: list[str] = []
    for c in curves.values():
        names += [m for m in c.get("modalities", {}) if m not in names]
    return names


def plot_gap_vs_ratio(curves: dict[str, dict], path: Path, metric: str, title: str = "") -> Path:
    """``curves``: {method: {"ratio", "mean", "std"[, "modalities": {m: {"mean", "std"}}]}}
    (:func:`balgrad.report._tables.aggregate_sweep`)."""
    names = sweep_modalities(curves)
    # a bare Figure draws headless and leaves the user's pyplot backend alone
    fig = Figure(figsize=(6 + 4.5 * len(names), 4))
    axes = fig.subplots(1, 1 + len(names), squeeze=False).flat
    ax = axes[0]
    for method, c in curves.items():
        _band(ax, c, label=method_label(method))
    ax.set_xlabel("missing ratio r")
    ax.set_ylabel(f"ΔGap ({metric}, points)")
    if len(names) == 2:
        default = f"between missing {names[0]} and missing {names[1]}"
    else:  # M > 2, or curves that do not name their modalities
        default = "(max − min over modalities)"
    ax.set_title(title or f"ΔGap {default}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for ax, m in zip(axes[1:], names):
        for method, c in curves.items():
            if m in c.get("modalities", {}):
                _band(ax, {"ratio": c["ratio"], **c["modalities"][m]}, label=method_label(method))
        ax.set_xlabel("missing ratio r")
        ax.set_ylabel(f"test {metric} (%)")
        ax.set_title(f"{m} missing on a fraction r of the test samples", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # the format from the target's name, not the temporary's
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    return Path(path)
