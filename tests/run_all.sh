#!/usr/bin/env bash
# Installs the dependencies, builds curaclip (CUDA backend included where the
# toolkit is present) with warnings as errors, and runs the whole test suite:
# unit, backend-parity, gradient-check and MPI tests (1, 2 and 4 ranks); the Slurm
# templates on a one-node Slurm (tests/slurm/); then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
# GPU tests skip cleanly on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

bash jobs/install_deps.sh
jobs_n=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCURACLIP_WERROR=ON
cmake --build build -j "$jobs_n"
(cd build && ctest --output-on-failure -j "$jobs_n" --timeout 900)

# The Slurm templates on a real one-node Slurm (docs/slurm.md): run_tests.sh starts
# the node in a folder of its own and stops its daemons by PID when it ends, also on a
# failure. Here Slurm is installed (install_deps.sh), so a node that cannot start fails.
CURACLIP_REQUIRE_SLURM=1 bash tests/slurm/run_tests.sh build/curaclip

if [ "${CURACLIP_SKIP_SANITIZERS:-0}" != "1" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCURACLIP_WERROR=ON \
        -DCURACLIP_SANITIZE=ON -DCURACLIP_CUDA=OFF
  cmake --build build-asan -j "$jobs_n" --target curaclip_tests
  # Leak checking is on except for the unit tests that start MPI (KMeans.*, and every
  # suite named *WithMpi): Open MPI
  # keeps allocations past MPI_Finalize inside plugins it has already unloaded, so
  # LeakSanitizer can neither suppress nor attribute them. Memory errors and UB are
  # still checked there.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$jobs_n" -L unit -E '^(KMeans|[A-Za-z]*WithMpi)[.]' --timeout 900)
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$jobs_n" -L unit -R '^(KMeans|[A-Za-z]*WithMpi)[.]' --timeout 900)
fi
