"""What a report figure plots, read back from the matplotlib Figure it saves: per axes its
title, axis labels, lines (label, x, y), bars/patches (x, width, height) and the legend's
texts. Golden tests compare this data rather than PNG bytes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _floats(values) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def figure_data(fig: Figure) -> dict:
    axes = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        legend = ax.get_legend()
        axes.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "lines": [
                    {
                        "label": ln.get_label(),
                        "x": _floats(ln.get_xdata()),
                        "y": _floats(ln.get_ydata()),
                    }
                    for ln in ax.get_lines()
                ],
                "patches": [
                    [float(p.get_x()), float(p.get_width()), float(p.get_height())]
                    for p in ax.patches
                ],
                "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
            }
        )
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return {"suptitle": suptitle, "axes": axes}


def record_figures(monkeypatch, modules) -> dict[str, dict]:
    """{file name: figure_data} of every figure the report modules ``modules`` save
    (through their ``atomic_path``) while the patch is active."""
    recorded: dict[str, dict] = {}
    current: dict[str, str] = {}
    for module in modules:
        real = module.atomic_path

        @contextlib.contextmanager
        def spy(path, _real=real):
            current["name"] = Path(path).name
            with _real(path) as tmp:
                yield tmp

        monkeypatch.setattr(module, "atomic_path", spy)
    real_savefig = Figure.savefig

    def savefig(self, *args, **kwargs):
        recorded[current["name"]] = figure_data(self)
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return recorded
