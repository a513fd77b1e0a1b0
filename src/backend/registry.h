// Backend registry: the backends compiled into this binary, by name.
//
// "cpu"      fp32 reference backend (OpenBLAS + OpenMP), what training uses on CPUs
// "cpu-f64"  the same kernels in float64: the ground truth of the parity harness
//            and of finite-difference gradient checks
// "cuda"     registered by cuda/ when it is compiled in (it reports itself
//            unavailable at run time when no GPU is present)
// Every backend registers itself from a static initializer in its own library
// (src/cpu/cpu_backend.cpp, cuda/cuda_backend.cpp); this library knows none of
// them. Binaries link the backend libraries whole (CMake: curaclip_backends), so the
// initializers are kept.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace curaclip {

struct BackendFactory {
    std::string name;
    // Empty string when the backend can run here; otherwise why not (e.g. "no CUDA device").
    std::function<std::string()> unavailable_reason;
    std::function<std::unique_ptr<Backend>()> create;
    int listing_order = 100;  // registered_backends() order: cpu 0, cpu-f64 1, others after
};

// Adds a factory; backends compiled in other libraries call it from a static initializer.
bool register_backend(BackendFactory factory);
const std::vector<BackendFactory>& registered_backends();
// Creates the named backend, or throws an Error naming the choices / why it cannot run.
std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace curaclip
