// The arithmetic of the CUDA kmeans_assign kernel (jest_kmeans.cu), as __host__ __device__
// functions, so that host tests (tests/unit/test_kmeans_screen.cpp) run exactly the
// kernel's screening on adversarial data without a GPU. No CUDA header is needed: under
// nvcc the functions are __host__ __device__ and use the round-to-nearest intrinsics
// (no FMA contraction); a host compiler sees plain inline functions.
//
// The method (backend.h, kmeans_assign): for a point x and centers c_k (both as stored:
// bf16 on the GPU), the screen value v_k = n_k - 2 x.c_k, where x.c_k comes from an
// fp32-accumulating GEMM and n_k is the squared norm of c_k *as stored*, summed in
// float64 and rounded once to fp32 (center_sq_norm_f32). Every center whose v_k is
// within margin() of the smallest is re-scored by the float64 distance in a fixed
// order (sq_dist_f64), which decides; ties go to the lowest k.
//
// Why the norms are computed here and not taken from the caller: the caller's
// center_sq_norms are a bf16 tensor on this backend (relative error up to 2^-9), and
// were computed from float centers before those were rounded to bf16. That error
// (~2e-3 for unit-norm centers) is about 100x the GEMM's bound that margin() covers
// (4 (D+4) 2^-23 (...), ~3e-5 at D = 64), so the true nearest center could be screened
// out: on points between normalised centers (D = 64, K = 256, x = c + 3 N(0,1)/sqrt(D),
// N = 4000) 12 rows went to a center that was not the argmin (issue 16; 8 with the seed
// of tests/unit/test_kmeans_screen.cpp). With fp32 norms
// of the stored centers the only errors left are the GEMM's and one fp32 rounding of
// each norm, both inside the margin.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define CC_KMEANS_HD __host__ __device__ __forceinline__
#else
#define CC_KMEANS_HD inline
#endif

namespace curaclip::kmeans_screen {

// a + b, a * b, a - b rounded to nearest, never fused with a neighbour (device: the _rn
// intrinsics, which nvcc does not contract; host: plain operators, which GCC contracts
// into FMAs only for targets with FMA, i.e. -march=native builds).
CC_KMEANS_HD double add(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}
CC_KMEANS_HD double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
CC_KMEANS_HD double sub(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dsub_rn(a, b);
#else
    return a - b;
#endif
}

// The squared distance |a - b|^2 in float64 in the backend contract's fixed order: four
// interleaved partial sums (d mod 4), combined as (s0 + s1) + (s2 + s3). get_a(d) and
// get_b(d) return element d as double (bf16 -> double is exact). With get_b returning 0
// it is the squared norm of a, in the same order.
template <typename GetA, typename GetB>
CC_KMEANS_HD double sq_dist_f64(GetA get_a, GetB get_b, int64_t D) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t d = 0;
    for (; d + 4 <= D; d += 4) {
        const double t0 = sub(get_a(d), get_b(d)), t1 = sub(get_a(d + 1), get_b(d + 1));
        const double t2 = sub(get_a(d + 2), get_b(d + 2)), t3 = sub(get_a(d + 3), get_b(d + 3));
        s0 = add(s0, mul(t0, t0));
        s1 = add(s1, mul(t1, t1));
        s2 = add(s2, mul(t2, t2));
        s3 = add(s3, mul(t3, t3));
    }
    if (d < D) {
        const double t = sub(get_a(d), get_b(d));
        s0 = add(s0, mul(t, t));
    }
    if (d + 1 < D) {
        const double t = sub(get_a(d + 1), get_b(d + 1));
        s1 = add(s1, mul(t, t));
    }
    if (d + 2 < D) {
        const double t = sub(get_a(d + 2), get_b(d + 2));
        s2 = add(s2, mul(t, t));
    }
    return add(add(s0, s1), add(s2, s3));
}

struct Zero {
    CC_KMEANS_HD double operator()(int64_t) const { return 0.0; }
};

// The squared norm of a center as stored, summed in float64 (fixed order), rounded once
// to fp32: what the screen uses for n_k.
template <typename Get>
CC_KMEANS_HD float center_sq_norm_f32(Get get, int64_t D) {
    return float(sq_dist_f64(get, Zero{}, D));
}

// v_k = n_k - 2 x.c_k in fp32. 2 x.c_k is exact, so one rounding whether or not the
// compiler fuses: every pass and every compiler sees the same value.
CC_KMEANS_HD float screen(float norm, float dot) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(norm, __fmul_rn(2.0f, dot));
#else
    return norm - 2.0f * dot;
#endif
}

// How far above the smallest screen value `best` a center may screen and still be
// re-scored: 4 (D+4) eps_f32 (2 |x| max_k|c_k| + max_k n_k + |best|), twice the rigorous
// bound (D+2) u (2 |x||c| + n + |v|) (u = eps_f32 / 2) on the error of each screen value
// from the fp32 GEMM, the fp32 rounding of n_k and the subtraction, so that the true
// minimum, off by at most the bound one way while `best` is off by it the other, is kept.
// x_norm = |x|, c_max = max_k |c_k|, n_max = max_k |n_k|.
CC_KMEANS_HD double margin(int64_t D, double x_norm, double c_max, double n_max, float best) {
    return 4.0 * double(D + 4) * double(FLT_EPSILON) * (2.0 * x_norm * c_max + n_max + fabs(double(best)));
}

// The screen value at or below which a center is re-scored (rounded to fp32, the screen
// values' type; rounding to nearest may lose at most half an ulp of the margin, which is
// thousands of ulps wide).
CC_KMEANS_HD float limit(float best, double margin_value) { return float(double(best) + margin_value); }

// Whether center k with screen value v is re-scored (NaN counts: the float64 distance
// then decides, as on the CPU).
CC_KMEANS_HD bool is_candidate(float v, float limit_value) { return !(v > limit_value); }

// The whole row, serially (the kernel splits the same steps over a warp): the screen,
// the margin, the candidates re-scored in float64; ties -> the lowest k. dot(k) is the
// GEMM's x.c_k, norm(k) the n_k the screen uses, x(d) and center(k, d) the stored
// values. Returns the center; *dist = its float64 squared distance.
template <typename GetX, typename GetC, typename GetDot, typename GetNorm>
CC_KMEANS_HD int64_t assign_row(GetX x, GetC center, GetDot dot, GetNorm norm, int64_t K, int64_t D, double c_max,
                                double n_max, double* dist) {
    float best = INFINITY;
    for (int64_t k = 0; k < K; ++k) {
        const float v = screen(norm(k), dot(k));
        if (v < best) best = v;
    }
    const double x_norm = sqrt(sq_dist_f64(x, Zero{}, D));
    const float lim = limit(best, margin(D, x_norm, c_max, n_max, best));
    double exact = INFINITY;
    int64_t arg = -1;
    for (int64_t k = 0; k < K; ++k) {
        if (!is_candidate(screen(norm(k), dot(k)), lim)) continue;
        const double e = sq_dist_f64(x, [&](int64_t d) { return center(k, d); }, D);
        if (e < exact) {  // strict: the lowest k wins a tie; a NaN distance never wins
            exact = e;
            arg = k;
        }
    }
    if (arg < 0) arg = 0;  // no finite candidate (non-finite data): center 0, as the kernel reports
    if (dist) *dist = exact;
    return arg;
}

}  // namespace curaclip::kmeans_screen

#undef CC_KMEANS_HD
