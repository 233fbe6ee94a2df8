"""Importing the report package leaves the user's matplotlib backend alone, and its
figures still draw without a display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import sys
import matplotlib
matplotlib.use("pdf")
import balgrad.report._build, balgrad.report._figures, balgrad.report._plots
assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
from balgrad.report._plots import plot_gap_vs_ratio
curve = {"ratio": [0.0, 1.0], "mean": [1.0, 2.0], "std": [0.0, 0.5]}
plot_gap_vs_ratio({"joint": curve}, sys.argv[1], "accuracy")
assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
"""


def test_report_import_keeps_the_backend_and_draws_headless(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY")}
    env["PYTHONPATH"] = str(SRC)
    out = tmp_path / "gap.png"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
