#!/usr/bin/env bash
# Local training launcher:  jobs/local/train.sh NP CONFIG.ini [--section.key value ...]
# Resumes the run folder given by --train.out when it already holds a checkpoint
# and RESUME=1 is set.
#
# Exit status: 0 finished; 75 stopped by a signal after a checkpoint (continue with
# RESUME=1 and the same arguments); anything else failed. SIGTERM, SIGINT, SIGHUP or
# SIGUSR1 to this script stop the run at the next step with a checkpoint; a second
# one ends it at once (jobs/local/mpirun.sh, docs/training.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
np=${1:?usage: $0 NP CONFIG.ini [overrides...]}; config=${2:?usage: $0 NP CONFIG.ini [overrides...]}; shift 2
extra=()
if [ "${RESUME:-0}" = "1" ]; then extra+=(--train.resume latest); fi
# What the ranks print as the command that resumes this run (run from this folder).
resume="RESUME=1 jobs/local/train.sh $(printf '%q ' "$np" "$config" "$@")"
[ -z "${CURACLIP_BIN:-}" ] || resume="CURACLIP_BIN=$(printf '%q' "$CURACLIP_BIN") $resume"
export CURACLIP_RESUME_CMD="${resume% }"
exec bash jobs/local/mpirun.sh "$np" "${CURACLIP_BIN:-build/curaclip}" train --config "$config" "${extra[@]}" "$@"
