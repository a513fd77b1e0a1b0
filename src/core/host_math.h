// Host math shared by the CPU backend (src/cpu/) and the host-side curation code
// (the JEST sampler and learnability): branch-free float versions of exp and erf
// that the compiler can vectorize (libm calls block vectorization), used by the
// f32 backend in activation and softmax loops, and parallel_chunks (OpenMP over
// index ranges). The double backend keeps std::exp / std::erf: it is the reference.
//
//  * exp: Cephes expf (range reduction by ln 2, degree-6 polynomial), ~1-2 ulp on
//    [-60, 80]; saturates outside (see fast_exp).
//  * erf: Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 absolute; the same
//    formula PyTorch's vectorized CPU erf (Vectorized<float>::erf) uses, so
//    GELU on the CPU matches torch's CPU GELU closely.
//  * log / log1p (float): Cephes logf (exponent split, degree-8 polynomial on
//    [sqrt(1/2)-1, sqrt(2)-1]); relative error ~1e-7 (1-2 ulp) for positive
//    normal x. fast_log1p(x) = log(1 + x) with the rounding of 1 + x corrected,
//    ~1e-7 relative on (-1, inf) (x tiny: returns ~x). Used by the f32 softplus.
//  * exp (double): Cody-Waite reduction by ln 2, degree-13 Taylor polynomial on
//    |r| <= ln2/2 (truncation 4e-18), ~1-2 ulp on [-700, 709]; for vectorized
//    double loops that need near-libm accuracy (the JEST softmax sampler).
#pragma once

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

// CC_VECTOR_CLONES: compile a hot elementwise loop for AVX-512, AVX2+FMA and the
// baseline, picked at load time (GCC target_clones / ifunc), so the default
// portable build still runs wide vectors where the CPU has them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CC_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CC_VECTOR_CLONES
#endif

namespace curaclip::host {

inline float fast_exp(float x) {
    // Clamp to [-60, 80]. Outside, the result saturates: exp(x < -60) = exp(-60) ~ 9e-27,
    // which is below float resolution next to the O(1) terms it meets in the kernels
    // (softmax rows hold exp(0) = 1, erf adds it to 1), and keeps every product of it
    // with ordinary values a normal float: denormal arithmetic is ~100x slower and made
    // e.g. GELU on large |x| crawl. (1 + exp(80) also stays finite for sigmoid.)
    // Done on the bit pattern with integer selects: float compares + selects are not
    // if-converted under -ftrapping-math, which would keep the loops scalar.
    // NaN passes through unchanged (and propagates).
    {
        const int32_t i = std::bit_cast<int32_t>(x);
        const int32_t mag = i & 0x7fffffff;
        const int32_t lim = i < 0 ? std::bit_cast<int32_t>(60.0f) : std::bit_cast<int32_t>(80.0f);
        const bool clamp = mag > lim && mag <= 0x7f800000;
        x = std::bit_cast<float>((i & int32_t(0x80000000u)) | (clamp ? lim : mag));
    }
    // n = round(x / ln 2) with the 1.5 * 2^23 trick (round-to-nearest, vectorizable).
    const float magic = 12582912.0f;
    const float shifted = x * 1.44269504088896341f + magic;
    const float n = shifted - magic;
    // The integer n sits in the low mantissa bits of `shifted` (no float->int conversion).
    const uint32_t ni = std::bit_cast<uint32_t>(shifted) - std::bit_cast<uint32_t>(magic);
    // r = x - n ln 2 in two parts (Cody-Waite) for accuracy.
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    return y * std::bit_cast<float>((ni + 127u) << 23);
}

inline float fast_erf(float x) {
    const float ax = std::fabs(x);
    const float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float y = 1.0f - p * t * fast_exp(-ax * ax);
    return std::copysign(y, x);
}

// Natural log of a positive normal float (see the top). x <= 0, denormals, inf and NaN
// give unspecified (finite or not) values: the callers only pass arguments in [1, 2].
inline float fast_log(float x) {
    int32_t i = std::bit_cast<int32_t>(x);
    int32_t e = ((i >> 23) & 0xff) - 126;              // x = m 2^e, m in [0.5, 1)
    i = (i & 0x007fffff) | 0x3f000000;                 // m
    // m < sqrt(1/2): use 2m (exponent - 1). Integer select on the bits (vectorizes).
    const int32_t small = i < 0x3f3504f3 ? 1 : 0;      // bits of sqrt(1/2)
    i += small << 23;
    e -= small;
    const float f = std::bit_cast<float>(i) - 1.0f;    // in [sqrt(1/2)-1, sqrt(2)-1)
    const float fe = float(e);
    const float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return (f + y) + 0.693359375f * fe;
}

// log(1 + x) for x in (-1, 2^24) (see the top): log(u) for u = 1 + x rounded, plus the
// first-order correction (x - (u - 1)) / u of that rounding.
inline float fast_log1p(float x) {
    const float u = 1.0f + x;
    return fast_log(u) + (x - (u - 1.0f)) / u;
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|), ~1e-7 relative; NaN propagates.
inline float fast_softplus(float x) {
    const float a = std::fabs(x);
    return std::max(x, 0.0f) + fast_log1p(fast_exp(-a));
}

// exp for double (see the top). Arguments are clamped to [-700, 709] (exp(-700) ~ 1e-304
// stands for anything smaller); NaN passes through.
inline double fast_exp_f64(double x) {
    {
        const int64_t i = std::bit_cast<int64_t>(x);
        const int64_t mag = i & 0x7fffffffffffffffLL;
        const int64_t lim = i < 0 ? std::bit_cast<int64_t>(700.0) : std::bit_cast<int64_t>(709.0);
        const bool clamp = mag > lim && mag <= 0x7ff0000000000000LL;
        x = std::bit_cast<double>((i & int64_t(0x8000000000000000ULL)) | (clamp ? lim : mag));
    }
    const double magic = 6755399441055744.0;  // 1.5 * 2^52: round to nearest integer
    const double shifted = x * 1.4426950408889634074 + magic;
    const double n = shifted - magic;
    const uint64_t ni = std::bit_cast<uint64_t>(shifted) - std::bit_cast<uint64_t>(magic);
    const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;  // 1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return p * std::bit_cast<double>((ni + 1023u) << 52);
}

// Runs f(begin, end) on contiguous chunks of [0, n), one per OpenMP thread (serially when
// n <= serial_max). Chunks start at multiples of 16 elements (64-byte lines for float).
template <typename F>
void parallel_chunks(int64_t n, int64_t serial_max, F&& f) {
    if (n <= serial_max) {
        f(int64_t(0), n);
        return;
    }
#pragma omp parallel
    {
        const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
        const int64_t b = std::min(n, t * per), e = std::min(n, b + per);
        if (b < e) f(b, e);
    }
}

// The element functions of the kernels: fast for float, libm for double.
inline float k_exp(float x) { return fast_exp(x); }
inline double k_exp(double x) { return std::exp(x); }
inline float k_erf(float x) { return fast_erf(x); }
inline double k_erf(double x) { return std::erf(x); }

}  // namespace curaclip::host
