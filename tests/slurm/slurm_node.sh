#!/usr/bin/env bash
# A one-node Slurm on this machine, for the Slurm tests and for trying the templates
# (docs/slurm.md). Everything lives in one folder: slurm.conf, the munge key and
# socket, the daemons' state, spool, logs and process ids; nothing under /etc or
# /var is read or written, and the ports are free ones picked at start, so a system
# Slurm or munge on the same machine is left alone.
#
#   tests/slurm/slurm_node.sh start DIR   # munged, slurmctld, slurmd; returns once the node is idle
#   export SLURM_CONF=DIR/slurm.conf      # then sbatch / squeue / scontrol talk to it
#   tests/slurm/slurm_node.sh stop DIR    # cancels its jobs, stops the three daemons by PID, removes DIR
#
# DIR must be new or empty (mktemp -d is right). KEEP=1 keeps DIR (logs) at stop.
# The node is this machine as `slurmd -C` sees it (CPUs, sockets, cores, threads,
# memory), in one partition `cpu`, with select/cons_tres (CR_CPU: each logical CPU
# can go to a task), MpiDefault=none (an srun without --mpi starts no PMI, as on
# Debian's packaged Slurm), JobRequeue=1, task/affinity (tasks are bound to the
# CPUs they were given) and proctrack/linuxproc (no cgroups needed: works in a
# container). Debian packages: slurmctld slurmd slurm-client munge
# libpmix-dev (for srun --mpi=pmix), all in jobs/install_deps.sh. Run as root (SlurmUser=root).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
mkdir -p "$2"
D=$(cd "$2" && pwd)

pids_file=$D/daemons.pids   # "NAME PID" per line, in start order

# wait_until SECONDS COMMAND...: until COMMAND succeeds (0.1 s polls); 1 on timeout.
wait_until() {
  local n=$(( $1 * 10 )); shift
  local i
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

stop() {
  [ -d "$D" ] || return 0
  export SLURM_CONF=$D/slurm.conf
  # Our jobs first, so that no job step outlives slurmd.
  if [ -f "$pids_file" ] && [ -f "$SLURM_CONF" ] && scontrol ping >/dev/null 2>&1; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    # shellcheck disable=SC2086
    [ -z "${jobs// /}" ] || scancel --quiet $jobs 2>/dev/null || true
    wait_until 60 bash -c '[ -z "$(squeue -h -o %A 2>/dev/null)" ]' ||
      echo "slurm_node.sh: jobs still listed after 60 s: $(squeue -h 2>/dev/null | tr '\n' ' ')" >&2
  fi
  # The daemons, last started first: SIGTERM, then SIGKILL after 30 s.
  if [ -f "$pids_file" ]; then
    local name pid
    tac "$pids_file" | while read -r name pid; do
      kill -0 "$pid" 2>/dev/null || continue
      kill -TERM "$pid" 2>/dev/null || true
      if ! wait_until 30 bash -c "! kill -0 $pid"; then
        echo "slurm_node.sh: $name (pid $pid) still running 30 s after SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "slurm_node.sh: stopped; logs kept in $D/log"
  else
    rm -rf "$D"
  fi
}

start() {
  [ -z "$(ls -A "$D")" ] || { echo "slurm_node.sh: $D is not empty (one node per folder)" >&2; exit 1; }
  local cmd
  for cmd in munged mungekey slurmctld slurmd sbatch scontrol sinfo; do
    command -v "$cmd" >/dev/null || PATH=$PATH:/usr/sbin command -v "$cmd" >/dev/null ||
      { echo "slurm_node.sh: $cmd not found: apt-get install slurmctld slurmd slurm-client munge libpmix-dev" \
             "(or bash jobs/install_deps.sh)" >&2; exit 1; }
  done
  export PATH=$PATH:/usr/sbin
  [ "$(id -u)" -eq 0 ] || { echo "slurm_node.sh: run as root (the daemons run as root)" >&2; exit 1; }
  # munged wants its socket's folders searchable by all (any user's jobs talk to
  # it) and not writable by others; the key goes in a folder of its own, root only.
  chmod 755 "$D"
  mkdir -p "$D/munge" "$D/munge-key" "$D/state" "$D/spool" "$D/log"
  chmod 755 "$D/munge"
  chmod 700 "$D/munge-key"
  : > "$pids_file"
  # Stop what was started if anything below fails.
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "slurm_node.sh: start failed; logs:" >&2;
        tail -n 20 "$D"/log/*.log >&2 2>/dev/null; KEEP=1 stop; fi' EXIT

  # ---- munge: its own key and socket ----
  mungekey --create --keyfile="$D/munge-key/munge.key" --bits=1024
  chmod 600 "$D/munge-key/munge.key"
  local sock=$D/munge/munge.socket
  munged --foreground --socket="$sock" --key-file="$D/munge-key/munge.key" \
         --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge-key/munged.seed" \
         </dev/null >>"$D/log/munged.log" 2>&1 &
  echo "munged $!" >> "$pids_file"
  wait_until 10 bash -c "munge -n -S '$sock' | unmunge -S '$sock'" ||
    { echo "slurm_node.sh: munged did not answer on $sock" >&2; exit 1; }

  # ---- slurm.conf: this machine as one node ----
  local host hw ports
  host=$(hostname -s)
  # "NodeName=h CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  hw=$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //')
  ports=($(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'))
  printf '' > "$D/plugstack.conf"
  cat > "$D/slurm.conf" <<EOF
# One-node Slurm written by tests/slurm/slurm_node.sh (docs/slurm.md).
ClusterName=curaclip
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
PlugStackConfig=$D/plugstack.conf
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
JobRequeue=1
ReturnToService=2
SwitchType=switch/none
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MinJobAge=3600
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$D/slurm.conf

  # ---- the daemons, in the foreground of background jobs: $! is each one's pid ----
  slurmctld -D -c -f "$SLURM_CONF" </dev/null >>"$D/log/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >> "$pids_file"
  wait_until 30 bash -c 'scontrol ping | grep -q UP' ||
    { echo "slurm_node.sh: slurmctld did not come up" >&2; exit 1; }
  slurmd -D -f "$SLURM_CONF" -N "$host" </dev/null >>"$D/log/slurmd.out" 2>&1 &
  echo "slurmd $!" >> "$pids_file"
  wait_until 60 bash -c "[ \"\$(sinfo -h -n '$host' -o %T)\" = idle ]" ||
    { echo "slurm_node.sh: node $host not idle after 60 s: $(sinfo -h -n "$host" -o '%T %E')" >&2; exit 1; }
  trap - EXIT
  echo "slurm_node.sh: one-node Slurm up in $D (node $host: $hw)"
  echo "  export SLURM_CONF=$SLURM_CONF"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
