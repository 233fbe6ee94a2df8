"""The integrations stay optional: importing balgrad (its CLI included) never imports
Lightning or accelerate."""

import os
import subprocess
import sys
from pathlib import Path

import balgrad

FRAMEWORKS = ("lightning", "pytorch_lightning", "lightning_fabric", "accelerate")


def test_importing_balgrad_imports_no_training_framework():
    code = (
        "import sys, balgrad, balgrad.integrations, balgrad.cli, balgrad.experiment; "
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    src = str(Path(balgrad.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
