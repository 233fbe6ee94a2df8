"""Every field of ``config.RESUME_NEUTRAL`` is neutral for real: a run trained with it
changed, and a run resumed after epoch 1 with it changed, leave every file of the run
folder bitwise equal to the unchanged run's (timings and the changed field itself aside).
The fields are read from config.py, so a field added there is tested here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from cli_children import TINY

from balgrad.cli import main
from balgrad.config import RESUME_NEUTRAL, RunConfig

BASE = {"out": "runs", "name": "r", "cache_dir": "cache"}  # under the test's folder
#: the files whose timing fields differ between any two runs
TIMED = {"eval.json": ("train_seconds",), "results.json": ("train_seconds",)}


def argv(root: Path, **values) -> list[str]:
    paths = {k: values.get(k, v) for k, v in BASE.items()}
    flags = [
        "train",
        "--method",
        "joint",
        *TINY,
        "--dataset-option",
        "n_train=100",  # 3 steps an epoch
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--out",
        str(root / paths["out"]),
        "--name",
        paths["name"],
        "--cache-dir",
        str(root / paths["cache_dir"]),
    ]
    for name, value in values.items():
        if name in BASE:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags


def changed(field: str):
    """Another value of ``field`` than the base run's (TINY turns progress bars off)."""
    if field in BASE:
        return BASE[field] + "-other"
    default = {"progress": False}.get(field, RunConfig.model_fields[field].get_default())
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return 2 if default < 2 else 1  # workers on; the loop's host reads every step
    raise AssertionError(f"say here how to change the RESUME_NEUTRAL field {field!r}")


def run_folder(root: Path, **values) -> Path:
    paths = {k: values.get(k, v) for k, v in BASE.items()}
    return root / paths["out"] / paths["name"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("neutral")
    assert main(argv(root)) == 0
    return run_folder(root)


def normalised(path: Path, field: str, root: Path):
    """A file's content, less what may differ: timings, the test's own folder, and the
    changed field itself."""
    name = path.name
    if name == "config.yaml":
        cfg = yaml.safe_load(path.read_text().replace(str(root), "<root>"))
        return {k: v for k, v in cfg.items() if k != field}
    if name in TIMED:
        data = json.loads(path.read_text())
        records = data if isinstance(data, list) else [data]
        for record in records:
            for key in TIMED[name]:
                assert record.pop(key) > 0
        return data
    if name.endswith(".pt"):
        state = torch.load(path, weights_only=True)
        assert state.pop("elapsed") > 0
        return state
    return path.read_bytes()


def assert_equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_run(a: Path, b: Path, field: str) -> None:
    """``a``, ``b``: run folders in ``<root>/<out>/<name>``."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    extra = {
        p for p in files_b - files_a if not (field == "tensorboard" and "tensorboard" in p.parts)
    }
    assert files_a <= files_b and not extra, files_a ^ files_b
    assert Path("joint/seed0/model.safetensors") in files_a
    for rel in sorted(files_a):
        assert_equal(
            normalised(a / rel, field, a.parents[1]),
            normalised(b / rel, field, b.parents[1]),
            str(rel),
        )


def needs_extra(field: str) -> None:
    """A field whose changed value needs an optional extra: skip without it."""
    if field == "tensorboard":
        pytest.importorskip("torch.utils.tensorboard", reason="needs the tensorboard extra")


@pytest.mark.parametrize("field", sorted(RESUME_NEUTRAL))
def test_a_result_neutral_field_changed_for_a_whole_run_changes_no_file(base, tmp_path, field):
    needs_extra(field)
    value = changed(field)
    assert main(argv(tmp_path, **{field: value})) == 0
    assert_same_run(base, run_folder(tmp_path, **{field: value}), field)


@pytest.mark.parametrize("field", sorted(RESUME_NEUTRAL))
def test_a_result_neutral_field_changed_on_resume_changes_no_file(base, tmp_path, field):
    needs_extra(field)
    value = changed(field)
    folder = run_folder(tmp_path, **{field: value})
    shutil.copytree(base, folder)
    seed = folder / "joint" / "seed0"
    # as if killed in epoch 2: epoch 1's checkpoint, no model, no scores
    (seed / "checkpoint.prev.pt").replace(seed / "checkpoint.pt")
    (seed / "model.safetensors").unlink()
    (seed / "eval.json").unlink()
    assert main([*argv(tmp_path, **{field: value}), "--resume"]) == 0
    assert torch.load(seed / "checkpoint.prev.pt", weights_only=True)["epoch"] == 0  # resumed
    assert_same_run(base, folder, field)
