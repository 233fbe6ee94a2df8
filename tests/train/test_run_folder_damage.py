"""Every file of a finished run folder, damaged in several ways (emptied, cut in half, of
another type, with other keys), then `report`, `evaluate` and `--resume` on it: none
ends in a traceback. Each either repairs what it needs (exit 0, the derived file whole
again) or stops with `balgrad: error:` naming the damaged file (exit 2)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from cli_children import TINY
from safetensors.torch import load_file, save_file

from balgrad.cli import main
from balgrad.report._runfiles import read_eval

SEED = Path("joint/seed0")
#: every file a finished run folder holds (checked against the folder itself below)
FILES = [
    "config.yaml",
    "results.json",
    "report.md",
    "table.md",
    "table.csv",
    "table.json",
    "condition_bars.png",
    "loss_curves.png",
    *(
        str(SEED / name)
        for name in (
            "checkpoint.pt",
            "checkpoint.prev.pt",
            "model.safetensors",
            "eval.json",
            "epochs.jsonl",
            "metrics.jsonl",
            "tokenizer.json",
        )
    ),
]


def train_argv(out: Path) -> list[str]:
    return [
        "train",
        "--method",
        "joint",
        *TINY,
        "--dataset-option",
        "n_train=100",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--name",
        "r",
        "--cache-dir",
        str(out.parent / "cache"),
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("damage") / "runs"
    assert main(train_argv(out)) == 0
    return out


def other_keys(path: Path) -> bytes:
    """The file with other entries than balgrad writes (the type it should have)."""
    if path.suffix == ".pt":  # a checkpoint without its model
        state = torch.load(path, weights_only=True)
        del state["model"]
        torch.save(state, path)
    elif path.suffix == ".safetensors":  # weights of another model
        save_file({"other.weight": torch.zeros(2)}, str(path))
    else:
        path.write_bytes(b'{"unexpected": 1}\n')
    return path.read_bytes()


DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "other_type": lambda p: p.write_bytes(b"[1, 2, 3]\n"),
    "other_keys": other_keys,
}
COMMANDS = {
    "report": lambda out: ["report", str(out / "r")],
    "evaluate": lambda out: ["evaluate", str(out / "r")],
    "resume": lambda out: [*train_argv(out), "--resume"],
}


def contents(run: Path, but: str = "") -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in run.rglob("*")
        if p.is_file() and str(p.relative_to(run)) != but
    }


def test_the_cases_cover_every_file_of_a_finished_run_folder(finished):
    held = sorted(str(p.relative_to(finished / "r")) for p in (finished / "r").rglob("*"))
    assert held == sorted([*FILES, "joint", str(SEED)])


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_file_is_repaired_or_named_never_a_traceback(
    finished, tmp_path, capsys, name, damage
):
    for command, args in COMMANDS.items():
        out = tmp_path / command / "runs"
        shutil.copytree(finished, out)
        DAMAGE[damage](out / "r" / name)
        capsys.readouterr()
        code = main(args(out))  # a traceback would be an exception raised here
        err = capsys.readouterr().err
        where = f"{command} with {name} {damage}"
        if code == 2:
            assert "balgrad: error:" in err and Path(name).name in err, (where, err)
            assert contents(out / "r", but=name) == contents(finished / "r", but=name), where
            continue
        assert code == 0, where
        seed = out / "r" / SEED
        if command != "report":  # evaluate and --resume leave the scores whole
            read_eval(seed / "eval.json", complete=command == "resume")
        if command == "resume":  # and the weights, which it derives from the checkpoint
            load_file(str(seed / "model.safetensors"))


def test_resume_recomputes_a_damaged_eval_json_with_the_same_scores(finished, tmp_path, caplog):
    out = tmp_path / "runs"
    shutil.copytree(finished, out)
    path = out / "r" / SEED / "eval.json"
    before = read_eval(path, complete=True)
    path.write_bytes(path.read_bytes()[: 1024 if path.stat().st_size > 1024 else 10])
    with caplog.at_level(logging.WARNING, logger="balgrad"):
        assert main([*train_argv(out), "--resume"]) == 0
    assert f"{path} is damaged" in caplog.text and "Recomputing it" in caplog.text
    after = read_eval(path, complete=True)
    assert (
        after["conditions"] == before["conditions"] and after["best_epoch"] == before["best_epoch"]
    )
    # the whole run's training time, which the checkpoint kept, not the repair's
    elapsed = torch.load(path.parent / "checkpoint.pt", weights_only=True)["elapsed"]
    assert after["train_seconds"] >= elapsed > 0


def test_evaluate_checks_every_model_before_it_rewrites_any_eval_json(finished, tmp_path, capsys):
    out = tmp_path / "runs"
    shutil.copytree(finished, out)
    run = out / "r"
    shutil.copytree(run / SEED, run / "joint" / "seed1")  # a second seed, whose model is cut
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("seeds:\n- 0\n", "seeds:\n- 0\n- 1\n"))
    weights = run / "joint" / "seed1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    before = (run / SEED / "eval.json").read_bytes()
    assert main(["evaluate", str(run), "--eval-seed", "3"]) == 2
    assert str(weights) in capsys.readouterr().err
    assert (run / SEED / "eval.json").read_bytes() == before  # seed 0 was not rescored
