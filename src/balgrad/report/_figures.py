"""The paper's diagnostic figures, drawn from a run folder's numbers.

- :func:`plot_loss_curves`: per-modality training loss per method (Fig. 2b, 6);
- :func:`plot_cosine_histograms`: cos(g_T, g_kl) with and without projection (Fig. 7);
- :func:`plot_condition_bars`: full / image only / text only per method (Fig. 2a); for
  M > 2, full and each ``only_<m>``.

Each modality keeps one colour across the figures: the i-th of the run's modalities the
i-th of matplotlib's tab10 colours (image blue, text orange in an image-text run).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from balgrad.atomic import atomic_path
from balgrad.names import condition_name
from balgrad.report._diagnostics import COS_BINS, PROJECTED_TOL, LossCurves, conflict_fraction
from balgrad.report._layout import Layout
from balgrad.report._tables import method_label

IMAGE_COLOR, TEXT_COLOR = "tab:blue", "tab:orange"
#: the colours of the run's modalities, in order (tab:gray is the full-input bar's)
MODALITY_COLORS = (
    IMAGE_COLOR, TEXT_COLOR, "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
    "tab:olive", "tab:cyan",
)  # fmt: skip
#: loss legend labels of the paper's two modalities (v: vision, l: language)
LOSS_LABELS = {"image": "image loss $L_v$", "text": "text loss $L_l$"}


def modality_color(i: int) -> str:
    return MODALITY_COLORS[i % len(MODALITY_COLORS)]


def _save(fig: Figure, path: Path) -> Path:
    """Bare Figures (no pyplot) draw headless and leave the user's backend alone."""
    fig.tight_layout()
    with atomic_path(path) as tmp:  # the format from the target's name, not the temporary's
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    return Path(path)


def plot_loss_curves(
    curves: dict[str, LossCurves], gaps: dict[str, dict], path: Path, title: str = ""
) -> Path:
    """One panel per method: each modality's smoothed loss (loss_<m>) versus step, mean
    over seeds with a ±1 std band; the panel title carries the loss-curve gap."""
    methods = list(curves)
    ncols = min(4, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    for ax, method in zip(axes.flat, methods):
        c = curves[method]
        names = list(c.mean)
        for i, m in enumerate(names):
            mean, std, color = c.mean[m], c.std[m], modality_color(i)
            name = LOSS_LABELS.get(m, f"{m} loss $L_{{{m}}}$")
            ax.plot(c.steps, mean, color=color, label=name, lw=1.4)
            if c.n_seeds > 1:
                ax.fill_between(c.steps, mean - std, mean + std, color=color, alpha=0.2)
        gap = gaps.get(method)
        sub = method_label(method)
        if gap is not None:
            sub += f"\n{_gap_name(names)} = {gap['mean']:+.3f}" + (
                f" ± {gap['std']:.3f}" if gap["n"] > 1 else ""
            )
        ax.set_title(sub, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    n_seeds = max(c.n_seeds for c in curves.values())
    windows = sorted({c.window for c in curves.values()})
    seeds = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "1 seed"
    smooth = (
        f"{'/'.join(map(str, windows))}-step moving average" if windows != [1] else "unsmoothed"
    )
    fig.suptitle(f"{title or 'Per-modality training loss'} ({smooth}, {seeds})", fontsize=10)
    return _save(fig, path)


def _gap_name(names: list[str]) -> str:
    if names == ["image", "text"]:
        return "gap $L_v - L_l$"
    if len(names) == 2:
        return f"gap $L_{{{names[0]}}} - L_{{{names[1]}}}$"
    return "loss spread (max − min)"


def plot_cosine_histograms(
    series: list[tuple[str, np.ndarray]], path: Path, title: str = "", bins: np.ndarray = COS_BINS
) -> Path:
    """One panel per series of cosines, on shared bins over [−1, 1]; each panel names
    its fraction of conflicting steps (cos < 0; after projection, cos < −1e-6)."""
    n = len(series)
    fig = Figure(figsize=(3.8 * n, 3.2))
    axes = fig.subplots(1, n, squeeze=False, sharex=True)
    colors = ["tab:red", "tab:green", "tab:purple", "tab:gray"]
    for i, (ax, (name, values)) in enumerate(zip(axes.flat, series)):
        tol = PROJECTED_TOL if "after projection" in name else 0.0
        frac = conflict_fraction(values, tol)
        ax.hist(
            np.clip(values, -1, 1),
            bins=bins,
            color=colors[i % len(colors)],
            alpha=0.75,
            label=f"{len(values)} steps\n{100 * frac:.1f}% with cos < {'−1e-6' if tol else '0'}",
        )
        ax.axvline(0.0, color="black", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(r"cos($g_T$, $g_{kl}$)")
        ax.set_ylabel("steps")
        ax.set_xlim(bins[0], bins[-1])
        ax.legend(fontsize=7)
    fig.suptitle(title or "Cosine between task and KL gradients (pooled over seeds)", fontsize=10)
    return _save(fig, path)


def condition_bars(layout: Layout) -> list[tuple[str, str, str]]:
    """Fig. 2a's bars, (table row, label, colour): Full, then each modality alone. Two
    modalities: "Image only (text missing)" is the ``missing_text`` row. More: the
    ``only_<m>`` rows."""
    names = layout.names
    bars = [("full", "Full", "tab:gray")]
    if not layout.has_only:
        a, b = names
        return bars + [
            (
                condition_name("missing", b),
                f"{a.capitalize()} only ({b} missing)",
                modality_color(0),
            ),
            (
                condition_name("missing", a),
                f"{b.capitalize()} only ({a} missing)",
                modality_color(1),
            ),
        ]
    return bars + [
        (condition_name("only", m), f"{m.capitalize()} only", modality_color(i))
        for i, m in enumerate(names)
    ]


def plot_condition_bars(
    table: dict[str, dict[str, dict]],
    methods: list[str],
    path: Path,
    metric: str,
    title: str = "",
    *,
    layout: Layout,
) -> Path:
    """Grouped bars per method: full and each modality alone (:func:`condition_bars`),
    with seed-std error bars."""
    methods = [m for m in methods if m in table]
    bars = condition_bars(layout)
    x = np.arange(len(methods))
    width = 0.8 / len(bars)
    fig = Figure(figsize=(max(5.0, 1.1 * len(methods) + 2), 3.8))
    ax = fig.subplots()
    for i, (key, label, color) in enumerate(bars):
        means = [table[m].get(key, {}).get("mean", np.nan) for m in methods]
        stds = [table[m].get(key, {}).get("std", 0.0) for m in methods]
        several = any(table[m].get(key, {}).get("n", 1) > 1 for m in methods)
        yerr = stds if several else None  # one seed: no caps that look like a zero spread
        offset = (i - (len(bars) - 1) / 2) * width
        ax.bar(x + offset, means, width, yerr=yerr, capsize=3, label=label, color=color)
    ax.set_xticks(x)
    ax.set_xticklabels([method_label(m) for m in methods], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric} (%)")
    ax.set_xlabel("method")
    ax.set_title(title or "Scores per condition (error bars: std over seeds)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    top = np.nanmax([b.get_height() for b in ax.patches] + [1.0])
    ax.set_ylim(0, top * 1.18)  # headroom: the legend sits above the bars, not on them
    ax.legend(fontsize=8, loc="upper center", ncol=min(len(bars), 4), frameon=False)
    return _save(fig, path)
