#!/usr/bin/env bash
# mpirun for a single machine: adds what Open MPI needs as root and on small
# machines, and pins each rank's threads (OMP_NUM_THREADS = cores / ranks).
#   jobs/local/mpirun.sh NP build/curaclip train --config configs/tiny.ini ...
set -euo pipefail
np=${1:?usage: $0 NP COMMAND...}; shift
cores=$(nproc)
threads=$(( cores / np )); [ "$threads" -ge 1 ] || threads=1
extra=()
if [ "$(id -u)" -eq 0 ]; then extra+=(--allow-run-as-root); fi
if [ "$np" -gt "$cores" ]; then extra+=(--oversubscribe); fi
exec mpirun -n "$np" "${extra[@]}" --bind-to none -x OMP_NUM_THREADS="$threads" "$@"
