# shellcheck shell=bash
# Shared by the Slurm tests (sourced): a one-node Slurm to submit to, the tiny
# data, job-state helpers and the checks on a run's final state.
#
# The node: the one SLURM_CONF names when it answers (tests/run_all.sh starts one
# for all the tests), else one started here with tests/slurm/slurm_node.sh and
# stopped (by PID) when the test ends. Without Slurm, or not as root, a test run on
# its own skips (exit 0, "SKIP ..."); with CURACLIP_REQUIRE_SLURM=1 (run_all) it fails.
# Only jobs this test submitted are cancelled, only daemons it started are stopped.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=/usr/bin/python3
pass=0; fail=0
W=$(mktemp -d /tmp/curaclip-slurm-test.XXXXXX)
chmod 755 "$W"
OWN_NODE=""
MY_JOBS=()

check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
finish() {  # the summary line and the exit status
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
cleanup() {
  local j
  for j in "${MY_JOBS[@]}"; do scancel "$j" >/dev/null 2>&1 || true; done
  if [ -n "$OWN_NODE" ]; then bash "$REPO/tests/slurm/slurm_node.sh" stop "$OWN_NODE" >/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "files kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

skip_or_fail() {  # skip_or_fail REASON
  if [ "${CURACLIP_REQUIRE_SLURM:-0}" = 1 ]; then echo "FAIL $1"; exit 1; fi
  echo "SKIP $(basename "$0"): $1"; exit 0
}

# A node to submit to.
export PATH=$PATH:/usr/sbin
if [ -n "${SLURM_CONF:-}" ] && scontrol ping 2>/dev/null | grep -q UP; then
  :
else
  for c in slurmctld slurmd munged sbatch; do
    command -v "$c" >/dev/null || skip_or_fail "Slurm is not installed ($c missing: apt-get install slurmctld slurmd slurm-client munge libpmix-dev)"
  done
  [ "$(id -u)" -eq 0 ] || skip_or_fail "the one-node Slurm needs root (tests/slurm/slurm_node.sh)"
  OWN_NODE=$W/node
  bash "$REPO/tests/slurm/slurm_node.sh" start "$OWN_NODE" >"$W/node.log" 2>&1 ||
    { cat "$W/node.log"; OWN_NODE=""; skip_or_fail "the one-node Slurm did not start"; }
  export SLURM_CONF=$OWN_NODE/slurm.conf
fi
# Jobs run as root: Open MPI asks for consent.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# The tiny data, made once per test (a few seconds).
make_data() {  # make_data BIN -> $W/d/{train,test}.h5
  "$1" prep fashion-mnist --out "$W/d" --limit 512 >"$W/prep.log" 2>&1
  check "prep wrote the tiny data" test -f "$W/d/train.h5" -a -f "$W/d/test.h5"
}

submit() {  # submit SBATCH_ARGS... -> prints the job id (and remembers it for cleanup)
  local j
  j=$(sbatch --parsable "$@") || return 1
  j=${j%%;*}
  MY_JOBS+=("$j")
  echo "$j"
}
job_field() {  # job_field JOB FIELD: FIELD=value of scontrol show job
  scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}
job_state() { job_field "$1" JobState; }
# steps_gone JOB: no slurmstepd of JOB's earlier start is left on this (the only) node.
steps_gone() { ! ps -eo args= | grep -q "^slurmstepd: \[$1\."; }
# unstick JOB: a job requeued by its batch script (or by scontrol) waits 2 minutes
# (BeginTime) before it may start again; the tests let it start as soon as its earlier
# start has left the node and a second has passed. Not at once: slurmd refuses a job
# whose credential was revoked in the same second ("Job credential revoked"), and a
# step launched while the last start's step of the same id is ending fails.
declare -A requeued_at=()
unstick() {
  local j=$1 now
  now=$(date +%s)
  [ -n "${requeued_at[$j]:-}" ] || requeued_at[$j]=$now
  if [ $((now - requeued_at[$j])) -ge 2 ] && steps_gone "$j"; then
    scontrol update JobId="$j" StartTime=now >/dev/null 2>&1 || true
    unset "requeued_at[$j]"
  fi
}
# wait_job JOB [SECONDS]: until the job is over (not pending, running, requeued,
# completing), letting requeued starts begin soon (unstick).
wait_job() {
  local j=$1 n=$(( ${2:-240} * 5 )) i s
  for ((i = 0; i < n; i++)); do
    s=$(job_state "$j")
    case "$s" in
      PENDING) [ "$(job_field "$j" Reason)" != BeginTime ] || unstick "$(job_field "$j" JobId)" ;;
      RUNNING|REQUEUED|REQUEUE_HOLD|COMPLETING|CONFIGURING|SUSPENDED|"") ;;
      *) return 0 ;;
    esac
    sleep 0.2
  done
  return 1
}
wait_for() {  # wait_for FILE REGEX [SECONDS]: until FILE has a line matching REGEX
  local i
  for ((i = 0; i < ${3:-120} * 10; i++)); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

same_params() {  # same_params A.h5 B.h5: every /params tensor bit-identical
  $PY - "$1" "$2" <<'EOF'
import sys, h5py
a, b = h5py.File(sys.argv[1], 'r')['params'], h5py.File(sys.argv[2], 'r')['params']
assert sorted(a) == sorted(b) and len(a) > 0, (sorted(a), sorted(b))
diff = [k for k in a if a[k][()].tobytes() != b[k][()].tobytes()]
assert not diff, diff
EOF
}
eval_lines() {  # eval_lines RUN STEP: how many evaluation lines metrics.jsonl has, all of step STEP
  $PY - "$1/metrics.jsonl" "$2" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ev = [r for r in rows if r.get('eval')]
assert all(r['step'] == int(sys.argv[2]) for r in ev), ev
print(len(ev))
EOF
}
one_final_eval() { [ "$(eval_lines "$1" "$2")" = 1 ]; }
