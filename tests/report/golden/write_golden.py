"""Write the golden M = 2 (image, text) run folder and the report today's code makes of it.

Run once, from the repository root, to (re)create tests/report/golden/m2/:
    PYTHONPATH=$PWD/src:$PWD/tests/report .venv/bin/python tests/report/golden/write_golden.py
``input/`` is a run folder written by hand (config.yaml, eval.json, metrics.jsonl; no
training); ``expected/`` is what ``build_report`` wrote from it, plus ``figures.json``, the
data each figure plots. test_golden_m2_report.py checks the report still reproduces them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from figure_data import record_figures  # noqa: E402
from report_runfolders import ALL_METHODS, step_rows  # noqa: E402

SEEDS = [0, 1, 2]
N_STEPS = 20
#: the report's outputs compared byte for byte
OUTPUTS = [
    "report.md",
    "table.md",
    "table.csv",
    "table.json",
    "ablation.md",
    "ablation.csv",
    "conflicts.md",
    "conflicts.csv",
    "cosine_histogram.csv",
    "results.json",
]
FIGURES = ["gap_vs_ratio.png", "condition_bars.png", "loss_curves.png", "cosine_histogram.png"]


def eval_record(method: str, i: int, seed: int, rng: np.random.Generator) -> dict:
    """Scores with seed-to-seed spread (so every paired interval has a width)."""
    full = round(70.0 + i + 2.0 * rng.standard_normal(), 4)
    mi = round(55.0 + 1.5 * i + 3.0 * rng.standard_normal(), 4)
    mt = round(30.0 + 2.5 * i + 3.0 * rng.standard_normal(), 4)
    ni = round(50.0 + 0.5 * i + 2.0 * rng.standard_normal(), 4)
    nt = round(40.0 + 1.0 * i + 2.0 * rng.standard_normal(), 4)
    if method == "ogm_ge" and seed == 1:
        ni = full + 1.25  # one negative transfer (*) in the tables
    conds = {
        "full": full,
        "missing_image": mi,
        "missing_text": mt,
        "noisy_image": ni,
        "noisy_text": nt,
    }
    return {
        "method": method,
        "seed": seed,
        "dataset": "digits",
        "primary_metric": "accuracy",
        "best_epoch": 3,
        "best_val": 80.0,
        "train_seconds": 1.5,
        "protocol": {
            "missing": "input",
            "missing_ratio": 1.0,
            "image_noise": 0.5,
            "text_noise": 0.5,
            "eval_seed": 1234,
            "test_split": "test",
            "precision": "fp32",
        },
        "conditions": {k: {"condition": k, "accuracy": v} for k, v in conds.items()},
        "sweep": [
            {
                "ratio": r,
                "missing_image": {"accuracy": round(full + r * (mi - full), 4)},
                "missing_text": {"accuracy": round(full + r * (mt - full), 4)},
            }
            for r in (0.0, 0.5, 1.0)
        ],
    }


def write_input(root: Path) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    cfg = {"dataset": "digits", "methods": ALL_METHODS, "seeds": SEEDS, "method_options": {}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    rng = np.random.default_rng(16)
    for i, m in enumerate(ALL_METHODS):
        for s in SEEDS:
            d = root / m / f"seed{s}"
            d.mkdir(parents=True)
            (d / "eval.json").write_text(json.dumps(eval_record(m, i, s, rng), indent=1) + "\n")
            rows = step_rows(m, s, N_STEPS, rng_seed=10 * i)
            for r in rows:  # short decimals keep the files small and exact
                for k, v in r.items():
                    if isinstance(v, float):
                        r[k] = round(v, 6)
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def build(input_dir: Path, work: Path, monkeypatch) -> tuple[Path, dict]:
    """Copy ``input_dir`` to ``work`` and build its report there; (work, figure data)."""
    import balgrad.report._figures
    import balgrad.report._plots
    from balgrad.report._build import build_report

    shutil.copytree(input_dir, work)
    figs = record_figures(monkeypatch, [balgrad.report._figures, balgrad.report._plots])
    build_report(work)
    return work, figs


def main() -> int:
    golden = HERE / "m2"
    write_input(golden / "input")
    expected = golden / "expected"
    if expected.exists():
        shutil.rmtree(expected)
    expected.mkdir()
    work = golden / "_work"
    shutil.rmtree(work, ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        work, figs = build(golden / "input", work, mp)
    for name in OUTPUTS:
        shutil.copy(work / name, expected / name)
    assert sorted(figs) == sorted(FIGURES), sorted(figs)
    (expected / "figures.json").write_text(json.dumps(figs, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(work)
    print(f"wrote {golden}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
