#!/usr/bin/env bash
# All the Slurm tests on one one-node Slurm (started here, stopped by PID at the
# end, also on a failure), as tests/run_all.sh runs them:
#   bash tests/slurm/run_tests.sh path/to/curaclip
# Without Slurm or root: skips (exit 0), unless CURACLIP_REQUIRE_SLURM=1.
set -uo pipefail
BIN=${1:?usage: $0 path/to/curaclip}
here=$(cd "$(dirname "$0")" && pwd)
export PATH=$PATH:/usr/sbin
skip() {
  if [ "${CURACLIP_REQUIRE_SLURM:-0}" = 1 ]; then echo "FAIL $1" >&2; exit 1; fi
  echo "SKIP Slurm tests: $1"; exit 0
}
for c in slurmctld slurmd munged sbatch; do
  command -v "$c" >/dev/null || skip "Slurm is not installed ($c missing: apt-get install slurmctld slurmd slurm-client munge libpmix-dev)"
done
[ "$(id -u)" -eq 0 ] || skip "the one-node Slurm needs root"
node=$(mktemp -d /tmp/curaclip-slurm-node.XXXXXX)
trap 'bash "$here/slurm_node.sh" stop "$node" >/dev/null || true' EXIT
bash "$here/slurm_node.sh" start "$node" || skip "the one-node Slurm did not start"
export SLURM_CONF=$node/slurm.conf CURACLIP_REQUIRE_SLURM=1
rc=0
for t in test_train_sbatch.sh test_mode_pipeline.sh; do
  s=$(date +%s)
  bash "$here/$t" "$BIN" || rc=1
  echo "== $t: $(( $(date +%s) - s )) s"
done
exit $rc
