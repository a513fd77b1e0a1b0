#!/usr/bin/env bash
# Packs a self-contained bundle of a curaclip build for a GPU node without network
# access or build tools: the binaries, every non-system shared library they load
# (MPI, HDF5, Boost, OpenBLAS, gfortran, hwloc, ...), the configs, the test data,
# the benchmark scripts, and run.sh, which points the dynamic loader at the bundle.
#
#   jobs/bundle/make_bundle.sh [--build DIR] [--out DIR] [--only NAMES] [--strip] [--tar|--zst|--xz]
#                              [--with-cuda-libs]
#
#   --build DIR        the CMake build directory to pack (default: build)
#   --out DIR          where to create the bundle (default: curaclip-bundle)
#   --only NAMES       pack only these binaries (comma-separated; default: curaclip,
#                      curaclip_tests, curaclip_mpi_tests and every bench_*). For the GPU
#                      check: --only curaclip,curaclip_tests,bench_train_step
#   --strip            strip the packed binaries' symbol tables (smaller; no backtraces)
#   --tar              also write DIR.tar.gz
#   --zst              also write DIR.tar.zst (zstd -19 --long: about a third of the
#                      bundle; for the GPU check's 64 MiB transfer limit; minutes to write)
#   --xz               also write DIR.tar.xz (xz -9e): unpacks where no zstd is installed
#                      (tar xJf, or Python's tarfile)
#   --with-cuda-libs   also pack the CUDA runtime, cuBLAS/cuBLASLt, cuDNN (all its
#                      sub-libraries) and NCCL. Off by default: GPU nodes usually
#                      provide them (module load cuda/cudnn/nccl), and they are large.
#
# Open MPI's plugins (the mca_*.so it dlopens, and PMIx's) are packed under lib/openmpi
# and lib/pmix, and run.sh points Open MPI at them, so a process that starts MPI alone
# (a singleton: curaclip_tests, curaclip train without mpirun) runs on a node without
# Open MPI. jobs/gpu/check.sh (the one-call GPU check) is packed as jobs/gpu/check.sh.
#
# Never packed: the GPU driver (libcuda, libnvidia-*) and the C library family
# (libc, libm, libpthread, libdl, librt, ld-linux, ...), which must come from the node.
#
# On the GPU node:
#   tar xzf curaclip-bundle.tar.gz
#   curaclip-bundle/run.sh --check                      # every library resolves?
#   curaclip-bundle/run.sh curaclip info                # devices, library versions
#   curaclip-bundle/run.sh curaclip_tests --gtest_filter='Cuda*:*BackendOps*'
#   CURACLIP_CUDA_LIBS=/opt/cuda/lib64 curaclip-bundle/run.sh mpirun -n 4 curaclip train ...
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="build"
out="curaclip-bundle"
make_tar=0
make_zst=0
make_xz=0
with_cuda=0
only=""
strip_bins=0

usage() { sed -n "2,37p" "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --tar) make_tar=1; shift ;;
    --zst) make_zst=1; shift ;;
    --xz) make_xz=1; shift ;;
    --only) only="${2:?--only needs binary names}"; shift 2 ;;
    --strip) strip_bins=1; shift ;;
    --with-cuda-libs) with_cuda=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "make_bundle.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

[[ "$build" = /* ]] || build="$repo/$build"
[[ -d "$build" ]] || { echo "make_bundle.sh: build directory $build does not exist" >&2; exit 1; }
[[ -x "$build/curaclip" ]] || { echo "make_bundle.sh: $build/curaclip is missing: build it first" >&2; exit 1; }
command -v ldd >/dev/null || { echo "make_bundle.sh: ldd is required" >&2; exit 1; }
if [[ -e "$out" ]]; then
  echo "make_bundle.sh: $out already exists; remove it or pick another --out" >&2
  exit 1
fi

mkdir -p "$out/bin" "$out/lib"

# ---- binaries ------------------------------------------------------------------------
bins=()
if [[ -n "$only" ]]; then
  IFS=',' read -r -a names <<<"$only"
  for name in "${names[@]}"; do
    [[ -x "$build/$name" ]] || { echo "make_bundle.sh: $build/$name is missing (--only)" >&2; exit 1; }
    bins+=("$build/$name")
  done
else
  for name in curaclip curaclip_tests curaclip_mpi_tests; do
    [[ -x "$build/$name" ]] && bins+=("$build/$name")
  done
  for f in "$build"/bench_*; do
    [[ -f "$f" && -x "$f" ]] && bins+=("$f")
  done
fi
for b in "${bins[@]}"; do cp -p "$b" "$out/bin/"; done
if [[ $strip_bins -eq 1 ]]; then
  command -v strip >/dev/null || { echo "make_bundle.sh: --strip needs strip (binutils)" >&2; exit 1; }
  strip --strip-unneeded "$out"/bin/*
fi

# ---- shared libraries ------------------------------------------------------------------
# Libraries that must come from the node: the C library family and the GPU driver.
is_system() {
  case "$1" in
    linux-vdso.so*|linux-gate.so*|ld-linux*.so*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|\
    libresolv.so*|libutil.so*|libnsl.so*|libanl.so*|libcrypt.so*|libmvec.so*) return 0 ;;
    libcuda.so*|libnvidia-*.so*|libcudadebugger.so*|libnvcuvid.so*|libnvoptix.so*) return 0 ;;
  esac
  return 1
}
is_cuda_lib() {
  case "$1" in
    libcudart.so*|libcublas.so*|libcublasLt.so*|libcudnn*.so*|libnccl.so*|libnvrtc*.so*|libnvJitLink.so*|\
    libcufft*.so*|libcurand.so*|libcusolver*.so*|libcusparse*.so*|libnvToolsExt.so*) return 0 ;;
  esac
  return 1
}

declare -A seen=()
missing=()
copy_lib() {  # copy_lib NAME PATH: the library under the name the binaries ask for
  local name="$1" path="$2"
  [[ -n "${seen[$name]:-}" ]] && return 0
  seen[$name]=1
  cp -L "$path" "$out/lib/$name"
}
for b in "${bins[@]}"; do
  while read -r line; do
    # "libfoo.so.1 => /path/libfoo.so.1 (0x...)" or "libfoo.so.1 => not found"
    name="$(awk '{print $1}' <<<"$line")"
    path="$(awk '$2 == "=>" {print $3}' <<<"$line")"
    [[ -z "$name" ]] && continue
    is_system "$name" && continue
    if [[ "$path" == "not" ]]; then missing+=("$name (needed by $(basename "$b"))"); continue; fi
    [[ -z "$path" || ! -f "$path" ]] && continue
    if is_cuda_lib "$name"; then
      [[ $with_cuda -eq 1 ]] || continue
    fi
    copy_lib "$name" "$path"
  done < <(ldd "$b" 2>/dev/null || true)
done
if [[ $with_cuda -eq 1 ]]; then
  # cuDNN 9 loads its engine sub-libraries with dlopen: ldd does not list them.
  for f in "$out"/lib/libcudnn.so*; do
    [[ -e "$f" ]] || continue
    src="$(ldd "$out/bin/curaclip" | awk '$1 ~ /^libcudnn\.so/ {print $3; exit}')"
    [[ -n "$src" ]] || break
    for sub in "$(dirname "$(readlink -f "$src")")"/libcudnn_*.so*; do
      [[ -f "$sub" ]] || continue
      n="$(basename "$sub")"
      [[ -e "$out/lib/$n" ]] || cp -L "$sub" "$out/lib/$n"
    done
    break
  done
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "make_bundle.sh: warning: these libraries do not resolve on this machine either:" >&2
  printf '  %s\n' "${missing[@]}" >&2
fi

# ---- Open MPI / PMIx plugins (dlopen'ed: ldd does not list them) ------------------------------
plugin_dir_of() {  # plugin_dir_of LIBNAME SUBDIR: the plugin folder next to the library the binaries load
  local lib path
  lib="$(ldd "$out/bin/curaclip" 2>/dev/null | awk -v n="$1" '$1 ~ n {print $3; exit}')"
  [[ -n "$lib" ]] || return 0
  for path in "$(dirname "$(readlink -f "$lib")")/$2" "$(dirname "$lib")/$2"; do
    [[ -d "$path" ]] && { echo "$path"; return 0; }
  done
}
ompi_plugins="$(plugin_dir_of '^libmpi[.]so' openmpi/lib/openmpi3)"
pmix_plugins=""
for d in /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix /usr/lib/x86_64-linux-gnu/pmix/lib/pmix; do
  [[ -d "$d" ]] && { pmix_plugins="$d"; break; }
done
for pair in "openmpi:$ompi_plugins" "pmix:$pmix_plugins"; do
  dst="${pair%%:*}" src="${pair#*:}"
  [[ -n "$src" ]] || continue
  mkdir -p "$out/lib/$dst"
  cp -pL "$src"/*.so "$out/lib/$dst/" 2>/dev/null || true
  # ... and the libraries the plugins need that the binaries did not bring.
  for plug in "$out/lib/$dst"/*.so; do
    while read -r name _ path _; do
      [[ -z "$name" || "$path" == "not" || -z "$path" || ! -f "$path" ]] && continue
      is_system "$name" && continue
      is_cuda_lib "$name" && continue
      copy_lib "$name" "$path"
    done < <(ldd "$plug" 2>/dev/null | grep '=>' || true)
  done
done
# libpmix itself (Open MPI's pmix component links it from PMIx's own folder).
for f in /usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so*; do
  [[ -f "$f" ]] && cp -pL "$f" "$out/lib/" 2>/dev/null || true
done

# ---- data, configs, scripts -----------------------------------------------------------------
cp -rp "$repo/configs" "$out/configs"
mkdir -p "$out/tests"
cp -rp "$repo/tests/data" "$out/tests/data"
[[ -d "$repo/tests/cli" ]] && cp -rp "$repo/tests/cli" "$out/tests/cli"
# The PyTorch peer model (open_clip's layout) that bench/gpu_clip_step.py imports.
mkdir -p "$out/tests/reference"
cp -p "$repo/tests/reference/torch_clip.py" "$out/tests/reference/"
mkdir -p "$out/bench"
for f in "$repo"/bench/*.py "$repo"/bench/*.sh; do [[ -f "$f" ]] && cp -p "$f" "$out/bench/"; done
[[ -d "$repo/bench/results" ]] && cp -rp "$repo/bench/results" "$out/bench/results"
mkdir -p "$out/jobs/gpu"
[[ -f "$repo/jobs/gpu/check.sh" ]] && cp -p "$repo/jobs/gpu/check.sh" "$out/jobs/gpu/"
mkdir -p "$out/docs"
for f in cuda.md training.md backend.md; do
  [[ -f "$repo/docs/$f" ]] && cp -p "$repo/docs/$f" "$out/docs/"
done

# ---- run.sh ------------------------------------------------------------------------------------
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs a command with this bundle's binaries on PATH and its libraries on
# LD_LIBRARY_PATH. CURACLIP_CUDA_LIBS (optional, ':'-separated) names directories
# with the CUDA runtime / cuBLAS / cuDNN / NCCL when the bundle does not carry them;
# they are searched first. The GPU driver always comes from the node.
#   run.sh COMMAND [ARGS...]     e.g. run.sh curaclip train --config configs/tiny.ini
#   run.sh --check               report libraries that do not resolve
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
libs="$here/lib"
if [[ -n "${CURACLIP_CUDA_LIBS:-}" ]]; then libs="$CURACLIP_CUDA_LIBS:$libs"; fi
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$here/bin:$PATH"
export CURACLIP_BUNDLE="$here"
# Open MPI and PMIx plugins from the bundle (same version as the packed libmpi); a
# singleton (no mpirun) runs without starting Open MPI's daemon.
if [[ -d "$here/lib/openmpi" ]]; then
  export OMPI_MCA_mca_base_component_path="${OMPI_MCA_mca_base_component_path:-$here/lib/openmpi}"
  export OMPI_MCA_ess_singleton_isolated="${OMPI_MCA_ess_singleton_isolated:-1}"
fi
[[ -d "$here/lib/pmix" ]] && export PMIX_MCA_mca_base_component_path="${PMIX_MCA_mca_base_component_path:-$here/lib/pmix}"
if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ "$1" == "--check" ]]; then
  status=0
  for b in "$here"/bin/*; do
    if ldd "$b" | grep -q "not found"; then
      echo "$(basename "$b"): missing libraries:"
      ldd "$b" | grep "not found" | sed 's/^/  /'
      status=1
    fi
  done
  for p in "$here"/lib/openmpi/*.so "$here"/lib/pmix/*.so; do
    [[ -f "$p" ]] || continue
    if ldd "$p" | grep -q "not found"; then
      echo "plugin $(basename "$p"): missing libraries:"; ldd "$p" | grep "not found" | sed 's/^/  /'; status=1
    fi
  done
  [[ $status -eq 0 ]] && echo "all libraries resolve"
  exit $status
fi
exec "$@"
RUN
chmod +x "$out/run.sh"

# ---- manifest ------------------------------------------------------------------------------------
{
  echo "curaclip bundle"
  echo "created: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n) ($(uname -m))"
  echo "source commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "build directory: $build"
  echo "cuda libraries packed: $([[ $with_cuda -eq 1 ]] && echo yes || echo no)"
  echo "compiled-in source directory (tests read tests/data from there): $repo"
  echo "glibc: $(ldd --version 2>/dev/null | head -n1)"
  echo
  echo "bin/:"; (cd "$out/bin" && ls -1 | sed 's/^/  /')
  echo "lib/:"; (cd "$out/lib" && ls -1 | sed 's/^/  /')
} > "$out/MANIFEST.txt"

if [[ $make_tar -eq 1 ]]; then
  tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
  echo "wrote $out.tar.gz"
fi
if [[ $make_zst -eq 1 ]]; then
  command -v zstd >/dev/null || { echo "make_bundle.sh: --zst needs zstd" >&2; exit 1; }
  tar -C "$(dirname "$out")" -cf - "$(basename "$out")" | zstd -q -19 --long=27 -T0 -f -o "$out.tar.zst"
  echo "wrote $out.tar.zst ($(du -h "$out.tar.zst" | cut -f1))"
fi
if [[ $make_xz -eq 1 ]]; then
  command -v xz >/dev/null || { echo "make_bundle.sh: --xz needs xz" >&2; exit 1; }
  tar -C "$(dirname "$out")" -cf - "$(basename "$out")" | xz -9e -T0 > "$out.tar.xz"
  echo "wrote $out.tar.xz ($(du -h "$out.tar.xz" | cut -f1))"
fi
echo "bundle in $out: ${#bins[@]} binaries, $(ls "$out/lib" | wc -l) libraries (see $out/MANIFEST.txt)"
