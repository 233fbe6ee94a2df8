"""Files of a run folder read back by ``report``, ``evaluate`` and ``--resume``: each is
checked (parsed, of the expected shape, complete) before a value of it is used, so a
damaged file (empty, cut off, edited, of another run) is an error that names it and the
way out, or, where it can be recomputed, a warning and a recomputation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from balgrad.config_upgrade import upgrade_eval
from balgrad.errors import BalgradError
from balgrad.names import condition_name


class RunFileError(BalgradError):
    """A run-folder file that cannot be used as it is (the message names it)."""


#: what recomputes an ``eval.json`` from the model the run saved
EVAL_WAY_OUT = (
    "rerun the training command with --resume (it recomputes eval.json from the saved "
    "model), or run `balgrad evaluate` on the run folder"
)
#: the fields ``train``/``compare`` write into every eval.json besides the scores
TRAINING_FIELDS = {
    "dataset": str,
    "primary_metric": str,
    "best_epoch": int,
    "best_val": float,
    "train_seconds": float,
    "protocol": dict,
}


def _is(value: Any, kind: type) -> bool:
    if kind is float:  # a JSON number, finite or not, but not a bool
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _scores_problem(where: str, scores: Any) -> str | None:
    if not isinstance(scores, dict) or not scores:
        return f"{where} is not a mapping of metric names to numbers"
    for k, v in scores.items():
        if k != "condition" and not (_is(v, float) or v is None):
            return f"{where}.{k} is {v!r}, not a number"
    return None


def eval_problem(record: Any, path: Path, complete: bool = False) -> str | None:
    """Why ``record`` (a parsed eval.json at ``path``) cannot be used; None when it can.
    ``complete``: also the training fields (``--resume`` counts only such a run as done)."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    method, seed_dir = path.parent.parent.name, path.parent.name
    if record.get("method") != method:
        return f"'method' is {record.get('method')!r}, but the file is in {method}/"
    if not _is(record.get("seed"), int) or seed_dir != f"seed{record['seed']}":
        return f"'seed' is {record.get('seed')!r}, but the file is in {seed_dir}/"
    conditions = record.get("conditions")
    if not isinstance(conditions, dict) or "full" not in conditions:
        return "no 'conditions' mapping with a 'full' entry"
    for name, scores in conditions.items():
        if problem := _scores_problem(f"conditions.{name}", scores):
            return problem
    metric = record.get("primary_metric")
    if metric is not None and (not isinstance(metric, str) or metric not in conditions["full"]):
        return f"'primary_metric' {metric!r} is not a score of conditions.full"
    protocol = record.get("protocol")
    if protocol is not None and not isinstance(protocol, dict):
        return "'protocol' is not a mapping"
    if problem := _protocol_problem(protocol or {}):
        return problem
    # an old record's modalities as the upgrader reads them (0.1 wrote image-text only)
    modalities = (upgrade_eval(record).get("protocol") or {}).get("modalities") or {}
    sweep = record.get("sweep")
    if sweep is not None:
        if not isinstance(sweep, list):
            return "'sweep' is not a list"
        for i, point in enumerate(sweep):
            if not isinstance(point, dict) or not _is(point.get("ratio"), float):
                return f"sweep[{i}] has no numeric 'ratio'"
            for name in (condition_name("missing", m) for m in modalities):
                if problem := _scores_problem(f"sweep[{i}].{name}", point.get(name)):
                    return problem
    if complete:
        for name, kind in TRAINING_FIELDS.items():
            if not _is(record.get(name), kind):
                return f"'{name}' is missing or not a {kind.__name__}"
    return None


def _protocol_problem(protocol: dict) -> str | None:
    """What is wrong with ``protocol.modalities`` (name -> kind) or ``protocol.noise``
    (name -> level), where present."""
    modalities = protocol.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, dict) or len(modalities) < 2:
            return "'protocol.modalities' is not a mapping of two or more names to kinds"
        for name, kind in modalities.items():
            if not isinstance(kind, str):
                return f"protocol.modalities.{name} is {kind!r}, not a kind name"
    noise = protocol.get("noise")
    if noise is not None:
        if not isinstance(noise, dict):
            return "'protocol.noise' is not a mapping of modality names to levels"
        for name, level in noise.items():
            if not (_is(level, float) or level is None):
                return f"protocol.noise.{name} is {level!r}, not a number"
    return None


def read_eval(path: str | Path, complete: bool = False) -> dict:
    """A checked eval.json; :class:`RunFileError` naming it and the way out otherwise.

    Checked: it is JSON, its method and seed match its folder, every condition's scores
    are numbers (or null), the protocol and the sweep have their shape. Files written by
    an older balgrad are returned in the current schema.

    Args:
        path: A ``<method>/seed<k>/eval.json``.
        complete: Require the training fields too (``dataset``, ``best_epoch``,
            ``protocol``, ...): ``--resume`` counts only such a run as finished.

    Returns:
        The payload (scores as written: an undefined one is None).

    Raises:
        RunFileError: The file cannot be read, is not JSON, or fails a check.
    """
    path = Path(path)
    problem, record = None, None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"not readable JSON ({_first_line(err)})"
    else:
        problem = eval_problem(record, path, complete)
    if problem:
        raise RunFileError(f"{path} is damaged: {problem}; {EVAL_WAY_OUT}")
    return upgrade_eval(record)  # one schema for every reader, whichever balgrad wrote it


def read_config_mapping(path: str | Path) -> dict:
    """config.yaml as the report reads it (``balgrad.config.load_run_config`` checks
    every field; the report layer needs only these)."""
    path = Path(path)
    way_out = "restore it, or train the run again into a new folder (--name)"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        problem = f"not readable YAML ({_first_line(err)})"
        raise RunFileError(f"{path} is damaged: {problem}; {way_out}") from None
    checks = {
        "dataset": lambda v: isinstance(v, str),
        "methods": lambda v: isinstance(v, list) and v and all(isinstance(m, str) for m in v),
        "seeds": lambda v: isinstance(v, list) and v and all(_is(s, int) for s in v),
        "method_options": lambda v: v is None or isinstance(v, dict),
    }
    if not isinstance(cfg, dict):
        raise RunFileError(f"{path} is damaged: not a mapping of settings; {way_out}")
    for name, ok in checks.items():
        if not ok(cfg.get(name)):
            raise RunFileError(
                f"{path} is damaged: field {name!r} is missing or malformed "
                f"({cfg.get(name)!r}); {way_out}"
            )
    return cfg


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
