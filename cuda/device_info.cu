#include "cuda/device_info.h"

#include <cstdio>
#include <sstream>
#include <vector>

#include "cuda/cuda_check.h"

namespace curaclip::cuda {

int device_count() {
    int n = 0;
    // No driver / no device are normal on CPU machines: report zero devices.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

std::string device_report() {
    std::ostringstream os;
    const int n = device_count();
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    if (cudaDriverGetVersion(&driver) != cudaSuccess) (void)cudaGetLastError();  // 0: no driver
    int nccl = 0;
    ncclGetVersion(&nccl);
    // Versions of the libraries this process loaded (not those it was built against: a node's
    // own cuDNN/NCCL may differ), and the newest CUDA the driver supports.
    os << "CUDA runtime " << runtime / 1000 << "." << (runtime % 1000) / 10 << " (built with " << CUDART_VERSION / 1000
       << "." << (CUDART_VERSION % 1000) / 10 << "), driver supports CUDA " << driver / 1000 << "."
       << (driver % 1000) / 10 << ", cuBLASLt " << cublasLtGetVersion() << ", cuDNN " << cudnnGetVersion()
       << " (built with " << CUDNN_VERSION << "), NCCL " << nccl << "; " << n << " device(s)\n";
    for (int d = 0; d < n; ++d) {
        cudaDeviceProp p{};
        CC_CUDA_CHECK(cudaGetDeviceProperties(&p, d));
        char buf[512];
        std::snprintf(buf, sizeof buf, "  device %d: %s, sm_%d%d, %.1f GiB, %d SMs\n", d, p.name, p.major, p.minor,
                      double(p.totalGlobalMem) / (1024.0 * 1024 * 1024), p.multiProcessorCount);
        os << buf;
    }
    return os.str();
}

std::string device_name(int device) {
    cudaDeviceProp p{};
    CC_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    return p.name;
}

size_t device_memory_used() {
    size_t free_b = 0, total_b = 0;
    CC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

namespace {
__global__ void saxpy_kernel(int n, float a, const float* x, float* y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
}  // namespace

bool run_smoke_kernel(int device) {
    CC_CUDA_CHECK(cudaSetDevice(device));
    const int n = 1 << 16;
    std::vector<float> x(n), y(n);
    for (int i = 0; i < n; ++i) x[i] = float(i % 97), y[i] = 1.0f;
    float *dx = nullptr, *dy = nullptr;
    CC_CUDA_CHECK(cudaMalloc(&dx, n * sizeof(float)));
    CC_CUDA_CHECK(cudaMalloc(&dy, n * sizeof(float)));
    CC_CUDA_CHECK(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    CC_CUDA_CHECK(cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    saxpy_kernel<<<(n + 255) / 256, 256>>>(n, 2.0f, dx, dy);
    CC_CUDA_CHECK(cudaGetLastError());
    CC_CUDA_CHECK(cudaMemcpy(y.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    CC_CUDA_CHECK(cudaFree(dx));
    CC_CUDA_CHECK(cudaFree(dy));
    for (int i = 0; i < n; ++i)
        if (y[i] != 2.0f * float(i % 97) + 1.0f) return false;
    return true;
}

}  // namespace curaclip::cuda
