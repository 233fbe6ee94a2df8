"""`--resume` continues a run folder only with its own settings, and its logs hold
exactly the steps an uninterrupted run would have logged."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import yaml
from cli_children import TINY, run

from balgrad.cli import main
from balgrad.config import RESUME_NEUTRAL, RESUME_ROUNDING_ONLY, RunConfig


def argv(out, *extra, name="r"):
    return [
        "compare",
        *TINY,
        "--methods",
        "mslr",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--name",
        name,
        "--cache-dir",
        str(out.parent / "cache"),
        *extra,
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "runs"
    assert main(argv(out)) == 0
    return out


@pytest.fixture
def copy(finished, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(finished, out)
    return out


def stored(out):
    return (out / "r" / "config.yaml").read_text()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--lr", "0.01", "--epochs", "2"], ["lr: 0.001 → 0.01", "epochs: 1 → 2"]),
        (["--dataset-option", "strength=0.9"], ["dataset_options:"]),
        (["--precision", "bf16"], ["precision: 'fp32' → 'bf16'"]),
        (["--seeds", "1"], ["seeds: [0] → [1]", "not drop [0]"]),
        (["--method-option", "mslr.window=3"], ["method_options.mslr: {} → {'window': 3}"]),
        (["--no-sweep", "--missing-ratio", "0.5"], ["missing_ratio: 1.0 → 0.5"]),
    ],
)
def test_a_resume_with_other_settings_is_refused_listing_them(finished, capsys, extra, expected):
    before = stored(finished)
    assert main([*argv(finished), *extra, "--resume"]) == 2
    err = capsys.readouterr().err
    for line in expected:
        assert line in err
    assert "old → new" in err and "Traceback" not in err
    assert stored(finished) == before  # config.yaml is written only after the check


def test_another_fusion_is_refused_before_any_model_is_built(finished, capsys, monkeypatch):
    import balgrad.experiment as experiment

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(experiment, "build_model", no_model)
    (finished / "r" / "mslr" / "seed0" / "eval.json").rename(finished / "eval.json.bak")
    try:
        assert main([*argv(finished), "--fusion", "sum", "--resume"]) == 2
    finally:
        (finished / "eval.json.bak").rename(finished / "r" / "mslr" / "seed0" / "eval.json")
    err = capsys.readouterr().err
    assert "fusion: 'concat' → 'sum'" in err and "size mismatch" not in err


def test_result_neutral_fields_may_change_and_seeds_and_methods_may_grow(copy, caplog):
    extra = ["--log-every", "3", "--num-workers", "0", "--progress", "--device", "cpu"]
    grown = ["--seeds", "0", "1", "--methods", "mslr", "agm", "--method-option", "agm.alpha=0.5"]
    with caplog.at_level(logging.WARNING, logger="balgrad"):
        assert main([*argv(copy), *extra, *grown, "--resume"]) == 0
    assert "device: 'auto' → 'cpu'" in caplog.text  # rounding only: allowed, with a warning
    cfg = yaml.safe_load(stored(copy))
    assert cfg["seeds"] == [0, 1] and cfg["methods"] == ["mslr", "agm"]
    assert cfg["log_every"] == 3 and cfg["method_options"] == {"agm": {"alpha": 0.5}}
    for method, seed in [("mslr", 1), ("agm", 0), ("agm", 1)]:
        assert (copy / "r" / method / f"seed{seed}" / "eval.json").exists()


def test_a_config_from_before_precision_resumes_as_fp32(copy):
    cfg = yaml.safe_load(stored(copy))
    assert cfg.pop("precision") == "fp32"  # recorded resolved
    (copy / "r" / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main([*argv(copy), "--resume"]) == 0
    assert main([*argv(copy), "--precision", "bf16", "--resume"]) == 2


def test_every_result_neutral_field_is_a_config_field():
    assert set(RESUME_NEUTRAL) | set(RESUME_ROUNDING_ONLY) <= set(RunConfig.model_fields)
    assert "precision" not in RESUME_NEUTRAL and "seeds" not in RESUME_NEUTRAL


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_a_kill_after_200_steps_without_a_checkpoint_leaves_no_duplicate_rows(tmp_path, caplog):
    one_epoch = [
        "train",
        "--method",
        "joint",
        *TINY,
        "--batch-size",
        "1",  # over 200 steps in epoch 1: past the logger's first 200-row write
        "--dataset-option",
        "n_train=240",
        "--epochs",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path),
    ]
    assert run([*one_epoch, "--name", "straight"], tmp_path / "a.log") == 0
    killed = [*one_epoch, "--name", "killed"]
    assert run(killed, tmp_path / "b.log", ("step", 205, "kill")) == -9
    log = tmp_path / "killed" / "joint" / "seed0" / "metrics.jsonl"
    assert len(rows(log)) == 200 and not (log.parent / "checkpoint.pt").exists()
    with log.open("a") as f:
        f.write('{"step": 200, "epoch": 0, "meth')  # and a line cut off mid-write
    assert run([*killed, "--resume"], tmp_path / "c.log") == 0
    assert "dropped 1 unreadable line" in (tmp_path / "c.log").read_text()
    straight = rows(tmp_path / "straight" / "joint" / "seed0" / "metrics.jsonl")
    assert len(straight) > 205
    assert rows(log) == straight
