"""`torchrun --nproc_per_node 2 -m balgrad.cli compare` end to end (gloo, CPU): one run
folder, written by rank 0 alone, complete and consistent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch.distributed as dist
import yaml
from cli_children import TINY

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_compare_writes_one_complete_run_folder(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "balgrad.cli",
        "compare",
        *TINY,
        "--methods",
        "balgrad",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--name",
        "ddp",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "ddp"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ddp"]  # one run folder
    assert not (run / "run.lock").exists()  # rank 0 took it, and released it
    assert "in use by another balgrad process" not in proc.stderr
    assert proc.stdout.count("run folder:") == 1  # rank 0 alone reports
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "fp32"
    seed_dir = run / "balgrad" / "seed0"
    rows = [json.loads(x) for x in (seed_dir / "metrics.jsonl").open()]
    # 144 training samples over 2 ranks x batch 32: 2 full global steps per epoch
    # (drop_last), each logged once
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    epochs = [json.loads(x) for x in (seed_dir / "epochs.jsonl").open()]
    assert [e["epoch"] for e in epochs] == [0, 1]
    evaluation = json.loads((seed_dir / "eval.json").read_text())
    assert evaluation["method"] == "balgrad" and "full" in evaluation["conditions"]
    for name in ("model.safetensors", "checkpoint.pt", "checkpoint.prev.pt"):
        assert (seed_dir / name).stat().st_size > 0, name
    for name in ("table.md", "table.json", "results.json", "report.md"):
        assert (run / name).stat().st_size > 0, name
