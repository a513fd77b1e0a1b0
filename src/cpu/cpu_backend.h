// The CPU reference backend: every Backend op in plain C++ with OpenMP threads
// and OpenBLAS GEMMs, instantiated for float (training on CPUs) and double
// (ground truth for the parity harness and finite-difference gradient checks).
#pragma once

#include <memory>

#include "backend/backend.h"

namespace curaclip {

// dtype: DType::f32 or DType::f64.
std::unique_ptr<Backend> make_cpu_backend(DType dtype);

}  // namespace curaclip
