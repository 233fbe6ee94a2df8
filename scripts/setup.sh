#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with balgrad,
# all its optional extras and the test tools. Safe to run again (fast when done).
#
#   BALGRAD_TORCH   the torch requirement (default torch==2.13.0, the CPU build)
#   BALGRAD_VENV    where the environment goes (default .venv)
#   BALGRAD_EXTRAS  which extras (default: the full set below; CI's minimal install: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${BALGRAD_VENV:-.venv}
# The full set of optional extras.
FULL_EXTRAS="pretrained,tensorboard,lightning,hf"
EXTRAS=${BALGRAD_EXTRAS:-$FULL_EXTRAS,dev}
say() { echo "setup: $*" >&2; }
start=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# torch first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
# Set BALGRAD_TORCH to install another build (e.g. "torch==2.5.1" on a GPU machine).
TORCH=${BALGRAD_TORCH:-torch==2.13.0}
say "installing $TORCH into $VENV (the CPU build by default; a few minutes the first time)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH"
say "installing balgrad with the extras [$EXTRAS] and their dependencies"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
say "done in $((SECONDS - start)) s: $VENV/bin/balgrad --version prints $("$VENV/bin/balgrad" --version)"
