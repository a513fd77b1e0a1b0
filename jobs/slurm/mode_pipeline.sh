#!/bin/bash
# The whole MoDE pipeline on Slurm (DESIGN §7), as a chain of jobs:
#   embed (captions by the seed) -> cluster (fine + coarse k-means) -> a job array
#   of experts (one per coarse cluster, --array=0-(n-1)) -> eval (routed ensemble),
# each waiting for the previous with --dependency=afterok.
#
#   jobs/slurm/mode_pipeline.sh CONFIG.ini SEED_CHECKPOINT OUT_DIR N_EXPERTS [FINE_CLUSTERS] [train overrides...]
#
# CONFIG gives [data] train / eval (the datasets); the experts train with it and
# its overrides. Set CURACLIP_BIN (default build/curaclip) and, for the small
# jobs, SBATCH_SMALL (default "--nodes=1 --ntasks-per-node=4 --gpus-per-task=1").
set -euo pipefail
config=${1:?usage: $0 CONFIG SEED OUT N_EXPERTS [FINE] [overrides...]}
seed=${2:?seed checkpoint}; out=${3:?output folder}; n=${4:?number of experts}; fine=${5:-1024}
shift $(( $# >= 5 ? 5 : 4 ))
bin=${CURACLIP_BIN:-build/curaclip}
small=${SBATCH_SMALL:---nodes=1 --ntasks-per-node=4 --gpus-per-task=1}
ini() {  # ini SECTION KEY: a value of the config file
    awk -F' *= *' -v s="[$1]" -v k="$2" '/^\[/{sec=$0} sec==s && $1==k {print $2; exit}' "$config"
}
train=$(ini data train); eval_set=$(ini data eval)
[ -n "$train" ] || { echo "$config has no [data] train" >&2; exit 2; }
[ "$n" -ge 1 ] || { echo "N_EXPERTS must be >= 1" >&2; exit 2; }
mkdir -p "$out" runs

# shellcheck disable=SC2086
embed=$(sbatch --parsable $small --job-name=mode-embed --output="$out/embed-%j.out" \
    --wrap "srun $bin embed --checkpoint $seed --data $train --out $out/caption_emb.h5")
# shellcheck disable=SC2086
cluster=$(sbatch --parsable $small --job-name=mode-cluster --output="$out/cluster-%j.out" \
    --dependency=afterok:"$embed" \
    --wrap "srun $bin cluster --embeddings $out/caption_emb.h5 --out $out/assign.h5 --fine $fine --experts $n")
experts=$(sbatch --parsable --array=0-$((n - 1)) --dependency=afterok:"$cluster" \
    jobs/slurm/mode_expert.sbatch "$config" "$seed" "$out/assign.h5" "$out" "$@")
ev=""
if [ -n "$eval_set" ]; then
    # shellcheck disable=SC2086
    ev=$(sbatch --parsable $small --job-name=mode-eval --output="$out/eval-%j.out" \
        --dependency=afterok:"$experts" \
        --wrap "srun $bin eval --experts $out --assign $out/assign.h5 --data $eval_set --json $out/eval.json")
fi
echo "submitted: embed $embed -> cluster $cluster -> experts $experts (array 0-$((n - 1)))${ev:+ -> eval $ev}"
echo "experts go to $out/expert_<c>/; the ensemble's results to $out/eval.json"
