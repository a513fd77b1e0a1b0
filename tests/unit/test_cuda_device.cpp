// GPU smoke test: skipped cleanly where the CUDA backend is not compiled in or no GPU is present.
#include <gtest/gtest.h>

#ifdef CURACLIP_HAVE_CUDA
#include "cuda/device_info.h"
#endif

namespace {

TEST(CudaDevice, SmokeKernelOnEveryVisibleDevice) {
#ifndef CURACLIP_HAVE_CUDA
    GTEST_SKIP() << "built without the CUDA backend";
#else
    const int n = curaclip::cuda::device_count();
    std::printf("%s", curaclip::cuda::device_report().c_str());
    if (n == 0) GTEST_SKIP() << "no CUDA device on this machine";
    for (int d = 0; d < n; ++d) EXPECT_TRUE(curaclip::cuda::run_smoke_kernel(d)) << "device " << d;
#endif
}

}  // namespace
