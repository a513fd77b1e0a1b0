// Internal to cuda/: device-side helpers of the op kernels (only .cu files include
// this): bf16 loads/stores as float, a dtype-erased pointer for saved statistics and
// [1] scalars, warp and block reductions, grid sizing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/cuda_ops.h"

namespace curaclip::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float ld(const bf16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ void st(bf16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }

// A float tensor of any float dtype seen through double (statistics, [1] scalars,
// accumulators): small, so the per-element switch costs nothing that matters.
struct AnyPtr {
    void* p = nullptr;
    int dt = 0;  // 0 f32, 1 f64, 2 bf16
    __device__ __forceinline__ double get(int64_t i) const {
        if (dt == 0) return double(static_cast<const float*>(p)[i]);
        if (dt == 1) return static_cast<const double*>(p)[i];
        return double(__bfloat162float(static_cast<const bf16*>(p)[i]));
    }
    __device__ __forceinline__ void set(int64_t i, double v) const {
        if (dt == 0) static_cast<float*>(p)[i] = float(v);
        else if (dt == 1) static_cast<double*>(p)[i] = v;
        else static_cast<bf16*>(p)[i] = __float2bfloat16_rn(float(v));
    }
    __device__ __forceinline__ void add(int64_t i, double v) const { set(i, get(i) + v); }
    __device__ __forceinline__ bool valid() const { return p != nullptr; }
};

// Host: the AnyPtr of a float tensor (empty tensor -> null pointer).
inline AnyPtr any_ptr(const Tensor& t) {
    AnyPtr a;
    if (t.empty()) return a;
    a.p = t.data;
    switch (t.dtype) {
        case DType::f32: a.dt = 0; break;
        case DType::f64: a.dt = 1; break;
        case DType::bf16: a.dt = 2; break;
        default: CC_FAIL("internal: any_ptr of a ", dtype_name(t.dtype), " tensor");
    }
    return a;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `red` is shared memory of 32 elements. Fixed order for a fixed blockDim: deterministic.
template <typename V>
__device__ V block_sum(V v, V* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    V r = lane < nw ? red[lane] : V(0);
    r = warp_sum(r);
    return r;
}
__device__ __forceinline__ float block_max(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = lane < nw ? red[lane] : -INFINITY;
    return warp_max(r);
}

// Grid for a grid-stride loop over n elements.
inline unsigned grid_for(int64_t n, int threads) {
    const int64_t b = (n + threads - 1) / threads;
    return unsigned(std::max<int64_t>(1, std::min<int64_t>(b, int64_t(1) << 20)));
}

#define CC_GRID_STRIDE(i, n) \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

}  // namespace curaclip::cuda
