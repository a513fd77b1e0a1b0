#!/usr/bin/env bash
# jobs/slurm/mode_pipeline.sh on a real one-node Slurm (docs/slurm.md), run from a
# folder outside the repository, on the tiny recipe (2 tasks x 1 CPU per job):
#   - end to end: embed -> cluster -> 2-expert array -> eval, the embed stage's
#     resources overridden on its own (CURACLIP_SBATCH_EMBED), one expert preempted
#     (SIGUSR1 to its batch shell) and resumed: every job COMPLETED, both experts at
#     the full step count with one final eval line, the ensemble's eval.json written;
#   - a failing first stage (a seed checkpoint that does not exist): the later stages
#     are cancelled, nothing is left queued;
#   - a failing submission (the eval stage asks for a partition that does not exist):
#     the jobs already submitted are cancelled, the script exits non-zero.
# Only jobs this test submitted are cancelled.
#   usage: test_mode_pipeline.sh path/to/curaclip
set -u
BIN=${1:?usage: $0 path/to/curaclip}
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
source "$(dirname "$0")/lib.sh"
T0=$(date +%s)

make_data "$BIN"
S=$W/submit; mkdir -p "$S"; cd "$S" || exit 1   # outside the repository
export CURACLIP_BIN=$BIN
unset CURACLIP_RUN CURACLIP_SRUN_MPI CURACLIP_SBATCH_CLUSTER CURACLIP_SBATCH_EXPERTS CURACLIP_SBATCH_EVAL
PIPE=(bash "$REPO/jobs/slurm/mode_pipeline.sh")
STEPS=150
final=$(printf 'step_%08d.h5' $STEPS)
BASE=(--data.train "$W/d/train.h5" --train.batch_size 16 --train.warmup 5 --train.log_every 5 --train.eval_every 0)
OVR=("${BASE[@]}" --data.eval "$W/d/test.h5" --train.steps "$STEPS")

# The seed: a short run of one process (no Slurm needed).
"$BIN" train --config "$REPO/configs/tiny.ini" "${BASE[@]}" --data.eval "" --train.steps 20 --train.out "$W/seed" \
  > "$W/seed.log" 2>&1
check "seed checkpoint trained" test -f "$W/seed/latest"

ids_of() {  # ids_of LOG: the job ids the pipeline printed (array: its id)
  sed -n 's/^submitted: //p' "$1" | grep -oE '(embed|cluster|experts|eval) [0-9]+' | awk '{print $2}'
}
# drive SECONDS JOBS...: until none of JOBS (array tasks included) is queued, letting
# requeued tasks start again soon (unstick, lib.sh).
drive() {
  local n=$(( $1 * 5 )) i q id st r
  shift
  for ((i = 0; i < n; i++)); do
    q=$(squeue -h -r -j "$(IFS=,; echo "$*")" -o '%A %T %r' 2>/dev/null)
    [ -n "$q" ] || return 0
    while read -r id st r; do
      if [ "$st" = PENDING ] && [ "$r" = BeginTime ]; then unstick "$id"; fi
    done <<< "$q"
    sleep 0.2
  done
  return 1
}

# ---- end to end, one expert preempted --------------------------------------------------------
t=$(date +%s)
O=$W/mode
CURACLIP_SBATCH="--ntasks=2" CURACLIP_SBATCH_EMBED="--ntasks=1" \
  "${PIPE[@]}" "$REPO/configs/tiny.ini" "$W/seed" "$O" 2 8 "${OVR[@]}" > "$W/pipe.log" 2>&1
check "pipeline: submitted 4 jobs from outside the repository (exit 0)" test $? -eq 0 -a "$(ids_of "$W/pipe.log" | wc -l)" = 4
read -r embed cluster experts ev <<< "$(ids_of "$W/pipe.log" | tr '\n' ' ')"
for id in $embed $cluster $experts $ev; do MY_JOBS+=("$id"); done
check "pipeline: the embed stage's own resources (1 task)" test "$(job_field "$embed" NumTasks)" = 1
check "pipeline: later stages wait with --kill-on-invalid-dep" \
  bash -c "scontrol show job $cluster | grep -q 'KillOInInvalidDependent=Yes'"
# Preempt expert 0 mid-run (SIGUSR1 to its batch shell, as the time limit would).
e0log=$O/slurm-expert-${experts}_0.out
wait_for "$e0log" "^(step +20/|train.sbatch: failed)" 180
scancel --batch --signal=USR1 "${experts}_0"
drive 300 $embed $cluster $experts $ev
echo "     (pipeline end to end: $(( $(date +%s) - t )) s)"
for pair in "embed $embed" "cluster $cluster" "expert-0 ${experts}_0" "expert-1 ${experts}_1" "eval $ev"; do
  set -- $pair
  check "pipeline: $1 job COMPLETED" test "$(job_state "$2") $(job_field "$2" ExitCode)" = "COMPLETED 0:0"
done
check "pipeline: expert 0 checkpointed on the stop" grep -qE "preemption signal: checkpointed step [0-9]+ " "$e0log"
check "pipeline: expert 0 requeued and resumed" grep -qE "resumed from .*expert_0/step_[0-9]+\.h5" "$e0log"
check "pipeline: expert 0 requeued once" test "$(job_field "${experts}_0" Restarts)" = 1
for c in 0 1; do
  check "pipeline: expert $c trained from the seed on its cluster" grep -q "MoDE expert $c of" "$O/slurm-expert-${experts}_$c.out"
  check "pipeline: expert $c at the full step count, marked finished" test -f "$O/expert_$c/$final" -a -f "$O/expert_$c/finished"
  check "pipeline: expert $c has one final eval line" one_final_eval "$O/expert_$c" $STEPS
done
check "pipeline: the ensemble's eval.json" /usr/bin/python3 -c "import json; r = json.load(open('$O/eval.json')); assert 0 <= r['routed']['zeroshot_top1'] <= 1"
# The preempted expert equals expert 0 trained in one go (2 ranks under mpirun), bit for bit.
OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1 timeout 300 bash "$REPO/jobs/local/mpirun.sh" 2 "$BIN" train \
  --config "$REPO/configs/tiny.ini" "${OVR[@]}" --train.init_from "$W/seed" --mode.assign "$O/assign.h5" \
  --mode.expert 0 --train.out "$W/expert0_ref" > "$W/expert0_ref.log" 2>&1
check "pipeline: preempted expert 0 bit-identical to an uninterrupted training of it" \
  same_params "$O/expert_0/$final" "$W/expert0_ref/$final"
check "pipeline: Slurm's output files in the output folder" \
  bash -c "ls '$O'/slurm-embed-$embed.out '$O'/slurm-cluster-$cluster.out '$O'/slurm-eval-$ev.out"

# ---- a failing first stage: the rest is cancelled -----------------------------------------
t=$(date +%s)
CURACLIP_SBATCH="--ntasks=2" "${PIPE[@]}" "$REPO/configs/tiny.ini" "$W/no_such_seed" "$W/bad" 2 8 "${OVR[@]}" \
  > "$W/bad.log" 2>&1
read -r embed cluster experts ev <<< "$(ids_of "$W/bad.log" | tr '\n' ' ')"
for id in $embed $cluster $experts $ev; do MY_JOBS+=("$id"); done
drive 120 $embed $cluster $experts $ev
check "failing stage: nothing left queued" test -z "$(squeue -h -r -j "$embed,$cluster,$experts,$ev" 2>/dev/null)"
check "failing stage: embed FAILED" test "$(job_state "$embed")" = FAILED
for id in $cluster $experts $ev; do
  check "failing stage: job $id after it CANCELLED" test "$(job_state "$id")" = CANCELLED
done
echo "     (failing stage: $(( $(date +%s) - t )) s)"

# ---- a failing submission: what was submitted is cancelled ----------------------------------
CURACLIP_SBATCH="--ntasks=2" CURACLIP_SBATCH_EVAL="--partition=no_such_partition" \
  "${PIPE[@]}" "$REPO/configs/tiny.ini" "$W/seed" "$W/subfail" 2 8 "${OVR[@]}" > "$W/subfail.log" 2>&1
rc=$?
check "failing submission: the script exits non-zero" test $rc -ne 0
mapfile -t cancelled < <(sed -n 's/.*cancelling the jobs already submitted: //p' "$W/subfail.log" | tr ' ' '\n')
MY_JOBS+=("${cancelled[@]}")
check "failing submission: the 3 jobs submitted were cancelled" test ${#cancelled[@]} -eq 3
drive 60 "${cancelled[@]}"
check "failing submission: nothing left queued" test -z "$(squeue -h -r -j "$(IFS=,; echo "${cancelled[*]}")" 2>/dev/null)"

echo "     (test_mode_pipeline.sh: $(( $(date +%s) - T0 )) s)"
finish
