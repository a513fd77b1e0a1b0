// Internal to src/cpu/: branch-free float versions of exp and erf that the
// compiler can vectorize (libm calls block vectorization), used by the f32
// backend in activation and softmax loops. The double backend keeps std::exp /
// std::erf: it is the reference.
//
//  * exp: Cephes expf (range reduction by ln 2, degree-6 polynomial), ~1-2 ulp on
//    [-60, 80]; saturates outside (see fast_exp).
//  * erf: Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 absolute; the same
//    formula PyTorch's vectorized CPU erf (Vectorized<float>::erf) uses, so
//    GELU on the CPU matches torch's CPU GELU closely.
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

namespace curaclip::cpu {

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

}  // namespace curaclip::cpu
