// Multi-head self-attention core of the CPU backend. One (batch, head) pair per
// OpenMP task; the products run through BLAS on strided views of qkv (leading
// dimension 3C) into a per-thread T x T scratch. Inside the parallel region
// OpenBLAS (OpenMP build) runs single-threaded, so the threads do not nest.
// The backward recomputes the probabilities from the saved row log-sum-exp.
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "core/host_math.h"

namespace curaclip::cpu {

using namespace curaclip::host;  // fast_exp, fast_erf, parallel_chunks (core/host_math.h)

namespace {

// Below this much work (B * n_head * T * T * hs) one thread beats a parallel region.
constexpr int64_t kParallelMin = 1 << 15;

struct AttnDims {
    int64_t B, T, C, NH, hs;
};

// The shapes were checked by Backend (backend/op_contracts.cpp); here the dtypes and
// the BLAS int limit of the T x T score GEMMs.
template <typename T>
AttnDims check_attention(const char* op, const Tensor& qkv, const Tensor& out, const Tensor& stats,
                         int n_head) {
    check_compute<T>(qkv, op, "qkv");
    check_compute<T>(out, op, "out");
    CC_CHECK(stats.dtype == DType::f32 || stats.dtype == dtype_of<T>(), op, ": stats has dtype ",
             dtype_name(stats.dtype), ", expected f32 or ", dtype_name(dtype_of<T>()));
    const int64_t B = qkv.shape[0], T_ = qkv.shape[1], C3 = qkv.shape[2], C = C3 / 3;
    CC_CHECK(T_ * T_ <= INT_MAX && C3 <= INT_MAX, op, ": sequence length ", T_,
             " or width too large");
    return {B, T_, C, n_head, C / n_head};
}

// Scores S = scale * Q K^T of one (batch, head) into s [T, T].
template <typename T>
void scores(T* s, const T* q, const T* k, const AttnDims& d, T scale) {
    gemm<T>(false, true, d.T, d.T, d.hs, scale, q, 3 * d.C, k, 3 * d.C, T(0), s, d.T);
}

// Row loops: row[j] = exp(row[j] - shift) for j < len; returns the row sum (in double).
template <typename T>
inline double exp_row(T* row, int64_t len, T shift) {
    for (int64_t j = 0; j < len; ++j) row[j] = k_exp(row[j] - shift);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < len; ++j) sum += double(row[j]);
    return sum;
}
// dS row: r[j] = p[j] (r[j] - d) scale.
template <typename T>
inline void dscores_row(T* r, const T* p, int64_t n, T d, T scale) {
    for (int64_t j = 0; j < n; ++j) r[j] = p[j] * (r[j] - d) * scale;
}
CC_VECTOR_CLONES double exp_row_f32(float* row, int64_t len, float shift) {
    return exp_row(row, len, shift);
}
CC_VECTOR_CLONES void dscores_row_f32(float* r, const float* p, int64_t n, float d, float scale) {
    dscores_row(r, p, n, d, scale);
}
inline double exp_row_any(float* row, int64_t len, float shift) { return exp_row_f32(row, len, shift); }
inline double exp_row_any(double* row, int64_t len, double shift) { return exp_row(row, len, shift); }
inline void dscores_any(float* r, const float* p, int64_t n, float d, float scale) {
    dscores_row_f32(r, p, n, d, scale);
}
inline void dscores_any(double* r, const double* p, int64_t n, double d, double scale) {
    dscores_row(r, p, n, d, scale);
}

}  // namespace

template <typename T>
void attention_forward(Tensor out, Tensor stats, Tensor qkv, int n_head, bool causal) {
    const AttnDims d = check_attention<T>("attention_forward", qkv, out, stats, n_head);
    const int64_t Tn = d.T, C = d.C, hs = d.hs, nbh = d.B * d.NH;
    if (nbh == 0 || Tn == 0) return;
    const T scale = T(1.0 / std::sqrt(double(hs)));
    const T* x = qkv.as<T>();
    T* o = out.as<T>();
    const int nthreads = omp_get_max_threads();
    std::vector<T> scratch(size_t(nthreads) * size_t(Tn * Tn));
    with_float_ptr(stats, [&](auto* lse) {
        using S = std::remove_pointer_t<decltype(lse)>;
#pragma omp parallel for schedule(dynamic, 1) if (nbh > 1 && nbh * Tn * Tn * hs > kParallelMin)
        for (int64_t bh = 0; bh < nbh; ++bh) {
            const int64_t b = bh / d.NH, h = bh % d.NH;
            T* s = scratch.data() + size_t(omp_get_thread_num()) * size_t(Tn * Tn);
            const T* q = x + b * Tn * 3 * C + h * hs;
            scores<T>(s, q, q + C, d, scale);
            S* lrow = lse + bh * Tn;
            for (int64_t i = 0; i < Tn; ++i) {
                T* row = s + i * Tn;
                const int64_t len = causal ? i + 1 : Tn;
                T mx = row[0];
                for (int64_t j = 1; j < len; ++j) mx = std::max(mx, row[j]);
                const double sum = exp_row_any(row, len, mx);
                const T inv = T(1.0 / sum);
                for (int64_t j = 0; j < len; ++j) row[j] *= inv;
                for (int64_t j = len; j < Tn; ++j) row[j] = T(0);
                lrow[i] = S(double(mx) + std::log(sum));
            }
            gemm<T>(false, false, Tn, hs, Tn, T(1), s, Tn, q + 2 * C, 3 * C, T(0),
                    o + b * Tn * C + h * hs, C);
        }
    });
}

template <typename T>
void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                        bool causal) {
    const char* op = "attention_backward";
    const AttnDims d = check_attention<T>(op, qkv, out, stats, n_head);
    check_compute<T>(dqkv, op, "dqkv");
    check_compute<T>(dout, op, "dout");
    const int64_t Tn = d.T, C = d.C, hs = d.hs, nbh = d.B * d.NH;
    if (nbh == 0 || Tn == 0) return;
    const T scale = T(1.0 / std::sqrt(double(hs)));
    const T* x = qkv.as<T>();
    const T* o = out.as<T>();
    const T* go = dout.as<T>();
    T* dx = dqkv.as<T>();
    const int nthreads = omp_get_max_threads();
    const size_t per_thread = size_t(2 * Tn * Tn + Tn);
    std::vector<T> scratch(size_t(nthreads) * per_thread);
    with_float_ptr(stats, [&](const auto* lse) {
#pragma omp parallel for schedule(dynamic, 1) if (nbh > 1 && nbh * Tn * Tn * hs > kParallelMin)
        for (int64_t bh = 0; bh < nbh; ++bh) {
            const int64_t b = bh / d.NH, h = bh % d.NH;
            T* p = scratch.data() + size_t(omp_get_thread_num()) * per_thread;
            T* dp = p + Tn * Tn;
            T* drow = dp + Tn * Tn;
            const int64_t base3 = b * Tn * 3 * C + h * hs, base1 = b * Tn * C + h * hs;
            const T* q = x + base3;
            const T* k = q + C;
            const T* v = q + 2 * C;
            T* dq = dx + base3;
            T* dk = dq + C;
            T* dv = dq + 2 * C;
            const T* gh = go + base1;
            const T* oh = o + base1;
            // P = exp(S - lse), zero where masked.
            scores<T>(p, q, k, d, scale);
            const auto* lrow = lse + bh * Tn;
            for (int64_t i = 0; i < Tn; ++i) {
                T* row = p + i * Tn;
                const int64_t len = causal ? i + 1 : Tn;
                const T l = T(lrow[i]);
                exp_row_any(row, len, l);
                for (int64_t j = len; j < Tn; ++j) row[j] = T(0);
                // D_i = <dO_i, O_i> = sum_j P_ij dP_ij
                double acc = 0.0;
                for (int64_t c = 0; c < hs; ++c) acc += double(gh[i * C + c]) * double(oh[i * C + c]);
                drow[i] = T(acc);
            }
            // dV += P^T dO
            gemm<T>(true, false, Tn, hs, Tn, T(1), p, Tn, gh, C, T(1), dv, 3 * C);
            // dP = dO V^T
            gemm<T>(false, true, Tn, Tn, hs, T(1), gh, C, v, 3 * C, T(0), dp, Tn);
            // dS = P * (dP - D) * scale (the softmax Jacobian and the score scale)
            for (int64_t i = 0; i < Tn; ++i) dscores_any(dp + i * Tn, p + i * Tn, Tn, drow[i], scale);
            // dQ += dS K;  dK += dS^T Q
            gemm<T>(false, false, Tn, hs, Tn, T(1), dp, Tn, k, 3 * C, T(1), dq, 3 * C);
            gemm<T>(true, false, Tn, hs, Tn, T(1), dp, Tn, q, 3 * C, T(1), dk, 3 * C);
        }
    });
}

CC_CPU_INSTANTIATE(attention_forward, (Tensor, Tensor, Tensor, int, bool))
CC_CPU_INSTANTIATE(attention_backward, (Tensor, Tensor, Tensor, Tensor, Tensor, int, bool))

}  // namespace curaclip::cpu
