"""A real tiny training run with projection on: no post-projection cosine conflicts."""

from __future__ import annotations

import torch

from balgrad.cli import main
from balgrad.report._diagnostics import PROJECTED_TOL
from balgrad.train._metrics_log import read_jsonl


def test_projection_leaves_no_conflict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the feature/data cache goes under tmp_path
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(
            [
                "compare",
                "--image-backbone",
                "cnn",
                "--text-backbone",
                "small",
                "--epochs",
                "1",
                "--methods",
                "balgrad",
                "--dataset-option",
                "n_train=300",
                "--dataset-option",
                "n_test=100",
                "--no-sweep",
                "--no-progress",
                "--out",
                str(tmp_path),
                "--name",
                "run",
                "--device",
                "cpu",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    run = tmp_path / "run"
    rows = read_jsonl(run / "balgrad" / "seed0" / "metrics.jsonl")
    assert rows
    post = [r["cos_task_kl_projected"] for r in rows]
    assert min(post) >= -PROJECTED_TOL
    # wherever the raw cosine conflicted, the step was projected
    assert all(r["projected"] == 1.0 for r in rows if r["cos_task_kl"] < 0)
    assert (run / "conflicts.csv").exists() and (run / "report.md").exists()
