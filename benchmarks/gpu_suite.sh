#!/usr/bin/env bash
# The GPU measurements of issue 11 in ONE script: device exactness of exact BalGrad and
# balgrad_fast, then the step cost and peak memory of every method in fp32 and in bf16
# (ViT-base + BERT-base towers from configs, batch 32). Every part is time-boxed; the
# boxes add up to 7.7 minutes, the expected total is about 3.
#
#   bash benchmarks/gpu_suite.sh          # from the repository root, on the GPU machine
#
# It uses the python3 on the PATH (override with PYTHON=...) and needs only torch and
# transformers there (balgrad is imported from ./src; numpy and tqdm come with torch's
# usual environments). Results go to $OUT (default ./gpu_out): suite.log (progress with
# time stamps), env.txt, check.txt/json, cost_fp32.txt/json, cost_bf16.txt/json.
#
# BALGRAD_SUITE_TINY=1 runs the whole script on the CPU with tiny towers (a dry run).
# BALGRAD_SUITE_STEPS=N sets the timed repetitions per method (default 15);
# BALGRAD_SUITE_METHODS="joint floor ..." the methods (default: all of strategy_cost.py).
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
log "gpu_suite: done"
