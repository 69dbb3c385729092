#!/usr/bin/env bash
# One GPU session's checks, prepared in advance (issue 9): everything it measures lands under $OUT.
#
#   on a lent CUDA machine (the device tool runs this in the repository root with $OUT set;
#   carry the datasets in ./data, e.g. data/fashion-mnist/*-ubyte.gz):
#       bash bench/device_check.sh                       # about 8 minutes in all
#   on this CPU, the dry run that the test suite executes so that the script cannot rot:
#       DRY=1 OUT=/tmp/device-check bash bench/device_check.sh
#
# Steps, each under its own time limit so that one slow step cannot eat the others' time:
#   env.txt                  the machine: GPU, driver, python, torch
#   cuda_tests.log           the test suite's CUDA tests (pytest -m cuda: CUDA against CPU / eager)
#   synthesis.{md,json,log}  bench_synthesis at the paper's loop sizes on the GPU: the reference
#                            loop vs the package eager / compiled / compiled with bf16 real gradients
#                            (dc-ipc1 K=10 T=5, dcc-ipc10 K=10 T=50, real batch 256)
#   evaluation.{md,json,log} bench_evaluation: original-style vs package eager / compiled / stacked
#   paper-{dc,dcc}.{log,jsonl} as much of the paper-protocol Fashion-MNIST ipc-1 DC and DCC runs as
#                            fits: the evaluation at iteration 0 and seconds per iteration
#   steps.txt                each step's exit status, seconds and limit
# The device tool returns at most 8 files, so the step files are also packed into one
# device_check.tar.gz (written on exit, even when a step runs out of time); steps.txt and
# env.txt stay beside it as plain text.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=${DRY:-0}
OUT=${OUT:?set OUT to the folder the results go to}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PYTHON=${PYTHON:-python3}
if [ "$DRY" = 1 ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "$DRY" = 1 ]; then  # seconds on a CPU: the same steps on tiny settings
    DEVICE=cpu
    T_TESTS=120 T_SYN=150 T_EVAL=120 T_PAPER=90
    SYN_ARGS=(--dry --threads 1 --compile off --cases dc-ipc1 dcc-ipc10 --implementations reference package-eager)
    EVAL_ARGS=(--dry --threads 1 --compile off --implementations original package-eager)
    PAPER_ARGS=(--dataset sklearn-digits --set network=convnet-w32 --set iterations=2 --set outer_warmup=1 --set real_batch=8
                --set eval_at=0,2 --set evaluation.num_networks=1 --set evaluation.epochs=1 --set compile=off
                --set evaluation.compile=off --threads 1)
else
    DEVICE=cuda
    T_TESTS=60 T_SYN=170 T_EVAL=80 T_PAPER=75
    SYN_ARGS=(--device cuda --threads 4 --cases dc-ipc1 dcc-ipc10 --iterations 2 --no-flops
              --implementations reference package-eager package-compiled package-compiled-bf16
                             package-compiled-bf16-real-and-train)
    EVAL_ARGS=(--device cuda --ipc 1,10 --dsa-ipc 10 --networks 20 --epochs 50
               --implementations original package-eager package-compiled stacked)
    PAPER_ARGS=(--dataset fashion-mnist)
fi

pack() {
    cp "$OUT/steps.txt" "$OUT/env.txt" "$WORK"/ 2>/dev/null
    tar -czf "$OUT/device_check.tar.gz" -C "$WORK" . 2>/dev/null
    rm -rf "$WORK"
}
trap pack EXIT

step() {  # step NAME SECONDS COMMAND...: run under a time limit, log to NAME.log, record the status
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout --signal=INT --kill-after=15 "$limit" "$@" >"$WORK/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - started)) limit=$limit" | tee -a "$OUT/steps.txt"
}

{
    date -u
    echo "DRY=$DRY DEVICE=$DEVICE"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
} >"$OUT/env.txt" 2>&1
: >"$OUT/steps.txt"

step cuda_tests "$T_TESTS" "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests/condense/test_cuda.py
step synthesis "$T_SYN" "$PYTHON" bench/bench_synthesis.py "${SYN_ARGS[@]}" --json "$WORK/synthesis.json" --out "$WORK/synthesis.md"
step evaluation "$T_EVAL" "$PYTHON" bench/bench_evaluation.py "${EVAL_ARGS[@]}" --json "$WORK/evaluation.json" --out "$WORK/evaluation.md"
for method in dc dcc; do
    run="$WORK/paper-$method"
    step "paper-$method" "$T_PAPER" "$PYTHON" -m condense run "${PAPER_ARGS[@]}" --method "$method" --ipc 1 \
        --device "$DEVICE" --no-progress --out "$run"
    [ -f "$run/metrics.jsonl" ] && cp "$run/metrics.jsonl" "$WORK/paper-$method.jsonl"
    rm -rf "$run"
done
echo "done" | tee -a "$OUT/steps.txt"
