#!/usr/bin/env bash
# Installs every dependency of curaclip from Debian 12 packages. Idempotent; run
# as root or as a user with sudo. Nothing is fetched from anywhere else.
#
#   bash jobs/install_deps.sh            # build + test dependencies
#   bash jobs/install_deps.sh --dev      # also the Python tools for reference data and benchmarks
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_deps: not root and no sudo" >&2; exit 1; }
  SUDO="sudo"
fi

packages=(
  build-essential cmake ninja-build pkg-config git procps
  openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  libboost-program-options-dev
  zlib1g-dev
  libopenblas-openmp-dev
  libgtest-dev googletest
  dataset-fashion-mnist
  python3 python3-numpy python3-h5py python3-matplotlib
)
if [ "${1:-}" = "--dev" ]; then
  packages+=(python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install_deps: all Debian packages present"
fi
