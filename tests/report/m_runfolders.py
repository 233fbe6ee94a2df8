"""Run folders of M named modalities written by hand (config.yaml, eval.json with
protocol.modalities/noise and only_<m>, metrics.jsonl with loss_<m>): no training."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

AV_TEXT = {"audio": "audio", "visual": "video", "text": "text"}
AV_TEXT_NOISE = {"audio": 10.0, "visual": 0.5, "text": 0.3}


def scores_of(modalities: dict, i: int, s: int) -> dict[str, float]:
    """Known scores of method number ``i``, seed ``s`` (every role of the protocol)."""
    out = {"full": 80.0 + i + 0.5 * s}
    for j, m in enumerate(modalities):
        out[f"missing_{m}"] = 60.0 + 3 * j + i + 0.25 * s * s - j * s
        out[f"noisy_{m}"] = 55.0 + 2 * j - i + 0.5 * s + 0.1 * j * s * s
        out[f"only_{m}"] = 35.0 + 12 * j - 2 * i * j + i + 0.2 * (j + 1) * s * s + 0.3 * i * j * s
    return out


def _toward(full: float, impaired: float | None, r: float) -> float | None:
    """The score at missing ratio r, linear from full (r = 0) to impaired (r = 1)."""
    return None if impaired is None else full + r * (impaired - full)


def eval_record(method, seed, modalities, noise, scores, ratios=(0.0, 0.5, 1.0)) -> dict:
    return {
        "method": method,
        "seed": seed,
        "dataset": "avt",
        "primary_metric": "accuracy",
        "protocol": {
            "missing": "input",
            "missing_ratio": 1.0,
            "modalities": modalities,
            "noise": noise,
        },
        "conditions": {k: {"condition": k, "accuracy": v} for k, v in scores.items()},
        "sweep": [
            {
                "ratio": r,
                **{
                    f"missing_{m}": {"accuracy": _toward(scores["full"], scores[f"missing_{m}"], r)}
                    for m in modalities
                },
            }
            for r in ratios
        ],
    }


def loss_rows(method: str, seed: int, modalities: dict, n: int = 30) -> list[dict]:
    """loss_<m> falls at a rate set by m's position: the last modality learns fastest."""
    rows = []
    for k in range(n):
        r = {"step": k, "epoch": 0, "method": method, "seed": seed, "loss_task": 2.0 - k / n}
        for j, m in enumerate(modalities):
            r[f"loss_{m}"] = 2.0 - (0.5 + j) * k / n + 0.01 * seed
            r[f"score_{m}"] = 0.1 * (j + 1)
        rows.append(r)
    return rows


def write_m_run(
    root: Path,
    methods: list[str],
    seeds: list[int],
    modalities: dict | None = None,
    noise: dict | None = None,
    scores=scores_of,
) -> Path:
    modalities = modalities or AV_TEXT
    noise = AV_TEXT_NOISE if noise is None else noise
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"dataset": "avt", "methods": methods, "seeds": seeds, "method_options": {}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    for i, m in enumerate(methods):
        for s in seeds:
            d = root / m / f"seed{s}"
            d.mkdir(parents=True)
            rec = eval_record(m, s, modalities, noise, scores(modalities, i, s))
            (d / "eval.json").write_text(json.dumps(rec))
            rows = loss_rows(m, s, modalities)
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
