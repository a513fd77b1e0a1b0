// The CUDA kmeans_assign kernel's screening arithmetic (cuda/kmeans_screen.h, the same
// __host__ __device__ functions the kernel calls), run on the host on adversarial data
// (issue 16): points between normalised centers, D = 64, K = 256, x = c + 3 N(0,1)/sqrt(D),
// N = 4000, centers and points rounded to bf16 as the GPU stores them, dot products from
// an fp32-accumulating "GEMM" of the bf16 values (as cuBLAS with COMPUTE_32F_PEDANTIC).
//  - the old arithmetic (screen with the caller's squared norms: computed from the float
//    centers, then rounded to bf16) sends rows to a center that is not the nearest;
//  - the kernel's arithmetic now (fp32 norms of the centers as stored) gives the exact
//    argmin of the float64 distance on every row, whatever order the GEMM sums in.
// Runs without a GPU or nvcc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/kmeans_screen.h"

namespace curaclip {
namespace {

namespace ks = kmeans_screen;

float round_bf16(float f) {  // round to nearest even, as __float2bfloat16_rn
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    float r;
    std::memcpy(&r, &u, 4);
    return r;
}

struct Data {
    int64_t N = 4000, D = 64, K = 256;
    std::vector<float> centers_f32;  // normalised, before rounding (what the caller holds)
    std::vector<float> centers;      // as stored: bf16 values
    std::vector<float> x;            // as stored: bf16 values
};

Data adversarial_data(uint64_t seed) {
    Data d;
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    std::uniform_int_distribution<int64_t> pick(0, d.K - 1);
    d.centers_f32.resize(size_t(d.K * d.D));
    for (int64_t k = 0; k < d.K; ++k) {
        double n = 0.0;
        float* c = &d.centers_f32[size_t(k * d.D)];
        for (int64_t i = 0; i < d.D; ++i) {
            c[i] = float(g(rng));
            n += double(c[i]) * c[i];
        }
        for (int64_t i = 0; i < d.D; ++i) c[i] = float(c[i] / std::sqrt(n));
    }
    d.centers.resize(d.centers_f32.size());
    for (size_t i = 0; i < d.centers.size(); ++i) d.centers[i] = round_bf16(d.centers_f32[i]);
    d.x.resize(size_t(d.N * d.D));
    const double sigma = 3.0 / std::sqrt(double(d.D));
    for (int64_t r = 0; r < d.N; ++r) {
        const float* c = &d.centers_f32[size_t(pick(rng) * d.D)];
        for (int64_t i = 0; i < d.D; ++i) d.x[size_t(r * d.D + i)] = round_bf16(float(c[i] + sigma * g(rng)));
    }
    return d;
}

enum class GemmOrder { forward, backward, pairwise };

// x.c in fp32 accumulation (the bf16 products are exact in fp32), in one of several orders:
// cuBLAS's order is unknown, the margin must hold for any.
float dot_f32(const float* a, const float* b, int64_t D, GemmOrder order) {
    if (order == GemmOrder::pairwise) {  // tree of pairs, in place
        std::vector<float> p(static_cast<size_t>(D));
        for (int64_t i = 0; i < D; ++i) p[size_t(i)] = a[i] * b[i];
        for (int64_t w = D; w > 1;) {
            const int64_t h = w / 2;
            for (int64_t i = 0; i < h; ++i) p[size_t(i)] = p[size_t(2 * i)] + p[size_t(2 * i + 1)];
            if (w % 2) p[size_t(h)] = p[size_t(w - 1)];
            w = h + w % 2;
        }
        return p[0];
    }
    float s = 0.0f;
    if (order == GemmOrder::forward)
        for (int64_t i = 0; i < D; ++i) s += a[i] * b[i];
    else
        for (int64_t i = D - 1; i >= 0; --i) s += a[i] * b[i];
    return s;
}

struct Outcome {
    int wrong = 0;         // rows whose center is not the exact argmin
    int wrong_dist = 0;    // rows whose distance is not the exact minimum
};

// Runs the kernel's row arithmetic (ks::assign_row) with the given norms n_k on every row
// and compares with the exact argmin of the float64 distance (ties -> lowest k).
Outcome run(const Data& d, const std::vector<float>& norms, GemmOrder order) {
    double c_max = 0.0, n_max = 0.0;
    for (int64_t k = 0; k < d.K; ++k) {
        const float* c = &d.centers[size_t(k * d.D)];
        const double n2 = ks::sq_dist_f64([&](int64_t i) { return double(c[i]); }, ks::Zero{}, d.D);
        c_max = std::max(c_max, std::sqrt(n2));
        n_max = std::max(n_max, std::fabs(double(norms[size_t(k)])));
    }
    Outcome o;
    std::vector<float> dots(size_t(d.K));
    for (int64_t r = 0; r < d.N; ++r) {
        const float* x = &d.x[size_t(r * d.D)];
        for (int64_t k = 0; k < d.K; ++k) dots[size_t(k)] = dot_f32(x, &d.centers[size_t(k * d.D)], d.D, order);
        auto get_x = [&](int64_t i) { return double(x[i]); };
        double dist = 0.0;
        const int64_t got = ks::assign_row(
            get_x, [&](int64_t k, int64_t i) { return double(d.centers[size_t(k * d.D + i)]); },
            [&](int64_t k) { return dots[size_t(k)]; }, [&](int64_t k) { return norms[size_t(k)]; }, d.K, d.D, c_max,
            n_max, &dist);
        double best = INFINITY;
        int64_t arg = -1;
        for (int64_t k = 0; k < d.K; ++k) {
            const float* c = &d.centers[size_t(k * d.D)];
            const double e = ks::sq_dist_f64(get_x, [&](int64_t i) { return double(c[i]); }, d.D);
            if (e < best) {
                best = e;
                arg = k;
            }
        }
        o.wrong += got != arg;
        o.wrong_dist += dist != best;
    }
    return o;
}

// The caller's norms before issue 16: float64 sums of the float centers, stored as bf16.
std::vector<float> caller_bf16_norms(const Data& d) {
    std::vector<float> n(size_t(d.K));
    for (int64_t k = 0; k < d.K; ++k) {
        double s = 0.0;
        for (int64_t i = 0; i < d.D; ++i) {
            const double v = d.centers_f32[size_t(k * d.D + i)];
            s += v * v;
        }
        n[size_t(k)] = round_bf16(float(s));
    }
    return n;
}

// What the kernel screens with now: the norms of the stored centers, fp32.
std::vector<float> stored_fp32_norms(const Data& d) {
    std::vector<float> n(size_t(d.K));
    for (int64_t k = 0; k < d.K; ++k) {
        const float* c = &d.centers[size_t(k * d.D)];
        n[size_t(k)] = ks::center_sq_norm_f32([&](int64_t i) { return double(c[i]); }, d.D);
    }
    return n;
}

TEST(KmeansScreen, OldArithmeticMisassignsAdversarialRows) {
    const Data d = adversarial_data(16);
    const Outcome old = run(d, caller_bf16_norms(d), GemmOrder::forward);
    std::printf("  bf16 caller norms: %d of %lld rows not at the nearest center\n", old.wrong, (long long)d.N);
    EXPECT_GE(old.wrong, 3) << "the adversarial data no longer show the old defect";
    EXPECT_EQ(old.wrong, old.wrong_dist);
}

TEST(KmeansScreen, FP32NormsOfStoredCentersGiveTheExactArgmin) {
    for (uint64_t seed : {16u, 17u, 18u}) {
        const Data d = adversarial_data(seed);
        const std::vector<float> norms = stored_fp32_norms(d);
        for (GemmOrder order : {GemmOrder::forward, GemmOrder::backward, GemmOrder::pairwise}) {
            const Outcome o = run(d, norms, order);
            EXPECT_EQ(o.wrong, 0) << "seed " << seed << " order " << int(order);
            EXPECT_EQ(o.wrong_dist, 0) << "seed " << seed << " order " << int(order);
        }
    }
}

// The pieces, on values worked out by hand.
TEST(KmeansScreen, PiecesComputeWhatTheyDocument) {
    // (1,2,3,4,5) - (0,0,0,0,1): partial sums s0 = 1 + 16, s1 = 4, s2 = 9, s3 = 16.
    const double a[5] = {1, 2, 3, 4, 5}, b[5] = {0, 0, 0, 0, 1};
    EXPECT_EQ(ks::sq_dist_f64([&](int64_t i) { return a[i]; }, [&](int64_t i) { return b[i]; }, 5), 46.0);
    EXPECT_EQ(ks::center_sq_norm_f32([&](int64_t i) { return a[i]; }, 5), 55.0f);
    EXPECT_EQ(ks::screen(3.0f, 1.25f), 0.5f);
    // 4 (D+4) eps (2 |x| |c|max + n_max + |best|) at D = 4: 32 eps (2*2*3 + 9 + 1) = 704 eps.
    EXPECT_DOUBLE_EQ(ks::margin(4, 2.0, 3.0, 9.0, -1.0f), 704.0 * double(FLT_EPSILON));
    EXPECT_EQ(ks::limit(1.0f, 0.5), 1.5f);
    EXPECT_TRUE(ks::is_candidate(1.5f, 1.5f));
    EXPECT_FALSE(ks::is_candidate(1.5000001f, 1.5f));
    EXPECT_TRUE(ks::is_candidate(NAN, 1.5f));
}

}  // namespace
}  // namespace curaclip
