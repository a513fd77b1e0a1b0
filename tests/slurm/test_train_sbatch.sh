#!/usr/bin/env bash
# jobs/slurm/train.sbatch on a real one-node Slurm (docs/slurm.md), submitted from a
# folder outside the repository, 2 tasks x 1 CPU of the tiny recipe:
#   - as shipped on a CPU partition (no GPU asked): finishes, output file in the submit
#     folder, srun --mpi=pmix, threads = the task's CPUs; this run is the reference;
#   - the finished job requeued: does nothing (exit 0), no second final evaluation;
#   - SIGUSR1 to the batch shell, SIGUSR1 to the job steps only, `scontrol requeue`,
#     the time-limit signal (--signal=B:USR1@120 with a short TimeLimit), SIGUSR1 in the
#     first second (while srun starts the ranks), a kill before the first checkpoint
#     (then `scontrol requeue`): each ends COMPLETED with the full step count,
#     parameters bit-identical to the reference and exactly one final eval line.
# Requeued jobs are let start at once (scontrol update StartTime=now) instead of
# Slurm's 2-minute BeginTime. Only jobs this test submitted are cancelled.
#   usage: test_train_sbatch.sh path/to/curaclip
set -u
BIN=${1:?usage: $0 path/to/curaclip}
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
source "$(dirname "$0")/lib.sh"
T0=$(date +%s)

# slurmctld's time-limit checks, for the time-limit case (its log level is put back at the end).
ctl_log=$(scontrol show config | sed -n 's/^SlurmctldLogFile *= *//p')
ctl_level=$(scontrol show config | sed -n 's/^SlurmctldDebug *= *//p')
scontrol setdebug debug2
make_data "$BIN"
S=$W/submit; mkdir -p "$S"; cd "$S" || exit 1   # outside the repository
# Long enough that a stop sent once step 20 is logged lands mid-run with OpenBLAS kernels
# matched to the CPU (a few ms per step), short enough for the whole file to stay near 2 minutes.
STEPS=200
final=$(printf 'step_%08d.h5' $STEPS)
ARGS=("$REPO/configs/tiny.ini" --data.train "$W/d/train.h5" --data.eval "$W/d/test.h5" --train.batch_size 16
      --train.warmup 5 --train.log_every 5 --train.eval_every 0 --train.steps $STEPS)
SBATCH=("$REPO/jobs/slurm/train.sbatch")
# The shipped default binary is the repository's build/curaclip; another one is named.
[ "$BIN" = "$REPO/build/curaclip" ] && unset CURACLIP_BIN || export CURACLIP_BIN=$BIN
unset CURACLIP_RUN CURACLIP_SRUN_MPI SBATCH_PARTITION SBATCH_TIMELIMIT

# ---- resources and environment, with a stand-in binary (seconds) -------------------------
cat > "$W/probe" <<'EOF'
#!/bin/bash
echo "probe rank=${SLURM_PROCID} cpus=$(nproc) omp=${OMP_NUM_THREADS} pmix=${PMIX_RANK:-none} args=$*"
EOF
chmod +x "$W/probe"
j=$(CURACLIP_BIN=$W/probe submit --job-name=probe --ntasks=1 --cpus-per-task=2 "${SBATCH[@]}" cfg.ini --x 1)
wait_job "$j" 60
check "probe: the job's output file is in the submit folder" test -f "$S/slurm-probe-$j.out"
check "probe: --cpus-per-task=2 gives the rank 2 CPUs and 2 threads" grep -q "probe rank=0 cpus=2 omp=2 pmix=0" "$S/slurm-probe-$j.out"
check "probe: train --config, run folder and overrides passed on" \
  grep -q "args=train --config cfg.ini --train.out runs/probe-$j --x 1" "$S/slurm-probe-$j.out"
j=$(CURACLIP_BIN=$W/probe submit --job-name=probe "${SBATCH[@]}" cfg.ini --train.out mine --y 2)
wait_job "$j" 60
check "probe: --train.out among the overrides is the run folder (given once)" \
  bash -c "grep -q 'args=train --config cfg.ini --train.out mine --y 2\$' '$S/slurm-probe-$j.out' && test -d '$S/mine'"
j=$(CURACLIP_BIN=$W/probe CURACLIP_SRUN_MPI=none submit --job-name=probe --ntasks=2 "${SBATCH[@]}" cfg.ini)
wait_job "$j" 60
check "probe: CURACLIP_SRUN_MPI=none: no PMIx, 2 ranks x 1 thread" \
  bash -c "[ \$(grep -c 'cpus=1 omp=1 pmix=none' '$S/slurm-probe-$j.out') = 2 ]"

# check_done NAME JOB RUN: the run's final state, against the reference.
check_done() {
  local name=$1 j=$2 run=$3
  check "$name: job COMPLETED, exit code 0" test "$(job_state "$j") $(job_field "$j" ExitCode)" = "COMPLETED 0:0"
  check "$name: full step count ($final)" test -f "$run/$final"
  check "$name: parameters bit-identical to the uninterrupted run" same_params "$run/$final" "$REF/$final"
  check "$name: exactly one final eval line in metrics.jsonl" one_final_eval "$run" $STEPS
  check "$name: marked finished" grep -qx "step $STEPS" "$run/finished"
}
# check_resumed NAME JOB RUN LOG: stopped with a checkpoint, requeued, resumed.
check_resumed() {
  local name=$1 j=$2 run=$3 log=$4
  check "$name: checkpoint on the stop, exit status 75" grep -qE "preemption signal: checkpointed step [0-9]+ " "$log"
  check "$name: requeued by the script" grep -q "train.sbatch: the ranks stopped to be resumed (exit status 75): requeueing" "$log"
  check "$name: requeued once (Restarts=1)" test "$(job_field "$j" Restarts)" = 1
  check "$name: resumed from the stop checkpoint" grep -qE "resumed from .*/step_[0-9]+\.h5 at step [0-9]+" "$log"
  check "$name: no rank died of a signal" bash -c "! grep -qE 'signal 10|User defined signal|Killed|CANCELLED AT .* DUE TO TIME' '$log'"
}

# ---- as shipped, uninterrupted: the reference ----------------------------------------------
t=$(date +%s)
j=$(submit --ntasks=2 "${SBATCH[@]}" "${ARGS[@]}")
REF=$S/runs/curaclip-train-$j
out=$S/slurm-curaclip-train-$j.out
wait_job "$j" 300
echo "     (uninterrupted run: $(( $(date +%s) - t )) s)"
check "shipped: output file slurm-curaclip-train-<job>.out in the submit folder" test -f "$out"
check "shipped: 2 tasks x 1 thread, default binary and run folder" \
  grep -q "train.sbatch: job $j start 0: .*curaclip train on 2 tasks x 1 threads, run folder runs/curaclip-train-$j" "$out"
check "shipped: srun with PMIx (2 ranks in one MPI world)" grep -q "ranks 2 x local batch 8" "$out"
check_done shipped "$j" "$REF"
md5=$(md5sum < "$REF/$final")
# A finished job requeued (as a time-limit signal during its final evaluation once did):
# nothing is trained or evaluated again.
scontrol requeue "$j"
wait_job "$j" 120
check "finished run requeued: says it is finished and does nothing" grep -q "holds a finished run (step $STEPS" "$out"
check "finished run requeued: job COMPLETED again" test "$(job_state "$j") $(job_field "$j" Restarts)" = "COMPLETED 1"
check "finished run requeued: checkpoint unchanged" test "$(md5sum < "$REF/$final")" = "$md5"
check "finished run requeued: still one final eval line" one_final_eval "$REF" $STEPS

# A run stopped at its last step, or during its final evaluation, has the final
# checkpoint but no final eval line: the next start only evaluates, once.
cp -r "$REF" "$S/runs/eval-only"
rm "$S/runs/eval-only/finished"
grep -v '"eval": true' "$REF/metrics.jsonl" > "$S/runs/eval-only/metrics.jsonl"
j=$(CURACLIP_RUN=runs/eval-only submit --ntasks=2 --job-name=eval-only "${SBATCH[@]}" "${ARGS[@]}")
wait_job "$j" 120
check "stopped at the last step: the next start only evaluates" \
  grep -q "is at step $STEPS = train.steps; the final evaluation is missing: evaluating" "$S/slurm-eval-only-$j.out"
eval_only_done() {
  [ "$(job_state "$1")" = COMPLETED ] && one_final_eval "$S/runs/eval-only" $STEPS &&
    grep -qx "step $STEPS" "$S/runs/eval-only/finished"
}
check "stopped at the last step: job COMPLETED, one final eval line, marked finished" eval_only_done "$j"
check "stopped at the last step: checkpoint unchanged" test "$(md5sum < "$S/runs/eval-only/$final")" = "$md5"

# ---- stops: each one a job of its own -------------------------------------------------------
# start NAME [sbatch options]: submits; sets j, run and log.
start() {
  local name=$1; shift
  j=$(submit --ntasks=2 --job-name="$name" "$@" "${SBATCH[@]}" "${ARGS[@]}")
  run=$S/runs/$name-$j
  log=$S/slurm-$name-$j.out
}

# SIGUSR1 to the batch shell (as --signal=B:USR1 and `scancel --batch` send it).
t=$(date +%s); start usr1-batch
wait_for "$log" "^step +20/" 120
scancel --batch --signal=USR1 "$j"
wait_job "$j" 300
check "usr1-batch: the script passed the stop on" grep -q "train.sbatch: SIGUSR1: asking the ranks to checkpoint" "$log"
check_resumed usr1-batch "$j" "$run" "$log"; check_done usr1-batch "$j" "$run"
echo "     (usr1-batch: $(( $(date +%s) - t )) s)"

# SIGUSR1 to the job steps only (the ranks): they exit 75, the script requeues.
t=$(date +%s); start usr1-steps
wait_for "$log" "^step +20/" 120
scancel --signal=USR1 "$j"
wait_job "$j" 300
check_resumed usr1-steps "$j" "$run" "$log"; check_done usr1-steps "$j" "$run"
echo "     (usr1-steps: $(( $(date +%s) - t )) s)"

# scontrol requeue: Slurm sends SIGTERM; the ranks checkpoint within KillWait.
t=$(date +%s); start requeue
wait_for "$log" "^step +20/" 120
scontrol requeue "$j"
wait_job "$j" 300
check "requeue: checkpoint on Slurm's SIGTERM" grep -qE "preemption signal: checkpointed step [0-9]+ " "$log"
check "requeue: requeued once (Restarts=1)" test "$(job_field "$j" Restarts)" = 1
check "requeue: resumed from the stop checkpoint" grep -qE "resumed from .*/step_[0-9]+\.h5 at step [0-9]+" "$log"
check_done requeue "$j" "$run"
echo "     (requeue: $(( $(date +%s) - t )) s)"

# SIGUSR1 in the first second: as soon as the script runs (srun starting the ranks).
t=$(date +%s); start first-second
wait_for "$log" "^train.sbatch: job $j start 0:" 60
scancel --batch --signal=USR1 "$j"
wait_job "$j" 300
check "first-second: the signal came before the first step" \
  bash -c "grep -nE '^(step +[0-9]+/|train.sbatch: SIGUSR1)' '$log' | head -n 1 | grep -q SIGUSR1"
check_resumed first-second "$j" "$run" "$log"; check_done first-second "$j" "$run"
echo "     (first-second: $(( $(date +%s) - t )) s)"

# A kill before the first checkpoint (the job FAILS), then a requeue: starts again cleanly.
t=$(date +%s); start kill-early
wait_for "$log" "^step +10/" 120
# SIGKILL to rank 1 (as a lost node would end it): the step ends, the job FAILS.
victim=$(scontrol listpids "$j" 2>/dev/null | awk '$3 ~ /^[0-9]+$/ && $4 == 1 {print $1}' | head -n 1)
check "kill-early: found rank 1's process" test -n "$victim"
[ -z "$victim" ] || kill -9 "$victim"
wait_job "$j" 120
check "kill-early: the job FAILED (a lost rank is not a stop: no requeue)" test "$(job_state "$j")" = FAILED
check "kill-early: no checkpoint yet" test ! -e "$run/latest"
scontrol requeue "$j"
wait_job "$j" 300
check "kill-early: the requeued job started the run again" \
  grep -q "train.sbatch: start 1 of job $j: no checkpoint in runs/kill-early-$j yet; starting the run again from step 0" "$log"
check "kill-early: the first start's metrics kept aside" test -f "$run/metrics_start_0.jsonl"
check "kill-early: no 'already holds a run'" bash -c "! grep -q 'already holds a run' '$log'"
check_done kill-early "$j" "$run"
echo "     (kill-early: $(( $(date +%s) - t )) s)"

# The time-limit signal (--signal=B:USR1@120 of the template), with TimeLimit=1
# (minute): the signal is due at once, but slurmctld sends it only at its next
# time-limit check (seen in its debug2 log since this test began), and the job may
# start some seconds after its release. So this job trains
# long enough to be running at a check whatever the machine's speed (the checks were
# seen 30 s apart, and up to 60 s apart): steps for about 80 s at the rate the uninterrupted job measured, with its own uninterrupted
# reference (2 ranks under mpirun, trained meanwhile). It is released just after a check.
t=$(date +%s)
rate=$(sed -nE 's/^done: ([0-9]+) steps in ([0-9.]+) s.*/\1 \2/p' "$out" | awk '{ if ($2 > 0) print $1 / $2 }' | head -n 1)
TL_STEPS=$(awk -v r="${rate:-20}" -v s=$STEPS 'BEGIN { n = int(r * 80); print (n > s ? n : s) }')
tl_final=$(printf 'step_%08d.h5' "$TL_STEPS")
TL_ARGS=("${ARGS[@]:0:${#ARGS[@]}-2}" --train.steps "$TL_STEPS")
echo "     (time-limit: $TL_STEPS steps, at the ${rate:-?} steps/s the reference ran)"
(cd "$W" && OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1 timeout 600 bash "$REPO/jobs/local/mpirun.sh" 2 "$BIN" \
   train --config "${TL_ARGS[@]}" --train.out "$W/tl_ref" > "$W/tl_ref.log" 2>&1) &
tl_ref_pid=$!
ARGS=("${TL_ARGS[@]}")   # (the last case: the other jobs are done)
start time-limit --hold --time=10
scontrol update JobId="$j" TimeLimit=1
# Released right after a check: the next one, 30 s later, finds it training.
n0=$(grep -c "Testing job time limits" "$ctl_log")
for _ in $(seq 1 400); do [ "$(grep -c "Testing job time limits" "$ctl_log")" -gt "$n0" ] && break; sleep 0.1; done
scontrol release "$j"
# Once stopped and requeued, the next start gets time again.
for _ in $(seq 1 1500); do
  [ "$(job_field "$j" Restarts)" = 1 ] && [ "$(job_state "$j")" = PENDING ] && break
  case "$(job_state "$j")" in COMPLETED|FAILED|TIMEOUT|CANCELLED) break ;; esac
  sleep 0.2
done
scontrol update JobId="$j" TimeLimit=10 >/dev/null 2>&1
wait_job "$j" 600
wait $tl_ref_pid
check "time-limit: slurmctld sent the warning signal" grep -q "warning signal 10 to JobId=$j\b" "$ctl_log"
check "time-limit: the script passed it on" grep -q "train.sbatch: SIGUSR1: asking the ranks" "$log"
check_resumed time-limit "$j" "$run" "$log"
check "time-limit: job COMPLETED, exit code 0" test "$(job_state "$j") $(job_field "$j" ExitCode)" = "COMPLETED 0:0"
check "time-limit: full step count ($tl_final)" test -f "$run/$tl_final"
check "time-limit: parameters bit-identical to the uninterrupted run" same_params "$run/$tl_final" "$W/tl_ref/$tl_final"
check "time-limit: exactly one final eval line in metrics.jsonl" one_final_eval "$run" "$TL_STEPS"
check "time-limit: marked finished" grep -qx "step $TL_STEPS" "$run/finished"
echo "     (time-limit: $(( $(date +%s) - t )) s)"

scontrol setdebug "${ctl_level:-info}"
check "no job of this test left in the queue" bash -c "[ -z \"\$(squeue -h -j $(IFS=,; echo "${MY_JOBS[*]}") 2>/dev/null)\" ]"
echo "     (test_train_sbatch.sh: $(( $(date +%s) - T0 )) s)"
finish
