// Seeded sampling that every rank repeats draw for draw (Philox streams, core/philox.h),
// written once: the loader's epoch order, the fine k-means sample and random init of
// MoDE, prep's noise and curated subsets, the Rand-n baseline. Each function fixes
// the order of its draws, so a result is a function of (seed, purpose, step) alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/philox.h"

namespace curaclip {

// Durstenfeld's Fisher-Yates shuffle of p: for i = n-1 down to 1, p[i] is swapped with
// p[j], j = rng.below(i + 1). Knuth, TAOCP vol. 2, 3.4.2, Algorithm P.
template <typename T>
void fisher_yates_shuffle(Philox& rng, std::vector<T>& p) {
    for (int64_t i = int64_t(p.size()) - 1; i > 0; --i) {
        const int64_t j = int64_t(rng.below(uint64_t(i) + 1));
        std::swap(p[size_t(i)], p[size_t(j)]);
    }
}

// k distinct values of [0, n), sorted: the first k entries of a forward partial
// Fisher-Yates shuffle of 0..n-1 (for i = 0..k-1, p[i] is swapped with p[i + below(n - i)]).
// O(n) memory; for k << n floyd_sample is O(k).
inline std::vector<int64_t> fisher_yates_prefix(Philox& rng, int64_t n, int64_t k) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    std::iota(p.begin(), p.end(), int64_t(0));
    for (int64_t i = 0; i < k; ++i) {
        const int64_t j = i + int64_t(rng.below(uint64_t(n - i)));
        std::swap(p[size_t(i)], p[size_t(j)]);
    }
    p.resize(size_t(k));
    std::sort(p.begin(), p.end());
    return p;
}

// k distinct values of [0, n), sorted, by Floyd's algorithm (Bentley & Floyd, CACM 30(9),
// 1987): for j = n-k .. n-1, t = below(j + 1); t if new, else j. O(k).
inline std::vector<int64_t> floyd_sample(Philox& rng, int64_t n, int64_t k) {
    std::unordered_set<int64_t> chosen;
    chosen.reserve(size_t(k) * 2);
    for (int64_t j = n - k; j < n; ++j) {
        const int64_t t = int64_t(rng.below(uint64_t(j + 1)));
        if (!chosen.insert(t).second) chosen.insert(j);
    }
    std::vector<int64_t> idx(chosen.begin(), chosen.end());
    std::sort(idx.begin(), idx.end());
    return idx;
}

}  // namespace curaclip
