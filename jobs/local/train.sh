#!/usr/bin/env bash
# Local training launcher:  jobs/local/train.sh NP CONFIG.ini [--section.key value ...]
# Resumes the run folder given by --train.out when it already holds a checkpoint
# and RESUME=1 is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
np=${1:?usage: $0 NP CONFIG.ini [overrides...]}; config=${2:?usage: $0 NP CONFIG.ini [overrides...]}; shift 2
extra=()
if [ "${RESUME:-0}" = "1" ]; then extra+=(--train.resume latest); fi
exec bash jobs/local/mpirun.sh "$np" "${CURACLIP_BIN:-build/curaclip}" train --config "$config" "${extra[@]}" "$@"
