#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with balgrad,
# its pretrained-encoder extras and the test tools. Safe to run again (fast when done).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
# Set BALGRAD_TORCH to install another build (e.g. "torch==2.5.1" on a GPU machine).
.venv/bin/python -m pip install -q --disable-pip-version-check "${BALGRAD_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[pretrained,tensorboard,lightning,hf,dev]"
