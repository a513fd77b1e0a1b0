// The CUDA side of `curaclip info` and of the GPU tests: which devices this
// process sees and which cuBLAS / cuDNN / NCCL it runs with.
#pragma once

#include <cstddef>
#include <string>

namespace curaclip::cuda {

// Number of visible CUDA devices; 0 (not an error) when there is no driver or GPU.
int device_count();
// One line per device (name, compute capability, memory) and the library versions.
std::string device_report();
// The name of device `device` (e.g. "NVIDIA H100 80GB HBM3").
std::string device_name(int device);
// Bytes in use on the current device (total - free, cudaMemGetInfo): every context and
// allocation on it, this process's and others'. Benchmarks take differences of it.
size_t device_memory_used();
// Runs a small kernel on device `device` and checks its result: the smoke test
// that the toolchain, driver and architecture list fit together.
bool run_smoke_kernel(int device);

}  // namespace curaclip::cuda
