#!/usr/bin/env bash
# mpirun for a single machine: adds what Open MPI needs as root and on small
# machines, and pins each rank's threads (OMP_NUM_THREADS = cores / ranks).
#   jobs/local/mpirun.sh NP build/curaclip train --config configs/tiny.ini ...
#
# Signals (docs/training.md, "Signals, exit statuses and lost ranks"). For
# `curaclip train` and `train-experts`, SIGTERM, SIGINT (Ctrl-C), SIGHUP (terminal
# closed) and SIGUSR1 to this script become SIGUSR1 to the ranks (through mpirun,
# which forwards USR1 but answers TERM/INT/HUP by killing the job within ~2 s): every
# rank stops after the same step, a checkpoint is written, and this script exits
# with the ranks' status, 75 (stopped to be resumed). A second TERM/INT/HUP ends
# the job at once (SIGTERM to mpirun: no checkpoint). mpirun runs in its own session
# so that the terminal's and the process group's signals reach only this script.
# Other commands run under a plain `exec mpirun`: a signal ends them.
set -euo pipefail
np=${1:?usage: $0 NP COMMAND...}; shift

training=0
case "${2:-}" in train|train-experts) training=1 ;; esac
# First thing for training, so that a signal while mpirun starts is kept, not lost.
mpirun_pid=  # set once mpirun runs
stopping=0   # 1: the ranks were (or, while mpirun starts, will be) asked to stop
on_signal() {  # on_signal NAME
  if [ "$stopping" = 0 ]; then
    stopping=1
    echo "jobs/local/mpirun.sh: SIG$1: asking the ranks to checkpoint and stop (SIGUSR1 through mpirun); send it again to end the job now, without a checkpoint" >&2
    [ -z "$mpirun_pid" ] || forward_usr1
  elif [ "$1" != USR1 ] && [ -n "$mpirun_pid" ]; then
    echo "jobs/local/mpirun.sh: second SIG$1: ending the job now (SIGTERM to mpirun $mpirun_pid)" >&2
    kill -TERM "$mpirun_pid" 2>/dev/null || true
  fi
}
if [ "$training" = 1 ]; then
  for s in TERM INT HUP USR1; do trap "on_signal $s" "$s"; done
fi

cores=$(nproc)
threads=$(( cores / np )); [ "$threads" -ge 1 ] || threads=1
extra=()
if [ "$(id -u)" -eq 0 ]; then extra+=(--allow-run-as-root); fi
if [ "$np" -gt "$cores" ]; then extra+=(--oversubscribe); fi
run=(mpirun -n "$np" "${extra[@]}" --bind-to none -x OMP_NUM_THREADS="$threads" "$@")
[ "$training" = 1 ] || exec "${run[@]}"

# Whether process $1 has a handler for SIGUSR1 (bit 9 of SigCgt in /proc/PID/status).
catches_usr1() {
  local mask
  mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$mask" ] && (( (16#$mask >> 9) & 1 ))
}

# SIGUSR1 reaches a rank only through mpirun, and kills a process that has no handler
# for it yet: wait (up to 60 s) until mpirun and all NP ranks (its children) have one.
# A rank installs it first thing in main(), before MPI_Init.
forward_usr1() {
  local t ready pids p
  for t in $(seq 1 600); do
    kill -0 "$mpirun_pid" 2>/dev/null || return 0
    ready=0
    if catches_usr1 "$mpirun_pid"; then
      pids=($(pgrep -P "$mpirun_pid" || true))
      ready=1
      [ "${#pids[@]}" -ge "$np" ] || ready=0
      for p in "${pids[@]}"; do catches_usr1 "$p" || ready=0; done
    fi
    [ "$ready" = 1 ] && break
    sleep 0.1
  done
  kill -USR1 "$mpirun_pid" 2>/dev/null || true
}

# The ranks print the command that resumes the run; this is its launcher part.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CURACLIP_LAUNCHER="$here/mpirun.sh $np"

setsid "${run[@]}" </dev/null &
mpirun_pid=$!
[ "$stopping" = 0 ] || forward_usr1  # a signal came while mpirun was starting

# `wait` returns early (status > 128) when a trapped signal arrives; wait again
# until mpirun itself has ended, then once more for its status if the last wait
# was such an interruption.
rc=0
while kill -0 "$mpirun_pid" 2>/dev/null; do
  rc=0; wait "$mpirun_pid" || rc=$?
done
r2=0; wait "$mpirun_pid" 2>/dev/null || r2=$?
[ "$r2" -eq 127 ] || rc=$r2
exit "$rc"
