// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
//
// A stream is keyed by (seed, purpose, step, rank): the same key always yields
// the same numbers, whatever happened before, so a resumed run, another rank
// count or another thread order draws exactly what the original run drew.
#pragma once

#include <cmath>
#include <cstdint>

namespace curaclip {

enum class RngPurpose : uint32_t {
    init = 1,        // weight initialization
    data_order = 2,  // epoch shuffles
    jest = 3,        // Gumbel noise of the JEST sampler
    kmeans = 4,      // k-means initialization / sampling
    test = 5,        // tests and benchmarks
    noise = 6,       // dataset corruption
};

class Philox {
public:
    Philox(uint64_t seed, RngPurpose purpose, uint64_t step = 0, uint32_t rank = 0)
        : key0_(uint32_t(seed)), key1_(uint32_t(seed >> 32)) {
        // counter words 2,3 name the stream; words 0,1 count blocks within it.
        const uint64_t stream = mix(mix(uint64_t(purpose) * 0x9E3779B97F4A7C15ull ^ step) ^ rank);
        c2_ = uint32_t(stream);
        c3_ = uint32_t(stream >> 32);
    }

    // The i-th block of four 32-bit numbers of this stream (random access).
    void block(uint64_t i, uint32_t out[4]) const {
        const uint32_t ctr[4] = {uint32_t(i), uint32_t(i >> 32), c2_, c3_};
        const uint32_t key[2] = {key0_, key1_};
        philox4x32_10(ctr, key, out);
    }

    // The bare Philox4x32-10 bijection (public for the known-answer test).
    static void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
        uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
        uint32_t k0 = key[0], k1 = key[1];
        for (int r = 0; r < 10; ++r) {
            const uint64_t p0 = uint64_t(0xD2511F53u) * c0;
            const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
            const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
            const uint32_t n1 = uint32_t(p1);
            const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
            const uint32_t n3 = uint32_t(p0);
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
    }

    uint32_t next_u32() {
        if (have_ == 0) {
            block(counter_++, buf_);
            have_ = 4;
        }
        return buf_[4 - have_--];
    }
    uint64_t next_u64() { return (uint64_t(next_u32()) << 32) | next_u32(); }
    // Uniform in (0, 1): never exactly 0 or 1, so log() and Gumbel noise are safe.
    double uniform() { return (double(next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
    // Standard normal (Box-Muller, one value per call for simplicity).
    double normal() {
        const double u1 = uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
    // Standard Gumbel: -log(-log(U)).
    double gumbel() { return -std::log(-std::log(uniform())); }
    // Uniform integer in [0, n).
    uint64_t below(uint64_t n) { return n ? next_u64() % n : 0; }

private:
    static uint64_t mix(uint64_t x) {  // splitmix64 finalizer
        x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 27; x *= 0x94D049BB133111EBull;
        return x ^ (x >> 31);
    }
    uint32_t key0_, key1_, c2_ = 0, c3_ = 0;
    uint64_t counter_ = 0;
    uint32_t buf_[4] = {};
    int have_ = 0;
};

}  // namespace curaclip
