"""Checkpoints: everything needed to resume (model, optimizer, strategy, gradient
scaler, best weights, RNG), loaded with ``weights_only=True``.

Two generations are kept: ``checkpoint.pt`` (newest) and ``checkpoint.prev.pt`` (the
one before). A save writes a temporary file (:mod:`balgrad.atomic`), hard-links the
current newest to the previous name, then renames the temporary file over the newest:
every rename is atomic, so at any instant a complete checkpoint exists under one of the
two names, and a failed save removes its temporary. A resume whose newest checkpoint is truncated or empty (a full disk, a copy cut
short) falls back to the previous one and says so, naming both files.
"""

from __future__ import annotations

import io
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from balgrad.atomic import atomic_path, stale_temporaries
from balgrad.errors import BalgradError

log = logging.getLogger("balgrad.train")


def previous_path(path: str | Path) -> Path:
    """``checkpoint.pt`` -> ``checkpoint.prev.pt``.

    Args:
        path: A checkpoint's path.

    Returns:
        The previous checkpoint's path.
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | Path, **state) -> None:
    """Write a checkpoint atomically, keeping the one it replaces as :func:`previous_path`;
    the RNG states (torch, numpy, Python) are saved with ``state``.

    Args:
        path: The file.
        **state: What to save (model, optimizer, strategy, epoch...).

    Raises:
        WriteError: The file cannot be written (a full disk, no permission).
    """
    path = Path(path)
    state["rng"] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": repr(random.getstate()),
    }
    # serialised in memory first: torch's own file writer turns a full disk into an
    # opaque RuntimeError, Python's write into an OSError that names the cause (WriteError)
    blob = io.BytesIO()  # a file, not a path: torch would name the archive after it
    torch.save(state, blob)
    with atomic_path(path) as tmp:  # a failed save (a full disk) leaves no temporary
        tmp.write_bytes(blob.getbuffer())
        if path.exists():
            with atomic_path(previous_path(path)) as prev_tmp:
                prev_tmp.unlink()
                try:
                    os.link(path, prev_tmp)  # the newest stays in place until the rename
                except OSError:  # a file system without hard links
                    shutil.copyfile(path, prev_tmp)


def remove_checkpoints(path: str | Path) -> None:
    """A fresh (not resumed) run must not fall back on an older run's checkpoint later.

    Args:
        path: The checkpoint's path (its previous and temporaries go too).
    """
    path = Path(path)
    for p in (path, previous_path(path)):
        p.unlink(missing_ok=True)
    remove_temporaries(path)


def remove_temporaries(path: str | Path) -> None:
    """The half-written saves a killed process left next to ``path``.

    Args:
        path: The checkpoint's path.
    """
    for p in (*stale_temporaries(path), *stale_temporaries(previous_path(path))):
        p.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """Load one checkpoint file (and restore the RNG states it holds).

    Args:
        path: The file.

    Returns:
        The state saved.

    Raises:
        BalgradError: The file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise BalgradError(f"checkpoint {path} does not exist")
    state = _read(path)
    rng = state.get("rng")
    if rng:
        torch.set_rng_state(rng["torch"])
        _set_numpy_state(rng["numpy"])
    return state


def load_latest_checkpoint(path: str | Path) -> tuple[dict, Path] | None:
    """The newest loadable checkpoint of ``path`` and ``previous_path(path)``, with the
    file it came from; None when neither exists. A broken newest one falls back to the
    previous with a warning naming both; both broken is an error naming both.

    Args:
        path: The checkpoint's path.

    Returns:
        (state, file), or None.

    Raises:
        BalgradError: Both files exist and neither loads.
    """
    path = Path(path)
    prev = previous_path(path)
    problems = []
    for candidate in (path, prev):
        if not candidate.exists():
            problems.append(f"{candidate} does not exist")
            continue
        try:
            state = load_checkpoint(candidate)
        except BalgradError as err:
            problems.append(str(err))
            continue
        if candidate == prev:
            log.warning(
                "newest checkpoint unusable (%s); resuming from the previous one, %s, "
                "which is one epoch older",
                problems[0],
                prev,
            )
        return state, candidate
    if not path.exists() and not prev.exists():
        return None
    raise BalgradError("no usable checkpoint: " + "; ".join(problems))


def _read(path: Path) -> dict:
    size = path.stat().st_size
    if size == 0:
        raise BalgradError(f"checkpoint {path} could not be loaded: the file is empty (0 bytes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BalgradError(
            f"checkpoint {path} could not be loaded ({size} bytes, truncated or not a "
            f"checkpoint): {reason}"
        ) from err
    if problem := _entries_problem(state):
        raise BalgradError(f"checkpoint {path} is incomplete or not balgrad's: {problem}")
    return state


#: the entries every checkpoint holds, and their types (``scaler``/``elapsed`` are optional)
ENTRIES = {
    "model": dict,
    "optimizer": dict,
    "strategy": dict,
    "epoch": int,
    "best_score": float,
    "best_epoch": int,
    "best_state": dict,
    "history": list,
}


def _entries_problem(state) -> str | None:
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a mapping of entries"
    for name, kind in ENTRIES.items():
        value = state.get(name)
        ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
        if not ok or isinstance(value, bool):
            return f"no {name!r} entry of type {kind.__name__}"
    if state["epoch"] < 0 or len(state["history"]) != state["epoch"] + 1:
        return (
            f"its history has {len(state['history'])} epochs, but it is of epoch {state['epoch']}"
        )
    return None


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_state(s: dict) -> None:
    np.random.set_state(
        ("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"])
    )
