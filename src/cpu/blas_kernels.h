// OpenBLAS's kernels chosen for the CPU the process runs on.
//
// Debian's OpenBLAS is built with DYNAMIC_ARCH: at load time it picks its kernels
// from the CPUID family and model. A virtual machine that reports a generic model
// ("Intel Xeon Processor", as many cloud VMs do) makes it fall back to its oldest
// x86-64 kernels, "Prescott" (SSE3), although the CPU has AVX2 or AVX-512: every
// GEMM then runs 4-6x slower (measured: the MiniLM sentence encoder on one core,
// 128 vs 697 captions/s, bench notes in docs/backend.md). OpenBLAS reads its
// OPENBLAS_CORETYPE variable only while it loads, so the fix has to come before
// that: main() calls use_blas_kernels_of_this_cpu() first, which, when the loaded
// kernels lack instructions the CPU has and the user has not set OPENBLAS_CORETYPE,
// sets it (SkylakeX for AVX-512, Haswell for AVX2+FMA, Sandybridge for AVX) and
// executes the same program again (execv of the binary's own path, so that the
// process name stays; same pid and arguments; before MPI starts). A user's OPENBLAS_CORETYPE is always left as it is.
#pragma once

#include <string>

namespace curaclip::cpu {

// The OpenBLAS core type this CPU's features call for when the loaded kernels are
// weaker ("" when they are not, or OPENBLAS_CORETYPE is set). `loaded` is
// openblas_get_corename() (case does not matter); the features are the CPU's.
std::string better_openblas_core(const std::string& loaded, bool avx, bool avx2_fma, bool avx512);

// As described above; returns only when nothing needs to change (or execv failed).
void use_blas_kernels_of_this_cpu(char** argv);

// openblas_get_corename(), e.g. "SkylakeX" (for `curaclip info`).
std::string blas_core_name();

}  // namespace curaclip::cpu
