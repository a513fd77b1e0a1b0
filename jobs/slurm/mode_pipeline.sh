#!/bin/bash
# The whole MoDE pipeline on Slurm (docs/mode.md, docs/slurm.md), as a chain of jobs:
#   embed (captions by the seed) -> cluster (fine + coarse k-means) -> a job array of
#   experts (one per coarse cluster, --array=0-(n-1), each preemption-safe and requeued
#   on its own, jobs/slurm/mode_expert.sbatch) -> eval (routed ensemble),
# each waiting for the previous with --dependency=afterok and --kill-on-invalid-dep=yes:
# when a stage fails, the stages after it are cancelled instead of waiting forever.
# A submission that fails cancels the jobs already submitted.
#
#   jobs/slurm/mode_pipeline.sh CONFIG.ini SEED_CHECKPOINT OUT_DIR N_EXPERTS [FINE_CLUSTERS] [train overrides...]
#
# Runs from any folder (relative paths are taken from it, as the jobs' working
# folder). CONFIG gives [data] train / eval (or --data.train / --data.eval among the
# overrides); the experts train with CONFIG and the overrides. Slurm's output files go
# to OUT_DIR. Resources, as sbatch options (they override the templates' #SBATCH lines):
#   CURACLIP_SBATCH          every stage, e.g. "--partition=gpu --gpus-per-task=1"
#   CURACLIP_SBATCH_EMBED, CURACLIP_SBATCH_CLUSTER, CURACLIP_SBATCH_EXPERTS,
#   CURACLIP_SBATCH_EVAL     one stage each, after CURACLIP_SBATCH (e.g. the experts'
#                            "--nodes=1 --ntasks-per-node=4 --cpus-per-task=8 --time=24:00:00")
# With none given, each job is one task on the default partition. SBATCH_* variables
# (SBATCH_PARTITION, ...) apply as sbatch reads them. CURACLIP_BIN (default
# build/curaclip of this repository) and CURACLIP_SRUN_MPI (default pmix) reach the jobs.
set -euo pipefail
usage="usage: $0 CONFIG SEED OUT N_EXPERTS [FINE] [overrides...]"
config=${1:?$usage}; seed=${2:?$usage}; out=${3:?$usage}; n=${4:?$usage}
fine=1024
if [ $# -ge 5 ] && [[ $5 != --* ]]; then fine=$5; shift 5; else shift 4; fi
home=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CURACLIP_HOME=$home
export CURACLIP_BIN=${CURACLIP_BIN:-$home/build/curaclip}
[ -x "$CURACLIP_BIN" ] || command -v "$CURACLIP_BIN" >/dev/null ||
  { echo "mode_pipeline.sh: no curaclip binary $CURACLIP_BIN (set CURACLIP_BIN)" >&2; exit 2; }
[ -f "$config" ] || { echo "mode_pipeline.sh: no config file $config" >&2; exit 2; }
[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || { echo "mode_pipeline.sh: N_EXPERTS must be >= 1, got $n" >&2; exit 2; }

ini() {  # ini SECTION KEY: a value of the config file
  awk -F' *= *' -v s="[$1]" -v k="$2" '/^\[/{sec=$0} sec==s && $1==k {print $2; exit}' "$config"
}
train=$(ini data train); eval_set=$(ini data eval)
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do  # the overrides win, as in curaclip
  case "${args[i]}" in
    --data.train) train=${args[i + 1]:-} ;;  --data.train=*) train=${args[i]#*=} ;;
    --data.eval) eval_set=${args[i + 1]:-} ;;  --data.eval=*) eval_set=${args[i]#*=} ;;
  esac
done
[ -n "$train" ] || { echo "mode_pipeline.sh: $config has no [data] train (nor --data.train)" >&2; exit 2; }
mkdir -p "$out"

submitted=()
cancel_submitted() {
  if [ ${#submitted[@]} -gt 0 ]; then
    echo "mode_pipeline.sh: cancelling the jobs already submitted: ${submitted[*]}" >&2
    scancel "${submitted[@]}" || true
  fi
}
# submit STAGE_OPTIONS_VAR SBATCH_ARGS...: sbatch; the job id in $id (not a subshell,
# so that the list of submitted jobs is kept); on failure the jobs already submitted
# are cancelled and the script ends.
id=
submit() {
  local extra_var=$1; shift
  local -a common extra
  read -r -a common <<< "${CURACLIP_SBATCH:-}"
  read -r -a extra <<< "${!extra_var:-}"
  if ! id=$(sbatch --parsable --kill-on-invalid-dep=yes "${common[@]}" "${extra[@]}" "$@"); then
    echo "mode_pipeline.sh: sbatch failed (${extra_var#CURACLIP_SBATCH_} stage)" >&2
    cancel_submitted
    exit 1
  fi
  id=${id%%;*}
  submitted+=("$id")
}
step=$home/jobs/slurm/curaclip.sbatch

submit CURACLIP_SBATCH_EMBED --job-name=mode-embed --output="$out/slurm-embed-%j.out" \
  "$step" embed --checkpoint "$seed" --data "$train" --out "$out/caption_emb.h5"
embed=$id
submit CURACLIP_SBATCH_CLUSTER --job-name=mode-cluster --output="$out/slurm-cluster-%j.out" \
  --dependency=afterok:"$embed" \
  "$step" cluster --embeddings "$out/caption_emb.h5" --out "$out/assign.h5" --fine "$fine" --experts "$n"
cluster=$id
submit CURACLIP_SBATCH_EXPERTS --array=0-$((n - 1)) --output="$out/slurm-expert-%A_%a.out" \
  --dependency=afterok:"$cluster" \
  "$home/jobs/slurm/mode_expert.sbatch" "$config" "$seed" "$out/assign.h5" "$out" "$@"
experts=$id
ev=""
if [ -n "$eval_set" ]; then
  submit CURACLIP_SBATCH_EVAL --job-name=mode-eval --output="$out/slurm-eval-%j.out" \
    --dependency=afterok:"$experts" \
    "$step" eval --experts "$out" --assign "$out/assign.h5" --data "$eval_set" --json "$out/eval.json"
  ev=$id
fi
echo "submitted: embed $embed -> cluster $cluster -> experts $experts (array 0-$((n - 1)))${ev:+ -> eval $ev}"
echo "experts go to $out/expert_<c>/; the ensemble's results to $out/eval.json; Slurm's output files to $out/"
