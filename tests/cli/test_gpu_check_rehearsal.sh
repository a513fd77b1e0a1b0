#!/usr/bin/env bash
# Rehearsal of the first GPU run (issue 16) on a machine without a GPU: the bundle that
# jobs/bundle/make_bundle.sh packs from this build starts (run.sh --check: every binary
# and Open MPI / PMIx plugin finds its libraries; run.sh curaclip info prints the
# device report; a unit test that starts MPI as a singleton runs from the bundle with
# the bundle's Open MPI plugins), and jobs/gpu/check.sh run from that bundle writes the
# whole results folder: summary.txt with the plan (7 steps, limits adding to 510 s
# <= 10 min) and one result line per step, step 1 run, steps 2-7 "skipped: no GPU",
# at most 8 files (what one device call brings back), exit 0.
#   usage: test_gpu_check_rehearsal.sh path/to/curaclip   (the build folder is its folder)
# Where this machine has a usable GPU the skipping form cannot be rehearsed: prints
# "skipped: ..." and exits 0.
set -u
BIN=$(realpath "${1:?usage: $0 path/to/curaclip}")
BUILD=$(dirname "$BIN")
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
[ -n "${KEEP:-}" ] && { echo "keeping $W"; trap - EXIT; }
pass=0; fail=0
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}

if "$BIN" info 2>/dev/null | grep -Eq '^ +cuda +available'; then
  echo "skipped: a usable GPU is present (run jobs/gpu/check.sh for real)"
  exit 0
fi

B="$W/curaclip-bundle"
bash "$REPO/jobs/bundle/make_bundle.sh" --build "$BUILD" --out "$B" > "$W/bundle.log" 2>&1
check "make_bundle.sh packs the build" test $? -eq 0
check "bundle has run.sh, curaclip, curaclip_tests, bench_train_step, check.sh" \
  test -x "$B/run.sh" -a -x "$B/bin/curaclip" -a -x "$B/bin/curaclip_tests" -a -x "$B/bin/bench_train_step" \
  -a -x "$B/jobs/gpu/check.sh"
check "bundle carries Open MPI's plugins" test -f "$B/lib/openmpi/mca_ess_singleton.so"

"$B/run.sh" --check > "$W/check.log" 2>&1
rc=$?
check "run.sh --check: every library resolves" test $rc -eq 0
check "run.sh --check says so" grep -q "^all libraries resolve$" "$W/check.log"
[ $rc -eq 0 ] || cat "$W/check.log"

# The device report from the bundle, with nothing of the build's library paths.
env -u LD_LIBRARY_PATH "$B/run.sh" curaclip info > "$W/info.log" 2>&1
check "run.sh curaclip info exits 0" test $? -eq 0
check "device report: backends" grep -Eq '^ +cpu +available' "$W/info.log"
check "device report: CUDA line" grep -Eq '^CUDA: ' "$W/info.log"

# MPI as a singleton, Open MPI's plugins taken from the bundle only.
env -u LD_LIBRARY_PATH "$B/run.sh" curaclip_tests --gtest_filter='DatasetWithMpi.LoaderRefusesABadTokenRowBeforeTheFirstBatch' \
  > "$W/mpi.log" 2>&1
check "a singleton MPI test runs from the bundle" test $? -eq 0
grep -q "1 test" "$W/mpi.log" || { echo "  (no such test in this build)"; tail -5 "$W/mpi.log"; }

# The check itself, in its skipping form.
O="$W/out"
bash "$B/jobs/gpu/check.sh" --bundle "$B" --out "$O" > "$W/gpu_check.log" 2>&1
rc=$?
check "check.sh exits 0 without a GPU" test $rc -eq 0
[ $rc -eq 0 ] || tail -20 "$W/gpu_check.log"
files=(summary.txt 01-device.txt 02-parity.txt 03-curve.txt 04-nccl.txt 05-bench-b32.txt 06-bench-b16.txt
       07-jest-kmeans.txt)
for f in "${files[@]}"; do check "results folder has $f" test -s "$O/$f"; done
n=$(find "$O" -mindepth 1 | wc -l)
check "results folder holds exactly those 8 files (one device call brings back 8)" test "$n" -eq 8
check "summary: the plan adds to 510 s" grep -q "total limit: 510 s" "$O/summary.txt"
check "summary: GPU no" grep -q "^GPU: no (" "$O/summary.txt"
check "summary: step 1 ok" grep -Eq '^  1 device +ok ' "$O/summary.txt"
for s in "2 parity" "3 curve" "4 nccl" "5 bench-b32" "6 bench-b16" "7 jest-kmeans"; do
  num=${s%% *} name=${s#* }
  check "summary: step $num skipped: no GPU" grep -Eq "^  $num $name +skipped: no GPU" "$O/summary.txt"
  f=$(printf '%02d-%s.txt' "$num" "$name")
  check "$f says skipped: no GPU" grep -q "^skipped: no GPU" "$O/$f"
done
check "step 1 holds the device report" grep -Eq '^CUDA: ' "$O/01-device.txt"
check "step 1 holds the library check" grep -q "all libraries resolve" "$O/01-device.txt"
check "summary ends with the total" grep -q "no step failed" "$O/summary.txt"

echo "gpu check rehearsal: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
