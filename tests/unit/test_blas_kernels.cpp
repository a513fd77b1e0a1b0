// cpu/blas_kernels.h: which OpenBLAS core a CPU should get when OpenBLAS's own
// detection fell back to older kernels (a VM hiding its CPU model).
#include <gtest/gtest.h>

#include "cpu/blas_kernels.h"

namespace curaclip::cpu {
namespace {

TEST(BlasKernels, AFallbackToPrescottOnAnAvx512CpuAsksForSkylakeX) {
    EXPECT_EQ(better_openblas_core("Prescott", true, true, true), "SkylakeX");
    EXPECT_EQ(better_openblas_core("prescott", true, true, true), "SkylakeX");
    EXPECT_EQ(better_openblas_core("Nehalem", true, true, false), "Haswell");
    EXPECT_EQ(better_openblas_core("Core2", true, false, false), "Sandybridge");
    EXPECT_EQ(better_openblas_core("Sandybridge", true, true, false), "Haswell");
}

TEST(BlasKernels, KernelsThatMatchTheCpuAreLeftAlone) {
    EXPECT_EQ(better_openblas_core("SkylakeX", true, true, true), "");
    EXPECT_EQ(better_openblas_core("Cooperlake", true, true, true), "");
    EXPECT_EQ(better_openblas_core("Haswell", true, true, false), "");
    EXPECT_EQ(better_openblas_core("Zen", true, true, false), "");
    EXPECT_EQ(better_openblas_core("Prescott", false, false, false), "");  // an SSE-only CPU
}

}  // namespace
}  // namespace curaclip::cpu
