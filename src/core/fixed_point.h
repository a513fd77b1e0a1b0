// Exact sums by fixed point, written once: doubles are scaled by 2^e and rounded to
// int64, and int64 sums do not depend on the order of the terms, so any split over
// threads and ranks (an MPI allreduce of int64) gives the same bits as one process.
// Used by MoDE's distributed k-means (center sums, k-means++ prefix sums) and by the
// JEST sampler's score states.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace curaclip {

// The exponent e such that n_terms terms of magnitude <= bound, each scaled by 2^e,
// sum to less than 2^62 in magnitude (0 for a bound that is not positive and finite).
inline int fixed_point_exponent(double bound, int64_t n_terms) {
    if (!(bound > 0.0) || !std::isfinite(bound)) return 0;
    int eb = 0, en = 0;
    std::frexp(bound, &eb);                                  // bound < 2^eb
    std::frexp(double(std::max<int64_t>(n_terms, 1)), &en);  // n_terms < 2^en
    return std::min(62 - eb - en, 1000);
}

// v * scale truncated toward zero (the k-means sums).
inline int64_t quantize_truncate(double v, double scale) { return int64_t(v * scale); }

// round(x * scale), ties to even (= llrint), for |x * scale| < 2^51: the sum
// x * scale + 1.5 * 2^52 lies in [2^52, 2^53), where the double grid is the integers,
// so its low bits are the rounded integer. Branch-free, so loops over it vectorize
// (the JEST sampler's O(B^2) passes).
inline int64_t quantize_nearest(double x, double scale) {
    constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
    return int64_t(std::bit_cast<uint64_t>(x * scale + kMagic) - std::bit_cast<uint64_t>(kMagic));
}

}  // namespace curaclip
