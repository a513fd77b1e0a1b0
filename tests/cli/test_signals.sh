#!/usr/bin/env bash
# Signals and lost ranks through the real launchers, on 2 ranks of the tiny recipe
# (docs/training.md, "Signals, exit statuses and lost ranks"):
#   - SIGTERM / SIGHUP / SIGINT to jobs/local/train.sh mid-run: a checkpoint at the
#     next step, exit status 75, and the printed resume command finishes the run
#     with parameters bit-identical to an uninterrupted run;
#   - SIGUSR1 in the first second (to the launcher, or to the ranks before their
#     training loop): no death by signal, a checkpoint after step 1, exit 75;
#   - kill -9 of one rank mid-run: the job ends within 30 s, non-zero, the output
#     names the lost rank, the last checkpoint and the resume command, `latest`
#     points to an intact checkpoint, and that command finishes the run.
# Only processes this script started are signalled, by PID.
#   usage: test_signals.sh path/to/curaclip
set -u
BIN=${1:?usage: $0 path/to/curaclip}
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export CURACLIP_BIN=$BIN
PY=/usr/bin/python3
W=$(mktemp -d)
trap 'if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $W"; else rm -rf "$W"; fi' EXIT  # KEEP=1: keep the logs
pass=0; fail=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
# wait_for FILE REGEX [SECONDS]: until the log shows a line matching REGEX.
wait_for() {
  local t
  for t in $(seq 1 $(( ${3:-120} * 10 ))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# The ranks of a launcher: the children of its mpirun (mpirun runs in its own session).
ranks_of() {  # ranks_of LAUNCHER_PID -> rank pids, rank 0 first (OMPI_COMM_WORLD_RANK)
  local mp p
  for mp in $(pgrep -P "$1"); do
    for p in $(pgrep -P "$mp"); do
      echo "$(tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p') $p"
    done
  done | sort -n | awk '{print $2}'
}
catches_usr1() { (( (16#$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0) >> 9) & 1 )); }
# Whether process $1 still runs (a zombie waiting for init to reap it does not).
running() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
latest_file() { echo "$1/$(cat "$1/latest" 2>/dev/null)"; }
h5_readable() { $PY -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); [f['params'][k][()] for k in f['params']]" "$1"; }
same_params() {  # same_params A.h5 B.h5: every /params tensor bit-identical
  $PY - "$1" "$2" <<'EOF'
import sys, h5py
a, b = h5py.File(sys.argv[1], 'r')['params'], h5py.File(sys.argv[2], 'r')['params']
assert sorted(a) == sorted(b) and len(a) > 0, (sorted(a), sorted(b))
diff = [k for k in a if a[k][()].tobytes() != b[k][()].tobytes()]
assert not diff, diff
EOF
}
# The command a log says resumes the run.
resume_cmd() { grep -m1 -o 'resume with: .*' "$1" | sed 's/^resume with: //'; }

"$BIN" prep fashion-mnist --out "$W/d" --limit 2000 > "$W/prep.log" 2>&1
check "prep wrote train.h5" test -f "$W/d/train.h5"

STEPS=60
COMMON=(--data.train "$W/d/train.h5" --data.eval "" --train.batch_size 64 --train.warmup 5 --train.log_every 5)
# A simple command, so that $! of `"${TRAIN[@]}" ... &` is the launcher itself.
TRAIN=(bash jobs/local/train.sh 2 configs/tiny.ini "${COMMON[@]}")
final=$(printf 'step_%08d.h5' $STEPS)

# The uninterrupted reference.
timeout 300 "${TRAIN[@]}" --train.steps $STEPS --train.out "$W/ref" > "$W/ref.log" 2>&1
check "uninterrupted run exited 0" test $? -eq 0
check "uninterrupted run wrote step $STEPS" test -f "$W/ref/$final"

# ---- SIGTERM, SIGHUP, SIGINT to the launcher mid-run --------------------------------
for sig in TERM HUP INT; do
  run=$W/stop-$sig
  # SIGINT is ignored by background jobs of a shell without job control; with it
  # (set -m) the launcher gets its own process group and the default disposition,
  # as in a terminal.
  [ $sig = INT ] && set -m
  "${TRAIN[@]}" --train.steps $STEPS --train.out "$run" > "$run.log" 2>&1 &
  launcher=$!
  [ $sig = INT ] && set +m
  wait_for "$run.log" "step +10/"
  kill -$sig $launcher
  wait $launcher; rc=$?
  check "SIG$sig to the launcher: exit status 75 (stopped to be resumed)" test $rc -eq 75
  check "SIG$sig: the launcher said it asks the ranks to stop" grep -q "mpirun.sh: SIG$sig: asking the ranks to checkpoint" "$run.log"
  check "SIG$sig: checkpoint at the next step" grep -qE "preemption signal: checkpointed step (1[0-9]|[2-5][0-9]) " "$run.log"
  check "SIG$sig: latest names the stop checkpoint" test -f "$(latest_file "$run")"
  check "SIG$sig: no rank died or was reported lost" bash -c "! grep -qE 'exited on signal|has ended|is ending the job' '$run.log'"
  check "SIG$sig: the resume command is printed" grep -q "stopped by SIGUSR1 to be resumed (exit status 75); resume with: cd .* && .*RESUME=1 jobs/local/train.sh 2 configs/tiny.ini" "$run.log"
  if [ $sig = TERM ]; then
    # The printed command, as printed, finishes the run: parameters equal the reference's, bit for bit.
    timeout 300 bash -c "$(resume_cmd "$run.log")" > "$run.resume.log" 2>&1
    check "SIG$sig: the printed resume command finished the run (exit 0)" test $? -eq 0
    check "SIG$sig: the resume started at the stop checkpoint" grep -qE "resumed from .*step_0*(1[0-9]|[2-5][0-9])\.h5" "$run.resume.log"
    check "SIG$sig: resumed parameters bit-identical to the uninterrupted run" same_params "$run/$final" "$W/ref/$final"
  fi
done

# ---- SIGUSR1 in the first second ----------------------------------------------------
for delay in 0.05 0.3 0.8; do
  run=$W/usr1-$delay
  "${TRAIN[@]}" --train.steps $STEPS --train.out "$run" > "$run.log" 2>&1 &
  launcher=$!
  sleep $delay
  kill -USR1 $launcher
  wait $launcher; rc=$?
  check "SIGUSR1 to the launcher after ${delay} s: exit status 75" test $rc -eq 75
  check "SIGUSR1 after ${delay} s: no process killed by the signal" bash -c "! grep -qE 'exited on signal|User defined signal' '$run.log'"
  check "SIGUSR1 after ${delay} s: a checkpoint before the end" grep -qE "preemption signal: checkpointed step ([1-9]|[1-5][0-9]) " "$run.log"
done
# Straight to the ranks (as srun or a scheduler delivers it), while they start up:
# before any training step, as soon as each has its handler (installed before MPI_Init).
run=$W/usr1-ranks
"${TRAIN[@]}" --train.steps $STEPS --train.out "$run" > "$run.log" 2>&1 &
launcher=$!
for _ in $(seq 1 300); do
  ranks=($(ranks_of $launcher))
  [ ${#ranks[@]} -eq 2 ] && catches_usr1 ${ranks[0]} && catches_usr1 ${ranks[1]} && break
  sleep 0.01
done
early=1; grep -qE "^step +[0-9]+/" "$run.log" 2>/dev/null && early=0
kill -USR1 "${ranks[@]}"
wait $launcher; rc=$?
check "SIGUSR1 to the ranks during start-up: exit status 75" test $rc -eq 75
check "SIGUSR1 to the ranks during start-up: sent before the first step line" test $early -eq 1
check "SIGUSR1 to the ranks during start-up: kept, checkpoint after step 1" grep -q "preemption signal: checkpointed step 1 " "$run.log"

# ---- kill -9 of one rank mid-run ----------------------------------------------------
for victim in 1 0; do
  run=$W/kill-$victim
  "${TRAIN[@]}" --train.steps $STEPS --train.checkpoint_every 10 --train.out "$run" > "$run.log" 2>&1 &
  launcher=$!
  wait_for "$run.log" "step +25/"
  ranks=($(ranks_of $launcher))
  t0=$(date +%s%N)
  kill -9 "${ranks[$victim]}"
  ended=0
  for _ in $(seq 1 300); do kill -0 $launcher 2>/dev/null || { ended=1; break; }; sleep 0.1; done
  secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
  [ $ended = 1 ] || kill -TERM $launcher  # (a failure: do not leave it running)
  wait $launcher; rc=$?
  echo "     (rank $victim killed: job ended after ${secs} s, exit status $rc)"
  check "kill -9 rank $victim: the job ended within 30 s" test $ended -eq 1
  check "kill -9 rank $victim: exit status non-zero" test $rc -ne 0
  others=(); for p in "${ranks[@]}"; do running $p && others+=($p); done
  check "kill -9 rank $victim: no rank left running" test ${#others[@]} -eq 0
  check "kill -9 rank $victim: the lost rank is named" grep -qE "curaclip train: rank $victim \(pid ${ranks[$victim]}\) has ended; mpirun \(pid [0-9]+\) is ending the job" "$run.log"
  ckpt=$(latest_file "$run")
  check "kill -9 rank $victim: the last checkpoint is named, as latest names it" grep -qF "curaclip train: last checkpoint: $ckpt (named by latest)" "$run.log"
  check "kill -9 rank $victim: latest points to a checkpoint of step 20 or later" grep -qE "step_0+(2|3|4|5)0\.h5" "$run/latest"
  check "kill -9 rank $victim: that checkpoint is intact (every tensor readable)" h5_readable "$ckpt"
  check "kill -9 rank $victim: the report is written once" test "$(grep -c 'has ended' "$run.log")" -eq 1
  check "kill -9 rank $victim: the resume command is printed" grep -q "curaclip train: resume with: cd .* && .*RESUME=1 jobs/local/train.sh 2 configs/tiny.ini" "$run.log"
  if [ $victim = 1 ]; then
    timeout 300 bash -c "$(resume_cmd "$run.log")" > "$run.resume.log" 2>&1
    check "kill -9: the printed resume command finished the run (exit 0)" test $? -eq 0
    check "kill -9: resumed from the named checkpoint" grep -qF "resumed from $ckpt" "$run.resume.log"
    check "kill -9: the finished run is bit-identical to the uninterrupted one" same_params "$run/$final" "$W/ref/$final"
  fi
done

# A rank lost before the first checkpoint: the report says so and how to start again.
run=$W/kill-early
"${TRAIN[@]}" --train.steps $STEPS --train.out "$run" > "$run.log" 2>&1 &
launcher=$!
wait_for "$run.log" "step +5/"
ranks=($(ranks_of $launcher))
kill -9 "${ranks[1]}"
wait $launcher; rc=$?
check "kill -9 before any checkpoint: exit status non-zero" test $rc -ne 0
check "kill -9 before any checkpoint: says none was written and how to start again" \
  grep -qE "no checkpoint written yet \(no $run/latest\); start again with: cd .* --train.overwrite true" "$run.log"

# A rank that stops without dying (SIGSTOP): the others would wait in a collective
# for ever; the progress watchdog (train.step_timeout) ends the job with the report.
run=$W/stopped
"${TRAIN[@]}" --train.steps $STEPS --train.checkpoint_every 10 --train.step_timeout 5 --train.out "$run" > "$run.log" 2>&1 &
launcher=$!
wait_for "$run.log" "step +25/"
ranks=($(ranks_of $launcher))
t0=$(date +%s%N)
kill -STOP "${ranks[1]}"
ended=0
for _ in $(seq 1 300); do kill -0 $launcher 2>/dev/null || { ended=1; break; }; sleep 0.1; done
secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
if [ $ended = 0 ]; then kill -CONT "${ranks[1]}"; kill -TERM $launcher; fi  # (a failure: do not leave it running)
wait $launcher; rc=$?
echo "     (rank 1 stopped: job ended after ${secs} s, exit status $rc)"
check "SIGSTOP of a rank: the job ended within 30 s" test $ended -eq 1
check "SIGSTOP of a rank: exit status non-zero" test $rc -ne 0
others=(); for p in "${ranks[@]}"; do running $p && others+=($p); done
check "SIGSTOP of a rank: no rank left behind" test ${#others[@]} -eq 0
check "SIGSTOP of a rank: the stall is reported with its limit" grep -qE "curaclip train: rank 0: no progress for [0-9]+ s after step [0-9]+ \(limit 5 s, train.step_timeout\)" "$run.log"
ckpt=$(latest_file "$run")
check "SIGSTOP of a rank: the last checkpoint is named, as latest names it" grep -qF "curaclip train: last checkpoint: $ckpt (named by latest)" "$run.log"
check "SIGSTOP of a rank: that checkpoint is intact" h5_readable "$ckpt"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
