// JEST kernels of the CPU backend: the pairwise sigmoid loss matrix of a row
// block (docs/jest.md §One JEST step), from which the learnability matrix is formed.
// Each element is computed from its own inputs only, so the result of element
// (i, j) does not depend on the block it sits in (M, threads). float: the
// vectorized softplus of core/host_math.h (~1e-7 relative, the kernel runs over B^2
// elements per model and step); double: libm, the float64 reference.
#include <algorithm>
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "core/host_math.h"

namespace curaclip::cpu {

using namespace curaclip::host;  // fast_exp, fast_erf, parallel_chunks (core/host_math.h)

namespace {
// One row of the f32 kernel: y[j] = softplus(s x[j] + b) (negatives, z = -1), then the
// positive at `label`: softplus(-(s x[label] + b)). y may alias x.
CC_VECTOR_CLONES
void nll_row_f32(float* y, const float* x, int64_t n, int64_t label, float s, float b) {
    const float xl = x[label];
    for (int64_t j = 0; j < n; ++j) y[j] = fast_softplus(s * x[j] + b);
    y[label] = fast_softplus(-(s * xl + b));
}
}  // namespace

template <typename T>
void pairwise_sigmoid_nll(Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias,
                          int64_t label_offset) {
    const char* op = "pairwise_sigmoid_nll";
    check_compute<T>(dots, op, "dots");
    check_compute<T>(nll, op, "nll");
    // Shapes and offsets: checked by CurationOps::pairwise_sigmoid_nll (backend/curation_ops.cpp).
    const int64_t M = dots.shape.rows(), N = dots.shape.cols();
    const double s = std::exp(read_scalar(logit_scale, op, "logit_scale"));
    const double b = read_scalar(logit_bias, op, "logit_bias");
    const T* x = dots.as<T>();
    T* y = nll.as<T>();
    if constexpr (std::is_same_v<T, float>) {
        const float sf = float(s), bf = float(b);
#pragma omp parallel for schedule(static) if (M * N > (1 << 14))
        for (int64_t i = 0; i < M; ++i) nll_row_f32(y + i * N, x + i * N, N, label_offset + i, sf, bf);
        return;
    }
#pragma omp parallel for schedule(static) if (M * N > (1 << 14))
    for (int64_t i = 0; i < M; ++i) {
        const int64_t label = label_offset + i;
        for (int64_t j = 0; j < N; ++j) {
            const double logit = s * double(x[i * N + j]) + b;
            const double m = j == label ? -logit : logit;  // -z * logit
            // softplus(m) = log(1 + e^m), stable for any m.
            y[i * N + j] = T(std::max(m, 0.0) + std::log1p(std::exp(-std::abs(m))));
        }
    }
}

CC_CPU_INSTANTIATE(pairwise_sigmoid_nll, (Tensor, Tensor, Tensor, Tensor, int64_t))

}  // namespace curaclip::cpu
