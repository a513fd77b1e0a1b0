#!/usr/bin/env bash
# Installs every dependency of curaclip from Debian 12 packages. Idempotent; run
# as root or as a user with sudo. Everything comes from Debian packages except the
# header-only cuDNN frontend on machines with a CUDA toolkit (a PyPI wheel, see the end).
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
  libvips-dev libturbojpeg0-dev libzimg-dev libarchive-dev libcsv-dev nlohmann-json3-dev libutf8proc-dev
  libopenblas-openmp-dev
  libgtest-dev googletest
  dataset-fashion-mnist
  python3 python3-numpy python3-h5py python3-matplotlib python3-pil
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

# ---- cuDNN frontend headers (CUDA builds only) ----------------------------------------------
# The one piece that does not come from Debian: NVIDIA's header-only C++ graph API for
# cuDNN (cudnn_frontend.h), which builds the fused attention (SDPA) graphs of
# cuda/attention_cudnn.cpp. Debian has no package for it; PyPI's nvidia-cudnn-frontend
# wheel ships the headers. We only download the wheel (pip download: nothing is installed
# into any Python) and copy its include/ to $CUDNN_FE_DIR, where CMakeLists.txt looks.
# The version is pinned; the wheel's tags are fixed, so the same headers arrive whatever
# Python or CPU this machine has (they are plain headers). Skipped without a CUDA toolkit.
CUDNN_FE_VERSION=1.32.0
CUDNN_FE_DIR=/opt/cudnn-frontend
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  if [ "$(cat "$CUDNN_FE_DIR/VERSION" 2>/dev/null)" = "$CUDNN_FE_VERSION" ] &&
     [ -f "$CUDNN_FE_DIR/include/cudnn_frontend.h" ]; then
    echo "install_deps: cuDNN frontend $CUDNN_FE_VERSION present in $CUDNN_FE_DIR"
  else
    if ! /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
      echo "install_deps: installing python3-pip (to fetch the cuDNN frontend headers)"
      export DEBIAN_FRONTEND=noninteractive
      $SUDO apt-get update -qq
      $SUDO apt-get install -y -qq --no-install-recommends python3-pip
    fi
    fe_tmp="$(mktemp -d)"
    trap 'rm -rf "$fe_tmp"' EXIT
    echo "install_deps: fetching nvidia-cudnn-frontend==$CUDNN_FE_VERSION (headers) from PyPI"
    # No PyPI (an offline node): not fatal. CMake then warns and the CUDA backend builds
    # with its own attention kernels only (docs/cuda.md).
    if ! /usr/bin/python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --implementation cp --python-version 3.11 --abi cp311 --platform manylinux_2_28_x86_64 \
      -d "$fe_tmp" "nvidia-cudnn-frontend==$CUDNN_FE_VERSION"; then
      echo "install_deps: WARNING: could not fetch nvidia-cudnn-frontend from PyPI;" \
           "the CUDA backend will build without cuDNN fused attention" >&2
      exit 0
    fi
    /usr/bin/python3 -m zipfile -e "$fe_tmp"/nvidia_cudnn_frontend-*.whl "$fe_tmp/wheel"
    [ -f "$fe_tmp/wheel/include/cudnn_frontend.h" ] ||
      { echo "install_deps: the wheel has no include/cudnn_frontend.h" >&2; exit 1; }
    # Into a fresh folder, then swapped in: an interrupted run never leaves half a tree.
    $SUDO rm -rf "$CUDNN_FE_DIR.new"
    $SUDO mkdir -p "$CUDNN_FE_DIR.new"
    $SUDO cp -r "$fe_tmp/wheel/include" "$CUDNN_FE_DIR.new/include"
    echo "$CUDNN_FE_VERSION" | $SUDO tee "$CUDNN_FE_DIR.new/VERSION" >/dev/null
    $SUDO rm -rf "$CUDNN_FE_DIR"
    $SUDO mv "$CUDNN_FE_DIR.new" "$CUDNN_FE_DIR"
    echo "install_deps: cuDNN frontend $CUDNN_FE_VERSION installed in $CUDNN_FE_DIR"
  fi
fi
