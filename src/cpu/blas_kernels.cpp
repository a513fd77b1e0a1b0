#include "cpu/blas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace curaclip::cpu {

namespace {
// 0: SSE only, 1: AVX, 2: AVX2 + FMA, 3: AVX-512 (OpenBLAS's x86-64 core names, lower case).
int core_level(std::string core) {
    std::transform(core.begin(), core.end(), core.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    for (const char* c : {"skylakex", "cooperlake", "sapphirerapids"})
        if (core == c) return 3;
    for (const char* c : {"haswell", "zen", "skylake"})
        if (core == c) return 2;
    for (const char* c : {"sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"})
        if (core == c) return 1;
    return 0;  // prescott, core2, penryn, dunnington, nehalem, atom, barcelona, ... or unknown
}
}  // namespace

std::string better_openblas_core(const std::string& loaded, bool avx, bool avx2_fma, bool avx512) {
    const int have = core_level(loaded);
    if (avx512 && have < 3) return "SkylakeX";
    if (avx2_fma && have < 2) return "Haswell";
    if (avx && have < 1) return "Sandybridge";
    return "";
}

void use_blas_kernels_of_this_cpu(char** argv) {
#if defined(__x86_64__)
    if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice (or ours, after the execv)
    const char* loaded = openblas_get_corename();
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    const std::string want = better_openblas_core(loaded ? loaded : "", __builtin_cpu_supports("avx"),
                                                  __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
                                                  avx512);
    if (want.empty()) return;
    // The binary's real path, not /proc/self/exe: the process name (comm, what ps, top,
    // pgrep and Slurm show) is taken from the path executed, and must stay "curaclip".
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;  // no /proc: go on with the loaded kernels
    self[n] = '\0';
    ::setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
    ::execv(self, argv);
    // execv failed: go on with the loaded kernels (children started later get the variable).
#else
    (void)argv;
#endif
}

std::string blas_core_name() {
    const char* n = openblas_get_corename();
    return n ? n : "";
}

}  // namespace curaclip::cpu
