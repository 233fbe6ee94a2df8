"""The module paths of 0.1 keep working for one release (:mod:`balgrad._moved`): each old
path imports with a DeprecationWarning and *is* the moved module; a pickle that names a
class by its old module path loads; checkpoints name no balgrad class at all.

relayout: skip (this file imports the old paths on purpose)
"""

from __future__ import annotations

import importlib
import pickle
import pickletools
import sys
import types
import warnings
import zipfile
from pathlib import Path

import pytest

import balgrad
from balgrad._moved import MOVED


def _fresh_import(old: str):
    """Import ``old`` through the finder even if an earlier test imported it already."""
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        del sys.modules[name]
    parent, _, child = old.rpartition(".")
    if isinstance(getattr(sys.modules.get(parent), child, None), types.ModuleType):
        delattr(sys.modules[parent], child)
    return importlib.import_module(old)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_is_the_new_module(old):
    new = importlib.import_module(MOVED[old])
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {MOVED[old]}"):
        module = _fresh_import(old)
    assert module is new
    assert sys.modules[old] is new
    assert new.__name__ == new.__spec__.name == MOVED[old]  # an alias, not a rename


def test_the_warning_names_the_importing_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fresh_import("balgrad.data.digits")
    (w,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert w.filename == __file__


def test_from_import_of_an_old_path_gives_the_new_objects():
    from balgrad.data.readers import DigitsDataset

    with pytest.warns(DeprecationWarning):
        _fresh_import("balgrad.data.digits")
        from balgrad.data.digits import DigitsDataset as old  # noqa: F401

    assert old is DigitsDataset


def test_every_old_path_names_an_existing_module_and_no_new_path_is_old():
    root = balgrad.__path__[0]
    for new in MOVED.values():
        assert importlib.util.find_spec(new) is not None, new
        assert importlib.util.find_spec(new).origin.startswith(root)
        assert new not in MOVED
    # no shim files: nothing is left at an old path
    shims = [o for o in MOVED if Path(root, *o.split(".")[1:]).with_suffix(".py").exists()]
    assert not shims


def test_an_unknown_balgrad_path_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("balgrad.data.no_such_reader")


def _with_module_path(obj, old_module: str) -> bytes:
    """``obj`` pickled as 0.1 would have: its class under ``old_module`` (protocol 2 names
    a global as ``module\\nname\\n``, so the module's text can be swapped)."""
    data = pickle.dumps(obj, protocol=2)
    new = type(obj).__module__.encode()
    assert data.count(b"c" + new + b"\n") == 1
    return data.replace(b"c" + new + b"\n", b"c" + old_module.encode() + b"\n")


def test_a_pickle_naming_the_old_module_path_loads():
    from balgrad.data import Condition

    cond = Condition(kind="missing_image", ratio=0.5, seed=3)
    old = next(o for o, n in MOVED.items() if n == Condition.__module__)
    data = _with_module_path(cond, old)
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning):
        loaded = pickle.loads(data)
    assert type(loaded) is Condition and loaded == cond


def _globals_of(pkl: bytes) -> list[str]:
    """The ``module.name`` of every global a pickle stream refers to."""
    found, strings = [], []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name in ("GLOBAL", "INST"):
            found.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.append(".".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def test_checkpoints_hold_state_dicts_that_name_no_balgrad_class(tmp_path):
    """A moved class cannot break a resume: ``checkpoint.pt`` holds tensors and plain
    containers only (written by a real one-epoch run of a strategy with state)."""
    out = tmp_path / "runs"
    argv = [
        "compare", "--methods", "balgrad", "pmr", "--epochs", "1", "--out", str(out),
        "--backbone", "image=cnn", "--backbone", "text=small",
        "--dataset-option", "n_train=64", "--dataset-option", "n_test=32",
        "--batch-size", "32", "--no-progress", "--no-sweep",
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    from balgrad.cli import main

    assert main(argv) == 0
    checkpoints = sorted(out.rglob("checkpoint*.pt"))
    assert checkpoints, "the run wrote no checkpoint"
    for path in checkpoints:
        with zipfile.ZipFile(path) as z:
            (name,) = [n for n in z.namelist() if n.endswith("data.pkl")]
            names = _globals_of(z.read(name))
        assert names and not [n for n in names if n.startswith("balgrad")], (path, names)
