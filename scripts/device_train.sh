#!/usr/bin/env bash
# One lent-GPU session for the model work, prepared to fit its 15 minutes (the machine's start
# included) in one `device run` command:
#   1. the trainer's step-time breakdown (data / forward / backward, ms per step) and the GPU's busy
#      share, with the training views made per face on the CPU (--device-augment off, "before")
#      and on the GPU in batches (on, "after"), for the compact model and the accurate one;
#   2. the accurate model trained with --time-budget;
#   3. its best checkpoint as fp16 weights (FAN-4: ~48 MB, back in 15 MB pieces) and every log.
#
# Here, once:  ../shared/tools/device_kit.sh pack      (the faces, 256 px JPEG, into .device-data/)
# Device:      run  command="bash scripts/device_train.sh"  carry=[".device-data"]  timeout_s=600
# Back here:   cat <files_at>/ship.tgz.* | tar xzf -     (-> runs/device/)
#              python scripts/ship_default_model.py runs/device/accurate/shipped/shfan_accurate.pt --name accurate --to DIR
#
# Time: 4 probes of PROBE_MIN (0.25) minutes of training, ~1 min each with loading and validation,
# then ACCURATE_MIN (3.5) minutes of training: ~8.5 min, under one command's 10-minute limit.
# Knobs (environment): PROBE_MIN, ACCURATE_MIN, STACKS/WIDTH/SIZE (the accurate model: 4/256/256),
# BATCH (32).
# TINY=1 runs the whole script on a CPU in about a minute with a toy model (what tests/ does).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-.device-data/faces68}
RUNS=${RUNS:-runs/device}
PROBE_MIN=${PROBE_MIN:-0.25}
ACCURATE_MIN=${ACCURATE_MIN:-3.5}
STACKS=${STACKS:-4} WIDTH=${WIDTH:-256} SIZE=${SIZE:-256} BATCH=${BATCH:-32}
COMPACT="--stacks 2 --width 128 --input-size 128 --batch-size 16"
PY=${PYTHON:-python3}
if [ "${TINY:-0}" = 1 ]; then
  PROBE_MIN=0.1 ACCURATE_MIN=0.2 STACKS=1 WIDTH=16 SIZE=64 BATCH=4
  COMPACT="--stacks 1 --width 16 --input-size 64 --batch-size 4"
fi
for d in helen_train lfpw_train afw; do
  [ -d "$DATA/$d" ] || { echo "no $DATA/$d: run ../shared/tools/device_kit.sh pack here first and carry .device-data"; exit 2; }
done
if [ "${TINY:-0}" != 1 ] && [ -f .device-data/device_kit.sh ]; then bash .device-data/device_kit.sh setup; fi
mkdir -p "$RUNS"
train() {  # train NAME MINUTES ARGS...: one shfan-train run, its GPU busy share sampled twice a second
  local name=$1 minutes=$2; shift 2
  local util=
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 500 > "$RUNS/$name.util" &
    util=$!
  fi
  local t0=$SECONDS
  $PY -m shfan train --data "$DATA/helen_train" --data "$DATA/lfpw_train" --extra-data "$DATA/afw" \
      --time-budget "$minutes" --out "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1 || echo "$name failed: see $RUNS/$name.log"
  if [ -n "$util" ]; then kill "$util" 2>/dev/null || true; fi
  echo "$name: $((SECONDS - t0)) s"
}
# 1. before / after, compact and accurate (probes: no decoder tuning, one validation at the end)
for aug in off on; do
  train "probe_compact_$aug" "$PROBE_MIN" $COMPACT --device-augment $aug --no-tune --val-every 1000
  train "probe_accurate_$aug" "$PROBE_MIN" --stacks "$STACKS" --width "$WIDTH" --input-size "$SIZE" \
      --batch-size "$BATCH" --device-augment $aug --no-tune --val-every 1000
done
# 2. the accurate model
train accurate "$ACCURATE_MIN" --stacks "$STACKS" --width "$WIDTH" --input-size "$SIZE" --batch-size "$BATCH" \
    --lr 1e-3 --loss awing --consistency 2.3 --val-every 2
# 3. what comes back: the step-time table, fp16 weights, the logs
$PY benchmarks/step_time_table.py "$RUNS" > "$RUNS/step_times.md" || true
cat "$RUNS/step_times.md" || true
if [ -f "$RUNS/accurate/best.pt" ]; then  # fp16 weights + provenance, as the package stores them
  $PY scripts/ship_default_model.py "$RUNS/accurate/best.pt" --name accurate --to "$RUNS/accurate/shipped" \
      --no-onnx > /dev/null
fi
if [ -n "${OUT:-}" ]; then
  find "$RUNS" -name "last.pt" -delete
  rm -f "$RUNS/accurate/best.pt" "$RUNS"/probe_*/best.pt
  tar czf - "$RUNS" | split -b 15M - "$OUT/ship.tgz."
  ls -la "$OUT"
fi
