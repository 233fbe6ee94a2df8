"""A strategy, a backbone and a dataset shipped in their own installed package
(tests/plugins/balgrad_example_plugin, found through entry points) work in the real
command line: listed, trained by ``compare``, re-scored by ``evaluate``, labelled in
every report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "balgrad_example_plugin"


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Install the plug-in for real into a temporary target (never into the venv) and
    return a runner of ``python -m balgrad.cli`` with it on the path."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN, tmp / "src")  # the build writes egg-info beside it
    site = tmp / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    pip += ["--no-index", "--disable-pip-version-check", "-q", "--target", str(site)]
    proc = subprocess.run([*pip, str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(site.glob("balgrad_example_plugin-*.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "balgrad.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        )

    run.tmp = tmp
    return run


def test_the_plugin_is_listed_with_its_label_and_typed_options(cli):
    proc = cli("list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    blend = next(i for i, line in enumerate(lines) if line.startswith("  grad_blend:"))
    assert '"Grad blend"' in lines[blend] and "balgrad-example-plugin" in lines[blend]
    assert lines[blend + 1].strip() == "blend: float = 0.5"
    assert any(line.startswith("  pixels:") for line in lines)
    stripes = next(i for i, line in enumerate(lines) if line.startswith("  stripes:"))
    assert "built in" in lines[stripes]
    assert "n: int = 64" in lines[stripes + 1]


def test_the_plugin_trains_is_rescored_and_is_labelled_in_the_reports(cli):
    out = cli.tmp / "runs"
    common = ["--dataset", "stripes", "--image-backbone", "pixels", "--out", str(out)]
    common += ["--methods", "joint", "grad_blend", "--epochs", "1", "--batch-size", "16"]
    common += ["--embed-dim", "16", "--no-sweep", "--no-progress", "--cache-dir", str(out)]

    bad = cli("compare", *common, "--name", "bad", "--method-option", "grad_blend.blend=abc")
    assert bad.returncode == 2
    assert "strategy 'grad_blend': option 'blend' expects float, got 'abc'" in bad.stderr
    assert not (out / "bad").exists()

    run = out / "run"
    proc = cli("compare", *common, "--name", "run", "--method-option", "grad_blend.blend=0.25")
    assert proc.returncode == 0, proc.stderr
    trained = json.loads((run / "grad_blend" / "seed0" / "eval.json").read_text())
    assert trained["dataset"] == "stripes" and "full" in trained["conditions"]
    steps = (run / "grad_blend" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert steps and "loss_unimodal" in json.loads(steps[0])

    proc = cli("evaluate", str(run), "--image-noise", "0.2")
    assert proc.returncode == 0, proc.stderr
    rescored = json.loads((run / "grad_blend" / "seed0" / "eval.json").read_text())
    assert rescored["protocol"]["noise"] == {"image": 0.2, "text": 0.5}
    assert trained["protocol"]["noise"] == {"image": 0.5, "text": 0.5}

    for name in ("table.md", "report.md"):
        text = (run / name).read_text()
        assert "Grad blend" in text and "Baseline" in text, name
    assert "Grad blend" in proc.stdout  # the table evaluate prints
    assert (run / "condition_bars.png").stat().st_size > 0
    assert (run / "loss_curves.png").stat().st_size > 0
