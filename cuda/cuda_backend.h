// The CUDA backend (docs/cuda.md §Numerics): every Backend op on one NVIDIA GPU, with bf16
// activations and parameters (dtype() == bf16), fp32 accumulation everywhere, fp32
// saved statistics, loss scalars and AdamW moments; adamw_step updates bf16 parameters
// through the fp32 masters the ParameterSet keeps beside them. One stream per backend;
// memory by cudaMalloc. See docs/cuda.md.
//
// Registered as "cuda" (cuda_backend.cpp); make_backend("cuda") throws an Error
// ("no CUDA device") where no usable GPU is present.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "backend/backend.h"

namespace curaclip::cuda {

// Empty when the backend can run here; otherwise why not ("no CUDA device", too old a GPU).
std::string unavailable_reason();

// A CUDA backend on `device` (-1: the calling thread's current device). The device is
// made current for the calling thread; use the backend from that thread.
std::unique_ptr<Backend> make_cuda_backend(int device = -1);

// One process per GPU: makes device local_rank % device_count() current and returns it.
// Call before creating the backend (and before NCCL), e.g. with Communicator::local_rank().
int select_device_for_local_rank(int local_rank);

// The stream and device of a CUDA backend (for NCCL collectives); throws for other backends.
cudaStream_t stream_of(Backend& backend);
int device_of(Backend& backend);
// Which attention path (cuDNN fused SDPA or the own kernels) each shape seen so far took.
std::string attention_report(Backend& backend);

}  // namespace curaclip::cuda
