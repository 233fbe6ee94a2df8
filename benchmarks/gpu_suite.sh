#!/usr/bin/env bash
# The GPU measurements of issue 11 in ONE script: device exactness of exact BalGrad and
# balgrad_fast, then the step cost and peak memory of every method in fp32 and in bf16
# (ViT-base + BERT-base towers from configs, batch 32). Every part is time-boxed; the
# boxes add up to 7.7 minutes, the expected total is about 3.
#
#   bash benchmarks/gpu_suite.sh          # from the repository root, on the GPU machine
#
# It uses the python3 on the PATH (override with PYTHON=...): torch and transformers
# from there, balgrad from ./src. Importing balgrad also needs numpy, tqdm and pydantic
# (its option registry). Where pydantic is missing (a machine with no network), put its
# wheels in ./.whl first, on a machine with pip access, for the GPU machine's Python
# (3.12, x86-64); this script then installs them into a temporary folder:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5 typing-extensions==4.16.0
# Results go to $OUT (default ./gpu_out): suite.log (progress with time stamps), env.txt,
# check.txt/json, cost_fp32.txt/json, cost_bf16.txt/json.
#
# BALGRAD_SUITE_TINY=1 runs the whole script on the CPU with tiny towers (a dry run).
# BALGRAD_SUITE_STEPS=N sets the timed repetitions per method (default 15);
# BALGRAD_SUITE_METHODS="joint floor ..." the methods (default: all of strategy_cost.py).
# BALGRAD_SUITE_COMPARE=1 ALSO times `balgrad compare --config digits-scratch` (1 seed,
# towers trained from scratch, so no pretrained-encoder package is needed) on the device,
# in its own time box of 200 s: issue 11's wall time of the compare loop on a GPU. Run it
# as a separate call (BALGRAD_SUITE_ONLY_COMPARE=1 skips everything else): with it the
# boxes would pass a 10-minute limit. It needs scikit-learn, tokenizers, torchmetrics,
# safetensors and PyYAML importable (put their wheels in ./.whl as above).
# BALGRAD_SUITE_COMPARE_FLAGS="..." adds flags to that compare (the tests make it tiny).
# BALGRAD_SUITE_MODALITIES=1 ALSO measures the step cost for M = 2, 3 and 4 towers in bf16
# (strategy_cost.py --modalities 2 3 4, ViT-base/BERT-base towers), in a time box of 240 s:
# issue 15's cost by number of modalities. As the compare part, run it as its own call
# (BALGRAD_SUITE_ONLY_MODALITIES=1 skips everything else).
set -u
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
STEPS=${BALGRAD_SUITE_STEPS:-15}
METHODS=()
[ -n "${BALGRAD_SUITE_METHODS:-}" ] && read -r -a METHODS <<<"--methods $BALGRAD_SUITE_METHODS"
if [ "${BALGRAD_SUITE_TINY:-0}" = 1 ]; then
    DEV=cpu; MODEL=(--tiny); WARMUP=0; STEPS=${BALGRAD_SUITE_STEPS:-1}
    BOX_ENV=60; BOX_CHECK=120; BOX_FP32=180; BOX_BF16=180
else
    DEV=cuda; MODEL=(--size base --batch-size 32); WARMUP=3
    BOX_ENV=60; BOX_CHECK=90; BOX_FP32=170; BOX_BF16=140
fi

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/suite.log"; }

if ! "$PY" -c "import pydantic" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        log "installing the wheels in .whl (pydantic is missing)"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/balgrad-site .whl/*.whl 2>&1 | tail -n 3 | tee -a "$OUT/suite.log"
        export PYTHONPATH="/tmp/balgrad-site:$PYTHONPATH"
    else
        log "pydantic is missing and there is no .whl folder: balgrad will not import (see the header)"
    fi
fi

part() {  # part NAME SECONDS COMMAND...: run one time-boxed part, its output in NAME.txt
    local name=$1 box=$2 rc
    shift 2
    log "start $name (time box ${box} s)"
    timeout --kill-after=10 "$box" "$@" >"$OUT/$name.txt" 2>&1
    rc=$?
    tail -n 14 "$OUT/$name.txt" | tee -a "$OUT/suite.log"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        log "end $name: TIMED OUT after ${box} s"
    else
        log "end $name: exit $rc"
    fi
}

log "gpu_suite: device $DEV, $STEPS timed steps per method, output in $OUT"
if [ "${BALGRAD_SUITE_ONLY_COMPARE:-0}" = 1 ] || [ "${BALGRAD_SUITE_ONLY_MODALITIES:-0}" = 1 ]; then
    [ "${BALGRAD_SUITE_ONLY_COMPARE:-0}" = 1 ] && BALGRAD_SUITE_COMPARE=1
    [ "${BALGRAD_SUITE_ONLY_MODALITIES:-0}" = 1 ] && BALGRAD_SUITE_MODALITIES=1
else
part env "$BOX_ENV" "$PY" -c "
import sys, torch, transformers
print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda,
      '| transformers', transformers.__version__)
print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')
import balgrad.strategies
print('balgrad strategies:', ', '.join(balgrad.strategies.list_strategies()))
"
part check "$BOX_CHECK" "$PY" benchmarks/strategy_cost.py --device "$DEV" --check-only \
    --json "$OUT/check.json"
for precision in fp32 bf16; do
    box=$BOX_FP32
    [ "$precision" = bf16 ] && box=$BOX_BF16
    part "cost_$precision" "$box" "$PY" benchmarks/strategy_cost.py --device "$DEV" "${MODEL[@]}" \
        --precision "$precision" --steps "$STEPS" --warmup "$WARMUP" --progress \
        --json "$OUT/cost_$precision.json" "${METHODS[@]}"
done
fi
if [ "${BALGRAD_SUITE_COMPARE:-0}" = 1 ]; then
    part compare_scratch 200 bash -c "TIMEFORMAT='compare wall: %R s'; time '$PY' -m balgrad.cli \
        compare --config digits-scratch --device $DEV --precision auto --no-progress \
        --out '$OUT/compare' --name scratch --cache-dir '$OUT/compare-cache' \
        ${BALGRAD_SUITE_COMPARE_FLAGS:-}"
fi
if [ "${BALGRAD_SUITE_MODALITIES:-0}" = 1 ]; then
    part cost_modalities 240 "$PY" benchmarks/strategy_cost.py --device "$DEV" "${MODEL[@]}" \
        --precision bf16 --modalities 2 3 4 --steps "$STEPS" --warmup "$WARMUP" --progress \
        --json "$OUT/cost_modalities.json" "${METHODS[@]}"
fi
log "gpu_suite: done"
