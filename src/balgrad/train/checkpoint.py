"""Checkpoints: everything needed to resume (model, optimizer, strategy, best weights,
RNG), written atomically and loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from balgrad.errors import BalgradError


def save_checkpoint(path: str | Path, **state) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    state["rng"] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": repr(random.getstate()),
    }
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a broken checkpoint


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BalgradError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise BalgradError(f"checkpoint {path} could not be loaded: {err}") from err
    rng = state.get("rng")
    if rng:
        torch.set_rng_state(rng["torch"])
        _set_numpy_state(rng["numpy"])
    return state


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
