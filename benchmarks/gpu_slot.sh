#!/bin/bash
# One GPU slot's work for issue 17, prepared on the CPU machine and run on a lent GPU in one device call.
#   here, once:  bash tools/device_wheels.sh            # .whl/: the packages the GPU image lacks (ignored by git)
#                mkdir -p .data && cp ../shared/data/cifar10_subset.npz .data/ && echo /.data/ >> .git/info/exclude
#   there:       device run: command "bash benchmarks/gpu_slot.sh", carry [".whl", ".data"], timeout_s 580
# What it measures lands in $OUT with the device's name (copy it to benchmarks/results/ and nbs/results/ here):
#   device.csv       nvidia-smi's name, memory and driver
#   gpu.json/.log    benchmarks/gpu.py: APGD / pyautoattack, soup grid / plain passes, training / (steps + 1) plain passes
#   e2e.tgz, e2e.log the cifar10-subset-gpu configuration (WideResNet-28-10) end to end: its report and tables, no weights
# Checkpoints of WideResNet-28-10 (146 MB each) cannot come back from a device call (16 MB a file), so a run cut off
# by the slot starts over on the next machine; the time limits below leave the benchmark its share first.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_slot_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ROBUST_SOUPS_SHARED_DATA=$PWD/.data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.csv"
timeout "${BENCH_S:-240}" python3 benchmarks/gpu.py --repeats 2 --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
timeout "${E2E_S:-270}" python3 -m robust_soups run cifar10-subset-gpu --out /tmp/e2e --no-progress --data-root .data/cifar10_subset.npz 2>&1 | tee "$OUT/e2e.log"
(cd /tmp/e2e 2>/dev/null && find . -name '*.csv' -o -name '*.md' -o -name '*.json' -o -name '*.png' | grep -v '/cache/' | tar czf "$OUT/e2e.tgz" -T -)
ls -la "$OUT"
