// k-means assignment on the CPU: each OpenMP thread takes blocks of rows, multiplies
// a block against all centers (OpenBLAS, single-threaded inside the parallel region)
// into its own slice of the scratch, and screens the block's rows while the dot
// products are still in its cache.
//
// Row independence (backend.h): OpenBLAS sums a dot product in different orders
// for different block shapes, offsets and thread counts (measured: thousands of
// last-bit differences), so the GEMM only screens: every center whose GEMM value
// is within a rigorous error bound of the best is re-scored by the float64
// distance summed in a fixed order, and that decides. Per row: one vectorized pass
// for the smallest screen value, one vectorized pass for the centers within the
// bound (almost always the best alone; genuine near ties are rare), D float64
// flops per candidate. tests/unit/test_kmeans.cpp checks that a row gets bitwise
// the same answer at any offset and block size.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/cpu_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

namespace curaclip::cpu {

namespace {

// Sum of squares (b == nullptr) or squared distance in float64, in a fixed order:
// four interleaved partial sums (d mod 4), combined as (s0 + s1) + (s2 + s3). The
// order is part of the op's contract (backend.h; the CUDA kernel sums the same way).
template <typename T>
inline double sq_dist_f64(const T* a, const T* b, int64_t D) {
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t d = 0;
    for (; d + 4 <= D; d += 4)
        for (int l = 0; l < 4; ++l) {
            const double t = double(a[d + l]) - (b ? double(b[d + l]) : 0.0);
            s[l] += t * t;
        }
    for (int l = 0; d < D; ++d, ++l) {
        const double t = double(a[d]) - (b ? double(b[d]) : 0.0);
        s[l] += t * t;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

// Screen value of center k: csq_k - 2 x.c_k (2 x.c_k is exact, so a fused multiply-add
// rounds the same way: both passes and any vector width see the same value).
template <typename T>
inline T screen(const T* dot, const T* csq, int64_t k) {
    return csq[k] - T(2) * dot[k];
}

// The screening passes over a row's K dot products, vectorized. Only float32 compares and
// the exact 2 x.c_k products happen here, so every instruction set gives the same bits;
// on x86-64 the float versions are compiled for AVX-512, AVX2 and the baseline, chosen
// at load time.
template <typename T>
[[gnu::always_inline]] inline T screen_min_impl(const T* dot, const T* csq, int64_t K) {
    T best = std::numeric_limits<T>::infinity();
#pragma omp simd reduction(min : best)
    for (int64_t k = 0; k < K; ++k) {
        const T v = screen(dot, csq, k);
        best = v < best ? v : best;
    }
    return best;
}

// The centers whose screen value is not above limit (NaN counts as a candidate), in
// increasing order, into out; returns how many.
template <typename T>
[[gnu::always_inline]] inline int64_t candidates_impl(const T* dot, const T* csq, int64_t K, T limit,
                                                      int32_t* out) {
    constexpr int64_t L = 32;
    int64_t n = 0;
    for (int64_t k0 = 0; k0 < K; k0 += L) {
        const int64_t k1 = std::min(K, k0 + L);
        int hit = 0;
#pragma omp simd reduction(| : hit)
        for (int64_t k = k0; k < k1; ++k) hit |= !(screen(dot, csq, k) > limit);
        if (!hit) continue;
        for (int64_t k = k0; k < k1; ++k)
            if (!(screen(dot, csq, k) > limit)) out[n++] = int32_t(k);
    }
    return n;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CC_KMEANS_X86 1
#define CC_KMEANS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CC_KMEANS_CLONES
#endif

CC_KMEANS_CLONES float screen_min_f32(const float* dot, const float* csq, int64_t K) {
    return screen_min_impl(dot, csq, K);
}

#ifdef CC_KMEANS_X86
// The candidates among centers k0.. (after the n found before k0).
inline int64_t candidates_tail(const float* dot, const float* csq, int64_t k0, int64_t K, float limit, int32_t* out,
                               int64_t n) {
    for (int64_t k = k0; k < K; ++k)
        if (!(screen(dot, csq, k) > limit)) out[n++] = int32_t(k);
    return n;
}

// candidates_impl with a compare mask per vector (the candidates are rare: almost every
// mask is empty), for AVX-512 and AVX2.
__attribute__((target("avx512f"))) int64_t candidates_avx512(const float* dot, const float* csq, int64_t K,
                                                              float limit, int32_t* out) {
    const __m512 lim = _mm512_set1_ps(limit);
    int64_t n = 0, k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m512 d = _mm512_loadu_ps(dot + k);
        const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(csq + k), _mm512_add_ps(d, d));
        for (unsigned m = _mm512_cmp_ps_mask(v, lim, _CMP_NGT_UQ); m; m &= m - 1)
            out[n++] = int32_t(k + __builtin_ctz(m));
    }
    return candidates_tail(dot, csq, k, K, limit, out, n);
}
__attribute__((target("avx2"))) int64_t candidates_avx2(const float* dot, const float* csq, int64_t K, float limit,
                                                         int32_t* out) {
    const __m256 lim = _mm256_set1_ps(limit);
    int64_t n = 0, k = 0;
    for (; k + 8 <= K; k += 8) {
        const __m256 d = _mm256_loadu_ps(dot + k);
        const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(csq + k), _mm256_add_ps(d, d));
        for (unsigned m = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(v, lim, _CMP_NGT_UQ))); m; m &= m - 1)
            out[n++] = int32_t(k + __builtin_ctz(m));
    }
    return candidates_tail(dot, csq, k, K, limit, out, n);
}
#endif

using CandidatesFn = int64_t (*)(const float*, const float*, int64_t, float, int32_t*);
CandidatesFn pick_candidates_f32() {
#ifdef CC_KMEANS_X86
    __builtin_cpu_init();  // this runs from a static initializer, maybe before libgcc's
    if (__builtin_cpu_supports("avx512f")) return candidates_avx512;
    if (__builtin_cpu_supports("avx2")) return candidates_avx2;
#endif
    return [](const float* dot, const float* csq, int64_t K, float limit, int32_t* out) {
        return candidates_impl(dot, csq, K, limit, out);
    };
}
const CandidatesFn candidates_f32 = pick_candidates_f32();

template <typename T>
inline T screen_min(const T* dot, const T* csq, int64_t K) {
    if constexpr (std::is_same_v<T, float>) return screen_min_f32(dot, csq, K);
    else return screen_min_impl(dot, csq, K);
}
template <typename T>
inline int64_t candidates(const T* dot, const T* csq, int64_t K, T limit, int32_t* out) {
    if constexpr (std::is_same_v<T, float>) return candidates_f32(dot, csq, K, limit, out);
    else return candidates_impl(dot, csq, K, limit, out);
}

struct Bounds {
    double cmax = 0.0, csq_max = 0.0, scale = 0.0;
};

// Row i of a block: the center with the smallest float64 distance among those whose
// screen value is within the GEMM's error bound of the smallest (ties -> the lowest k).
// cand: room for K center ids.
template <typename T>
inline void assign_row(const T* row, const T* dots, const T* C, const T* csq, int64_t K, int64_t D,
                       const Bounds& bd, int32_t* cand, int32_t* assign, T* dist) {
    const T best = screen_min(dots, csq, K);
    const double xn = std::sqrt(sq_dist_f64<T>(row, nullptr, D));
    const double margin = bd.scale * (2.0 * xn * bd.cmax + bd.csq_max + std::fabs(double(best)));
    const int64_t nc = candidates(dots, csq, K, T(double(best) + margin), cand);
    double exact = std::numeric_limits<double>::infinity();
    int64_t arg = 0;
    for (int64_t j = 0; j < nc; ++j) {
        const double e = sq_dist_f64<T>(row, C + int64_t(cand[j]) * D, D);
        if (e < exact) {
            exact = e;
            arg = cand[j];
        }
    }
    *assign = int32_t(arg);
    *dist = T(exact);
}

}  // namespace

template <typename T>
void kmeans_assign(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                   Tensor scratch) {
    const char* op = "kmeans_assign";
    check_dtype(assign, DType::i32, op, "assign");
    check_compute<T>(dist, op, "dist");
    check_compute<T>(x, op, "x");
    check_compute<T>(centers, op, "centers");
    check_compute<T>(center_sq_norms, op, "center_sq_norms");
    check_compute<T>(scratch, op, "scratch");
    // Shapes: checked by CurationOps::kmeans_assign (backend/curation_ops.cpp).
    const int64_t N = x.shape.rows(), D = x.shape.cols(), K = centers.shape.rows();
    const int64_t B = scratch.shape.rows();
    const T* X = x.as<T>();
    const T* C = centers.as<T>();
    const T* csq = center_sq_norms.as<T>();
    T* S = scratch.as<T>();
    int32_t* A = assign.as<int32_t>();
    T* dd = dist.as<T>();
    // Error bound of v_k = csq_k - 2 x.c_k from the GEMM (|error| <= (D+2) u (2 |x||c| + csq
    // + |v|) with unit roundoff u), doubled for safety.
    Bounds bd;
    for (int64_t c = 0; c < K; ++c) {
        bd.cmax = std::max(bd.cmax, std::sqrt(sq_dist_f64<T>(C + c * D, nullptr, D)));
        bd.csq_max = std::max(bd.csq_max, std::fabs(double(csq[c])));
    }
    bd.scale = 4.0 * double(D + 4) * double(std::numeric_limits<T>::epsilon());
    // Blocks of R rows: one scratch slice of R rows per thread, small enough (512 KiB) that
    // the dot products are screened from the cache the GEMM just wrote them to.
    const int threads = std::max(1, std::min<int>(omp_get_max_threads(), int(std::min<int64_t>(B, N))));
    const int64_t R = std::max<int64_t>(1, std::min(B / threads, std::max<int64_t>(16, (int64_t(1) << 17) / K)));
    const int64_t blocks = (N + R - 1) / R;
#pragma omp parallel num_threads(threads) if (threads > 1 && N * K * D > (int64_t(1) << 20))
    {
        T* St = S + int64_t(omp_get_thread_num()) * R * K;
        std::vector<T> pad_x, pad_s;
        std::vector<int32_t> cand(static_cast<size_t>(K));
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            const int64_t r0 = blk * R, m = std::min(R, N - r0);
            // A one-row GEMM may take BLAS's gemv path, which sums in another order than the
            // GEMM micro-kernels (harmless: the screen's bound covers any order, but the cost
            // differs): a lone row is computed as the first of a two-row block instead.
            if (m == 1) {
                pad_x.assign(size_t(2 * D), T(0));
                pad_s.resize(size_t(2 * K));
                std::copy(X + r0 * D, X + (r0 + 1) * D, pad_x.begin());
                gemm<T>(false, true, 2, K, D, T(1), pad_x.data(), D, C, D, T(0), pad_s.data(), K);
                assign_row(X + r0 * D, pad_s.data(), C, csq, K, D, bd, cand.data(), A + r0, dd + r0);
                continue;
            }
            gemm<T>(false, true, m, K, D, T(1), X + r0 * D, D, C, D, T(0), St, K);
            for (int64_t i = 0; i < m; ++i)
                assign_row(X + (r0 + i) * D, St + i * K, C, csq, K, D, bd, cand.data(), A + r0 + i,
                           dd + r0 + i);
        }
    }
}

CC_CPU_INSTANTIATE(kmeans_assign, (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor))

}  // namespace curaclip::cpu
