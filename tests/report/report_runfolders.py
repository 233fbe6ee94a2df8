"""Synthetic run folders (config.yaml, metrics.jsonl, eval.json) written by hand: no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

ALL_METHODS = [
    "joint",
    "mslr",
    "ogm_ge",
    "agm",
    "balgrad",
    "balgrad_reweight_only",
    "balgrad_projection_only",
    "balgrad_unimodal_only",
]
BALGRAD_LIKE = {
    "balgrad": True,
    "balgrad_projection_only": True,
    "balgrad_reweight_only": False,
    "balgrad_unimodal_only": False,
}


def eval_payload(
    method: str,
    seed: int,
    full: float,
    missing_image: float,
    missing_text: float,
    noisy_image: float = 50.0,
    noisy_text: float = 40.0,
    sweep: bool = True,
) -> dict:
    conds = {
        "full": full,
        "missing_image": missing_image,
        "missing_text": missing_text,
        "noisy_image": noisy_image,
        "noisy_text": noisy_text,
    }
    out = {
        "method": method,
        "seed": seed,
        "dataset": "digits",
        "primary_metric": "accuracy",
        "conditions": {k: {"condition": k, "accuracy": v} for k, v in conds.items()},
    }
    if sweep:
        out["sweep"] = [
            {
                "ratio": r,
                "missing_image": {"accuracy": full + r * (missing_image - full)},
                "missing_text": {"accuracy": full + r * (missing_text - full)},
            }
            for r in (0.0, 0.5, 1.0)
        ]
    return out


def step_rows(
    method: str,
    seed: int,
    n: int = 50,
    cos: list[float] | None = None,
    cos_projected: list[float] | None = None,
    rng_seed: int = 0,
) -> list[dict]:
    rng = np.random.default_rng(rng_seed + seed)
    rows = []
    for i in range(n):
        r = {
            "step": i,
            "epoch": i // 25,
            "method": method,
            "seed": seed,
            "loss_task": 2.0 - i / n,
            "loss_image": 2.3 - 0.5 * i / n + 0.01 * rng.standard_normal(),
            "loss_text": 2.3 - 1.5 * i / n + 0.01 * rng.standard_normal(),
            "score_image": 0.1,
            "score_text": 0.2,
        }
        if method in BALGRAD_LIKE:
            c = float(cos[i % len(cos)]) if cos is not None else float(rng.uniform(-1, 1))
            projects = BALGRAD_LIKE[method]
            if cos_projected is not None:
                cp = float(cos_projected[i % len(cos_projected)])
            else:
                cp = max(c, 0.0) if projects else c
            kl_norm = 0.0 if method == "balgrad_unimodal_only" else 1.0
            if kl_norm == 0.0:
                c = cp = 0.0
            r.update(
                {
                    "kl": 0.1,
                    "cos_task_kl": c,
                    "cos_task_kl_projected": cp,
                    "conflict": float(c < 0),
                    "projected": float(c < 0 and projects),
                    "norm_kl_image": kl_norm,
                    "norm_kl_text": kl_norm,
                }
            )
        rows.append(r)
    return rows


def write_run(
    root: Path,
    methods: list[str],
    seeds: list[int],
    evals: dict | None = None,
    rows: dict | None = None,
    n_steps: int = 50,
) -> Path:
    """evals: {(method, seed): (full, missing_image, missing_text)}; rows: {(method, seed): [..]}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(
        yaml.safe_dump(
            {"dataset": "digits", "methods": methods, "seeds": seeds, "method_options": {}}
        )
    )
    for i, m in enumerate(methods):
        for s in seeds:
            d = root / m / f"seed{s}"
            d.mkdir(parents=True)
            full, mi, mt = (evals or {}).get((m, s), (70.0 + i + s, 60.0 + i - s, 20.0 + 2 * i + s))
            (d / "eval.json").write_text(json.dumps(eval_payload(m, s, full, mi, mt)))
            lines = (rows or {}).get((m, s)) or step_rows(m, s, n_steps)
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return root
