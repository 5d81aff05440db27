#!/usr/bin/env bash
# The checks of issue 10 that need a CUDA GPU, as one short script for a lent device session:
#   1. refinement throughput on CUDA against 1 CPU thread (bench_refine.py on cached template-
#      matching proposals, and a tiled batch to see how it scales);
#   2. the batched dictionary chain with the refinement on CUDA and on the CPU, side by side
#      (bench_accuracy.py, the same noisy bicrystals of seed 1010);
#   3. the shipped bicrystal model trained further on images simulated on the fly
#      (edorient train --simulate random --init pretrained:anatase-bicrystal), CUDA, a time limit;
#   4. the map's indexing on CUDA and on the CPU (bench_map_device.py; in the 2026-12-04 session it
#      ran as a second, separate call).
#
#   OUT=/tmp/dev CACHE=/tmp/refine200.npz bash benchmarks/device_check.sh
#
# CACHE: an npz made beforehand on any machine by
#   python benchmarks/bench_refine.py --n 200 --passes 1 --seed 11 --cache CACHE
# (template matching is CPU work; the device only refines). Everything is logged to $OUT/log.txt;
# the run's best.pt, metrics.csv, learning_curve.png and config.json are copied to $OUT. Sizes
# come from the environment, so the script can be tried on a CPU first with tiny values:
#   DEVICE=cpu TRAIN_S=20 EPOCH=512 VAL=64 WORKERS=2 N_ACC=4 TILE=2 OUT=/tmp/dry CACHE=... bash benchmarks/device_check.sh
set -u
OUT=${OUT:-/tmp/edorient_device}
CACHE=${CACHE:?give CACHE=the npz of bench_refine.py --cache}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
TRAIN_S=${TRAIN_S:-240}      # training seconds (validation excluded)
EPOCH=${EPOCH:-500000}       # simulated images per epoch
VAL=${VAL:-10000}            # validation images (one fixed draw)
WORKERS=${WORKERS:-14}       # DataLoader processes simulating images
BATCH=${BATCH:-128}
N_ACC=${N_ACC:-500}          # bicrystals of bench_accuracy
TILE=${TILE:-8}
SEED=${SEED:-41}             # seed of the simulated training images (no shipped model or test set uses it)
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
RUN=$(mktemp -d)/run
{
  echo "## environment ($(date -u +%FT%TZ))"
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, numpy, numba; print(torch.__version__, numpy.__version__, numba.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  echo "cpus: $(nproc --all)"

  echo; echo "## 1. refinement throughput (bench_refine.py, proposals from $CACHE)"
  for dev in cpu "$DEVICE"; do
    timeout 240 $PY benchmarks/bench_refine.py --n 200 --passes 1 --seed 11 --cache "$CACHE" --device "$dev" \
      --threads 1 --tile "$([ "$dev" = cpu ] && echo 1 || echo "$TILE")" || echo "bench_refine on $dev failed (exit $?)"
  done

  echo; echo "## 2. dictionary chain, refinement on $DEVICE and on the CPU ($N_ACC noisy bicrystals, seed 1010)"
  timeout 300 $PY benchmarks/bench_accuracy.py --n "$N_ACC" --tm-n 0 --py4dstem-n 0 --calib-n 0 --device cpu \
    --out "$RUN.acc_cpu" > "$RUN.acc_cpu.log" 2>&1 &
  cpu_job=$!
  timeout 300 $PY benchmarks/bench_accuracy.py --n "$N_ACC" --tm-n 0 --py4dstem-n 0 --calib-n 0 --device "$DEVICE" \
    --out "$RUN.acc_dev" || echo "bench_accuracy on $DEVICE failed (exit $?)"
  wait $cpu_job || echo "bench_accuracy on cpu failed"
  echo "### the same on cpu (run beside it, 1 thread each)"; cat "$RUN.acc_cpu.log"

  echo; echo "## 3. training the shipped bicrystal model further on simulated images ($TRAIN_S s, $WORKERS workers)"
  timeout $((TRAIN_S + 240)) $PY -m edorient train --simulate random --size 128 --ratio 0.35:0.65 \
    --dose 300:100000 --background 0:0.002 --data-seed "$SEED" --epoch-size "$EPOCH" --val-size "$VAL" \
    --preset cpu --arch compact-s --init pretrained:anatase-bicrystal --batch-size "$BATCH" --lr 1e-3 \
    --warmup-steps 300 --epochs 1000 --time-limit "$TRAIN_S" --workers "$WORKERS" --device "$DEVICE" \
    --no-progress --out "$RUN" || echo "training failed (exit $?)"
  cat "$RUN/metrics.csv" 2>/dev/null
  for f in best.pt metrics.csv learning_curve.png config.json; do cp "$RUN/$f" "$OUT/" 2>/dev/null; done
  echo; echo "## 4. the map's indexing on $DEVICE and on the CPU"
  timeout 240 $PY benchmarks/bench_map_device.py "$DEVICE" cpu || echo "bench_map_device failed (exit $?)"
  echo "## done ($(date -u +%FT%TZ))"
} 2>&1 | tee "$OUT/log.txt"
