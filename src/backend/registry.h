// Backend registry: the backends compiled into this binary, by name.
//
// "cpu"      fp32 reference backend (OpenBLAS + OpenMP), what training uses on CPUs
// "cpu-f64"  the same kernels in float64: the ground truth of the parity harness
//            and of finite-difference gradient checks
// "cuda"     registered by cuda/ when it is compiled in (it reports itself
//            unavailable at run time when no GPU is present)
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
};

// Adds a factory; backends compiled in other libraries call it from a static initializer.
bool register_backend(BackendFactory factory);
const std::vector<BackendFactory>& registered_backends();
// Creates the named backend, or throws an Error naming the choices / why it cannot run.
std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace curaclip
