#!/usr/bin/env bash
# The first run of the CUDA backend on a GPU node, in one call of at most 10 minutes:
# every check in order of importance, from a bundle packed on a build machine
# (jobs/bundle/make_bundle.sh; nothing is compiled here), each step's result written
# the moment it finishes, so a run cut off at any point keeps the steps before it.
#
#   jobs/gpu/check.sh [--bundle DIR] [--out DIR] [--force]
#
#   --bundle DIR   the unpacked bundle (default: the bundle this script sits in, else
#                  ./curaclip-bundle)
#   --out DIR      where the results go (default: $OUT, else ./gpu-check); at most 8
#                  files, one folder: summary.txt (the plan, then one line per step with
#                  its status and seconds) and one NN-step.txt per step
#   --force        run every step even where no usable GPU is found (a plumbing test:
#                  the GPU tests then skip or fail)
#
# Steps (time limits in seconds, 510 in all; a step over its limit is stopped and
# marked "timed out", the next one starts):
#   1 device      30  libraries resolve (run.sh --check), curaclip info (GPU, driver,
#                     CUDA, cuBLAS, cuDNN, NCCL versions), nvidia-smi
#   2 parity     120  every op on cuda against cpu-f64 (bf16 tolerances), the planted
#                     k-means near ties, the Cuda* unit tests (attention path per shape)
#   3 curve       75  the 200-step tiny-recipe loss curve against the CPU, both losses
#   4 nccl        40  NCCL on 1 rank: collectives and the bucketed backward (2 ranks:
#                     noted, no 2-rank GPU test exists yet)
#   5 bench-b32  100  bench/gpu_clip_step.py ViT-B/32 224 px, softmax: curaclip vs
#                     PyTorch eager and torch.compile (PyTorch with CUDA if the node's
#                     python3 has it), pairs/s, MFU vs the measured bf16 GEMM rate, memory
#   6 bench-b16  100  the same for ViT-B/16
#   7 jest-kmeans 45  a JEST scoring + selection step (B = 4,096) against the CPU, and
#                     kmeans_assign at B = 16,384, K = 1,024 against cpu-f64, exact
# Without a usable GPU (a CPU-only machine, a CPU build) steps 2-7 write
# "skipped: no GPU (...)": the rehearsal tests/cli/test_gpu_check_rehearsal.sh runs
# that form in CI. Exit status: 0 when no step failed (skips are not failures).
#
# CUDA libraries: CURACLIP_CUDA_LIBS if set; otherwise the folders holding libcudnn,
# libnccl, libcublas, libcudart and libnvrtc under /usr/local/cuda* and the node's
# Python packages (nvidia-*-cu13 wheels, as PyTorch ships them) are put first.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bundle=""
out="${OUT:-}"
force=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle="${2:?--bundle needs a directory}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,42p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$bundle" ]]; then
  if [[ -x "$here/../../run.sh" ]]; then bundle="$here/../.."; else bundle="curaclip-bundle"; fi
fi
[[ -x "$bundle/run.sh" ]] || { echo "check.sh: no bundle at $bundle (run.sh missing); see --bundle" >&2; exit 2; }
bundle="$(cd "$bundle" && pwd)"
[[ -n "$out" ]] || out="gpu-check"
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
run="$bundle/run.sh"
summary="$out/summary.txt"
t_start=$SECONDS

# ---- CUDA libraries of the node -------------------------------------------------------------
find_cuda_libs() {
  local roots=() d lib found=()
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-*/lib64; do [[ -d "$d" ]] && roots+=("$d"); done
  local py
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    d="$("$py" -c 'import site,sys; print("\n".join(site.getsitepackages()))' 2>/dev/null)" || continue
    while read -r sp; do [[ -d "$sp/nvidia" ]] && roots+=("$sp/nvidia"); done <<<"$d"
  done
  for lib in 'libcudnn.so.*' 'libnccl.so.*' 'libcublas.so.*' 'libcublasLt.so.*' 'libcudart.so.*' 'libnvrtc.so.*'; do
    for d in "${roots[@]}"; do
      local f
      f="$(find "$d" -maxdepth 3 -name "$lib" -print -quit 2>/dev/null)"
      if [[ -n "$f" ]]; then
        found+=("$(dirname "$f")")
        break
      fi
    done
  done
  printf '%s\n' "${found[@]}" | awk 'NF && !seen[$0]++' | paste -sd: -
}
if [[ -z "${CURACLIP_CUDA_LIBS:-}" ]]; then
  CURACLIP_CUDA_LIBS="$(find_cuda_libs)"
fi
export CURACLIP_CUDA_LIBS

# ---- GPU or not -------------------------------------------------------------------------------
gpu_reason=""
info="$("$run" curaclip info 2>&1 | head -n 20)"
if ! grep -Eq '^ +cuda +available' <<<"$info"; then
  gpu_reason="$(grep -E '^ +cuda ' <<<"$info" | sed -E 's/^ +cuda +//' | head -n1)"
  [[ -n "$gpu_reason" ]] || gpu_reason="this build has no CUDA backend"
fi
n_gpus=0
command -v nvidia-smi >/dev/null 2>&1 && n_gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"

# ---- the plan ---------------------------------------------------------------------------------
steps=(
  "1|device|30|libraries, curaclip info, nvidia-smi"
  "2|parity|120|every op on cuda vs cpu-f64, k-means near ties, Cuda* unit tests, attention paths"
  "3|curve|75|200-step tiny-recipe loss curve vs the CPU, softmax and sigmoid"
  "4|nccl|40|NCCL 1 rank: collectives, bucketed backward (2 ranks: $([[ $n_gpus -ge 2 ]] && echo "$n_gpus GPUs, no test yet" || echo "one GPU"))"
  "5|bench-b32|100|gpu_clip_step.py ViT-B/32 224 px softmax: curaclip, PyTorch eager, torch.compile"
  "6|bench-b16|100|gpu_clip_step.py ViT-B/16 224 px softmax: curaclip, PyTorch eager, torch.compile"
  "7|jest-kmeans|45|JEST scoring + selection B=4096, kmeans_assign B=16384 K=1024 exact"
)
{
  echo "curaclip GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  echo "bundle: $bundle ($(sed -n 's/^source commit: //p' "$bundle/MANIFEST.txt" 2>/dev/null || echo '?'))"
  echo "CUDA libraries: ${CURACLIP_CUDA_LIBS:-none found}"
  echo "GPU: $([[ -z "$gpu_reason" ]] && echo "yes ($n_gpus visible to nvidia-smi)" || echo "no ($gpu_reason)")"
  echo "plan (step, limit s, what):"
  total=0
  for s in "${steps[@]}"; do
    IFS='|' read -r n name limit what <<<"$s"
    printf '  %s %-12s %4s  %s\n' "$n" "$name" "$limit" "$what"
    total=$((total + limit))
  done
  echo "  total limit: ${total} s"
  echo "results:"
} > "$summary"
cat "$summary"

failed=0
# step N NAME LIMIT NEEDS_GPU COMMAND...: runs COMMAND (under the limit) into NN-NAME.txt
# and appends its result line to summary.txt at once.
step() {
  local n="$1" name="$2" limit="$3" needs_gpu="$4"
  shift 4
  local file
  file="$out/$(printf '%02d' "$n")-$name.txt"
  local t0=$SECONDS status rc
  {
    echo "step $n $name (limit ${limit} s), $(date -u +%H:%M:%SZ)"
    echo "\$ $*"
    echo
  } > "$file"
  if [[ "$needs_gpu" == 1 && -n "$gpu_reason" && $force -eq 0 ]]; then
    status="skipped: no GPU ($gpu_reason)"
    echo "$status" >> "$file"
  else
    # bash -c: the step functions below are exported; timeout needs a program.
    timeout --kill-after=5 "$limit" bash -c '"$@"' step "$@" >> "$file" 2>&1
    rc=$?
    case $rc in
      0) status="ok" ;;
      124|137) status="timed out after ${limit} s"; failed=1 ;;
      *) status="FAILED (exit $rc)"; failed=1 ;;
    esac
    echo >> "$file"
    echo "exit $rc" >> "$file"
  fi
  local dt=$((SECONDS - t0))
  echo "$status, ${dt} s" >> "$file"
  printf '  %s %-12s %-40s %4d s of %4d s (total %d s)\n' "$n" "$name" "$status" "$dt" "$limit" \
    "$((SECONDS - t_start))" | tee -a "$summary"
}

tests="$bundle/bin/curaclip_tests"
gtest() {  # gtest FILTER [ENV=VALUE...]: the unit tests through run.sh, with a CPU thread count
  local filter="$1"
  shift
  env OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}" "$@" "$run" "$tests" --gtest_filter="$filter" --gtest_color=no
}

step_device() {
  "$run" --check
  echo
  "$run" curaclip info
  echo
  if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; else echo "nvidia-smi: not on this machine"; fi
  echo
  echo "CURACLIP_CUDA_LIBS=${CURACLIP_CUDA_LIBS:-}"
  command -v python3 >/dev/null 2>&1 && python3 -c 'import torch; print("python3 torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -n1
  return 0
}
step_parity() {
  local rc=0
  gtest '*BackendOps*/cuda:*BackendAccumulate*/cuda:*KmeansAssignExact*/cuda:BackendOpsHarness.*' || rc=1
  echo
  # Every Cuda* case but those later steps run; the attention test prints the path per shape.
  gtest 'Cuda*:-CudaBackend.TinyRecipe200*:CudaBackend.Nccl*:CudaBackend.KmeansAssignAtScale*:CudaBackend.Jest*' || rc=1
  return $rc
}
step_nccl() {
  gtest 'CudaBackend.Nccl*' NCCL_DEBUG=WARN || return 1
  echo
  if [[ $n_gpus -ge 2 ]]; then
    echo "2 ranks: $n_gpus GPUs here, but no 2-rank NCCL test exists yet (tests/mpi runs on CPUs)"
  else
    echo "2 ranks: skipped, one GPU"
  fi
}
# gpu_clip_step.py runs under the node's python3 (its PyTorch), outside run.sh (the bundle's
# older libstdc++ must not shadow PyTorch's); it starts bench_train_step through a wrapper
# that goes through run.sh.
# Without PyTorch with CUDA, curaclip's side alone (bench_train_step's JSON line).
step_bench() {
  local model="$1" tmp rc
  if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo "no python3 with PyTorch + CUDA here: curaclip alone"
    "$run" bench_train_step --backend cuda --preset "$model" --batch 256 --steps 10 --warmup 3 --loss softmax
    return $?
  fi
  tmp="$(mktemp -d)"  # outside the results folder: only result files go there
  printf '#!/usr/bin/env bash\nexec "%s" "%s/bin/bench_train_step" "$@"\n' "$run" "$bundle" > "$tmp/bench_train_step"
  chmod +x "$tmp/bench_train_step"
  PYTHONUNBUFFERED=1 python3 "$bundle/bench/gpu_clip_step.py" --build "$tmp" --models "$model" --losses softmax \
    --steps 10 --warmup 3 --rounds 1 --timeout 45 --out "$tmp/result.json"
  rc=$?
  echo
  [[ -f "$tmp/result.json" ]] && { echo "result JSON:"; cat "$tmp/result.json"; }
  rm -rf "$tmp"
  return $rc
}
step_jest_kmeans() {
  gtest 'CudaBackend.KmeansAssignAtScale*:CudaBackend.Jest*'
}

export run tests bundle out n_gpus CURACLIP_CUDA_LIBS
export -f gtest step_device step_parity step_nccl step_bench step_jest_kmeans

step 1 device 30 0 step_device
step 2 parity 120 1 step_parity
step 3 curve 75 1 gtest 'CudaBackend.TinyRecipe200*'
step 4 nccl 40 1 step_nccl
step 5 bench-b32 100 1 step_bench vit_b32
step 6 bench-b16 100 1 step_bench vit_b16
step 7 jest-kmeans 45 1 step_jest_kmeans

echo "done in $((SECONDS - t_start)) s; $([[ $failed -eq 0 ]] && echo 'no step failed' || echo 'some steps FAILED')" \
  | tee -a "$summary"
exit $failed
