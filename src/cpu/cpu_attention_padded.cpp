// Padding-aware bidirectional attention of the CPU backend (Backend::attention_padded_forward,
// the BERT-family sentence encoders of src/encoder/). One (batch, head) pair per OpenMP
// task as in cpu_attention.cpp; the scores of row b are only computed against its
// L = lengths[b] valid keys (a T x L GEMM on strided views of qkv), so padded keys cost
// nothing and get probability exactly 0, as Hugging Face BERT's additive mask of the
// dtype's minimum gives.
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "core/host_math.h"

namespace curaclip::cpu {

using namespace curaclip::host;  // fast_exp, fast_erf, parallel_chunks (core/host_math.h)

namespace {
// Below this much work (B * n_head * T * T * hs) one thread beats a parallel region.
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

template <typename T>
void attention_padded_forward(Tensor out, Tensor qkv, Tensor lengths, int n_head) {
    const char* op = "attention_padded_forward";
    check_compute<T>(qkv, op, "qkv");
    check_compute<T>(out, op, "out");
    // Shapes, n_head and the lengths' dtype and count: checked by Backend
    // (backend/op_contracts.cpp); here the BLAS int limit and the lengths' values.
    const int64_t B = qkv.shape[0], Tn = qkv.shape[1], C3 = qkv.shape[2], C = C3 / 3;
    CC_CHECK(Tn * Tn <= INT_MAX && C3 <= INT_MAX, op, ": sequence length ", Tn, " or width too large");
    const int32_t* len = lengths.as<int32_t>();
    for (int64_t b = 0; b < B; ++b)
        CC_CHECK(len[b] >= 1 && len[b] <= Tn, op, ": lengths[", b, "] = ", len[b], " is outside [1, T = ", Tn,
                 "]");
    const int64_t hs = C / n_head, nbh = B * n_head;
    if (nbh == 0 || Tn == 0) return;
    const T scale = T(1.0 / std::sqrt(double(hs)));
    const T* x = qkv.as<T>();
    T* o = out.as<T>();
    const int nthreads = omp_get_max_threads();
    std::vector<T> scratch(size_t(nthreads) * size_t(Tn * Tn));
#pragma omp parallel for schedule(dynamic, 1) if (nbh > 1 && nbh * Tn * Tn * hs > kParallelMin)
    for (int64_t bh = 0; bh < nbh; ++bh) {
        const int64_t b = bh / n_head, h = bh % n_head, L = len[b];
        T* s = scratch.data() + size_t(omp_get_thread_num()) * size_t(Tn * Tn);
        const T* q = x + b * Tn * C3 + h * hs;
        // s [T, L] = scale * Q K[:L]^T
        gemm<T>(false, true, Tn, L, hs, scale, q, C3, q + C, C3, T(0), s, L);
        for (int64_t i = 0; i < Tn; ++i) {
            T* row = s + i * L;
            T mx = row[0];
            for (int64_t j = 1; j < L; ++j) mx = std::max(mx, row[j]);
            double sum = 0.0;
            for (int64_t j = 0; j < L; ++j) {
                row[j] = k_exp(row[j] - mx);
                sum += double(row[j]);
            }
            const T inv = T(1.0 / sum);
            for (int64_t j = 0; j < L; ++j) row[j] *= inv;
        }
        // out [T, hs] = P [T, L] V[:L]
        gemm<T>(false, false, Tn, hs, L, T(1), s, L, q + 2 * C, C3, T(0), o + b * Tn * C + h * hs, C);
    }
}

CC_CPU_INSTANTIATE(attention_padded_forward, (Tensor, Tensor, Tensor, int))

}  // namespace curaclip::cpu
