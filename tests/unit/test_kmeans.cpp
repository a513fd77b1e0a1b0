// k-means (src/mode/kmeans.h) on one process: Lloyd against a float64 brute force,
// k-means++ reproducibility, empty-cluster re-seeding, the balanced assignment,
// the assignment op's row independence, and bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/curation_ops.h"
#include "backend/registry.h"
#include "mode/kmeans.h"
#include "mpi/communicator.h"

namespace curaclip {
namespace {

using mode::KMeansOptions;

// This binary has no MPI main: a world of one, initialized on first use.
const Communicator& self() {
    static MpiEnvironment env;
    static Communicator world = Communicator::world();
    return world;
}

std::vector<float> blobs(int64_t n, int64_t dim, int64_t k, uint64_t seed, double spread = 0.15) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    std::vector<double> mu(size_t(k * dim));
    for (auto& v : mu) v = g(rng);
    std::vector<float> x(size_t(n * dim));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < dim; ++d)
            x[size_t(i * dim + d)] = float(mu[size_t((i % k) * dim + d)] + spread * g(rng));
    return x;
}

double sqd(const float* a, const float* b, int64_t dim) {
    double s = 0;
    for (int64_t d = 0; d < dim; ++d) s += (double(a[d]) - double(b[d])) * (double(a[d]) - double(b[d]));
    return s;
}

// The nearest of k centers to p by the float64 distance (ties -> the lowest), its distance in *dist.
int64_t brute_nearest(const float* p, const float* centers, int64_t k, int64_t dim, double* dist) {
    int64_t best = 0;
    *dist = std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < k; ++c) {
        const double d = sqd(p, centers + c * dim, dim);
        if (d < *dist) {
            *dist = d;
            best = c;
        }
    }
    return best;
}

TEST(KMeans, OneLloydStepMatchesFloat64BruteForce) {
    const int64_t n = 600, dim = 8, k = 7;
    const auto x = blobs(n, dim, 5, 1, 0.6);
    std::vector<float> init(x.begin() + 10 * dim, x.begin() + (10 + k) * dim);
    auto be = make_backend("cpu");
    KMeansOptions opt;
    opt.k = k;
    opt.iters = 1;
    opt.final_assignment = false;
    opt.block_rows = 64;
    const auto r = mode::kmeans(*be, self(), x.data(), n, dim, opt, init.data());
    std::vector<double> sum(size_t(k * dim), 0.0);
    std::vector<int64_t> cnt(static_cast<size_t>(k), 0);
    double inertia = 0;
    for (int64_t i = 0; i < n; ++i) {
        double bd = 0;
        const int64_t best = brute_nearest(&x[size_t(i * dim)], init.data(), k, dim, &bd);
        EXPECT_EQ(r.assign[size_t(i)], best) << "point " << i;
        EXPECT_NEAR(r.dist[size_t(i)], bd, 1e-4 * (1 + bd));
        inertia += bd;
        ++cnt[size_t(best)];
        for (int64_t d = 0; d < dim; ++d) sum[size_t(best * dim + d)] += x[size_t(i * dim + d)];
    }
    EXPECT_NEAR(r.inertia, inertia, 1e-5 * inertia);
    for (int64_t c = 0; c < k; ++c) {
        ASSERT_GT(cnt[size_t(c)], 0);
        EXPECT_EQ(r.sizes[size_t(c)], cnt[size_t(c)]);
        for (int64_t d = 0; d < dim; ++d) {
            const double want = sum[size_t(c * dim + d)] / double(cnt[size_t(c)]);
            EXPECT_NEAR(r.centers[size_t(c * dim + d)], want, 1e-6 * (1 + std::fabs(want)));
        }
    }
}

TEST(KMeans, ConvergesOnBlobsAndReportsEveryIteration) {
    const int64_t n = 2000, dim = 16, k = 8;
    const auto x = blobs(n, dim, k, 2, 0.03);
    auto be = make_backend("cpu");
    KMeansOptions opt;
    opt.k = k;
    opt.iters = 30;
    opt.seed = 3;
    std::vector<double> inertia;
    opt.on_iteration = [&](const mode::KMeansIteration& s) {
        inertia.push_back(s.inertia);
        int64_t total = 0;
        for (auto v : s.sizes) total += v;
        EXPECT_EQ(total, n);
    };
    const auto r = mode::kmeans(*be, self(), x.data(), n, dim, opt);
    ASSERT_GE(inertia.size(), 2u);
    for (size_t i = 1; i < inertia.size(); ++i) EXPECT_LE(inertia[i], inertia[i - 1] * (1 + 1e-6));
    // k-means++ on well separated blobs finds them: every cluster is one blob.
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(r.assign[size_t(i)], r.assign[size_t(i % k)]);
    EXPECT_LT(r.iterations, 30);  // stopped when stable
}

TEST(KMeans, KMeansPlusPlusIsReproducible) {
    const int64_t n = 500, dim = 4, k = 12;
    const auto x = blobs(n, dim, 6, 4, 0.5);
    const auto a = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::kmeanspp, 9, 0);
    const auto b = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::kmeanspp, 9, 0);
    const auto c = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::kmeanspp, 10, 0);
    const auto d = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::kmeanspp, 9, 1);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    EXPECT_NE(a, d);
    // Every pick is a data point, and no point is picked twice.
    for (int64_t j = 0; j < k; ++j) {
        bool found = false;
        for (int64_t i = 0; i < n && !found; ++i) found = sqd(&a[size_t(j * dim)], &x[size_t(i * dim)], dim) == 0;
        EXPECT_TRUE(found) << "center " << j;
        for (int64_t j2 = 0; j2 < j; ++j2) EXPECT_GT(sqd(&a[size_t(j * dim)], &a[size_t(j2 * dim)], dim), 0);
    }
    const auto r1 = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::random, 9, 0);
    const auto r2 = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::random, 9, 0);
    EXPECT_EQ(r1, r2);
    EXPECT_EQ(mode::parse_kmeans_init("kmeans++"), mode::KMeansInit::kmeanspp);
    EXPECT_EQ(mode::parse_kmeans_init("random"), mode::KMeansInit::random);
    EXPECT_THROW(mode::parse_kmeans_init("forgy"), Error);
}

TEST(KMeans, EmptyClustersAreReseededWithTheFarthestPoints) {
    const int64_t n = 300, dim = 3, k = 4;
    auto x = blobs(n, dim, 2, 5, 0.1);
    x[size_t(17 * dim)] += 50.0f;  // one outlier: the farthest point from every center
    // Two centers far from everything: empty after the first assignment.
    std::vector<float> init(size_t(k * dim), 0.0f);
    std::copy(x.begin(), x.begin() + dim, init.begin());
    std::copy(x.begin() + dim, x.begin() + 2 * dim, init.begin() + dim);
    for (int64_t d = 0; d < dim; ++d) init[size_t(2 * dim + d)] = init[size_t(3 * dim + d)] = -1000.0f;
    auto be = make_backend("cpu");
    KMeansOptions opt;
    opt.k = k;
    opt.iters = 10;
    int64_t reseeded = 0;
    std::vector<int64_t> first_sizes;
    opt.on_iteration = [&](const mode::KMeansIteration& s) {
        if (s.iter == 0) first_sizes = s.sizes;
        reseeded += s.reseeded;
    };
    const auto r = mode::kmeans(*be, self(), x.data(), n, dim, opt, init.data());
    ASSERT_EQ(first_sizes.size(), size_t(k));
    EXPECT_EQ(first_sizes[2], 0);
    EXPECT_EQ(first_sizes[3], 0);
    EXPECT_GE(reseeded, 2);
    for (int64_t c = 0; c < k; ++c) EXPECT_GT(r.sizes[size_t(c)], 0) << "cluster " << c;
    // The outlier got a center of its own.
    EXPECT_EQ(r.sizes[size_t(r.assign[17])], 1);
}

// Naive greedy: points in index order, each to its nearest cluster with room.
double greedy_objective(const std::vector<float>& dm, int64_t n, int64_t k) {
    const int64_t q = n / k, r = n % k;
    std::vector<int64_t> size(static_cast<size_t>(k), 0);
    int64_t big = 0;
    double obj = 0;
    for (int64_t i = 0; i < n; ++i) {
        int64_t best = -1;
        for (int64_t c = 0; c < k; ++c) {
            const bool room = size[size_t(c)] < q || (size[size_t(c)] == q && big < r);
            if (room && (best < 0 || dm[size_t(i * k + c)] < dm[size_t(i * k + best)])) best = c;
        }
        if (size[size_t(best)] == q) ++big;
        ++size[size_t(best)];
        obj += dm[size_t(i * k + best)];
    }
    return obj;
}

TEST(KMeans, BalancedSizesDifferByAtMostOneAndBeatGreedy) {
    for (int64_t n : {1003, 640, 97}) {
        const int64_t dim = 6, k = 10;
        // Unequal blobs: a plain nearest-center assignment is far from balanced.
        std::vector<float> x = blobs(n, dim, 3, 6 + uint64_t(n), 0.5);
        const auto centers = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::kmeanspp, 1, 0);
        std::vector<float> dm(size_t(n * k));
        for (int64_t i = 0; i < n; ++i)
            for (int64_t c = 0; c < k; ++c) dm[size_t(i * k + c)] = float(sqd(&x[size_t(i * dim)], &centers[size_t(c * dim)], dim));
        std::vector<int32_t> a(static_cast<size_t>(n));
        std::vector<float> dist(static_cast<size_t>(n));
        std::vector<double> prices;
        mode::balanced_assign(self(), dm.data(), n, k, 40, prices, a.data(), dist.data());
        std::vector<int64_t> size(static_cast<size_t>(k), 0);
        double obj = 0;
        for (int64_t i = 0; i < n; ++i) {
            ++size[size_t(a[size_t(i)])];
            obj += dm[size_t(i * k + a[size_t(i)])];
            EXPECT_EQ(dist[size_t(i)], dm[size_t(i * k + a[size_t(i)])]);
        }
        const auto [mn, mx] = std::minmax_element(size.begin(), size.end());
        EXPECT_EQ(*mn, n / k) << "n=" << n;
        EXPECT_LE(*mx - *mn, 1) << "n=" << n;
        EXPECT_LE(obj, greedy_objective(dm, n, k) * (1 + 1e-9)) << "n=" << n;
        std::printf("  balanced n=%lld: objective %.4f, naive greedy %.4f\n", (long long)n, obj,
                    greedy_objective(dm, n, k));

        // Through the whole Lloyd loop.
        auto be = make_backend("cpu");
        KMeansOptions opt;
        opt.k = k;
        opt.iters = 5;
        opt.balanced = true;
        const auto r = mode::kmeans(*be, self(), x.data(), n, dim, opt);
        const auto [lo, hi] = std::minmax_element(r.sizes.begin(), r.sizes.end());
        EXPECT_LE(*hi - *lo, 1);
        EXPECT_EQ(*lo, n / k);
    }
}

// The assignment op answers a row the same wherever it sits and whatever the block size.
TEST(KMeans, AssignmentIsIndependentOfRowPositionAndBlock) {
    const int64_t n = 777, dim = 64, k = 100;
    const auto x = blobs(n, dim, 20, 7, 0.3);
    const auto centers = mode::kmeans_init(self(), x.data(), n, dim, k, mode::KMeansInit::random, 2, 0);
    auto be = make_backend("cpu");
    std::vector<int32_t> a0(static_cast<size_t>(n)), a1(static_cast<size_t>(n));
    std::vector<float> d0(static_cast<size_t>(n)), d1(static_cast<size_t>(n));
    mode::NearestCenter(*be, centers.data(), k, dim, n, 1024).assign(x.data(), n, a0.data(), d0.data());
    for (int64_t block : {1, 7, 64, 256}) {
        mode::NearestCenter nc(*be, centers.data(), k, dim, 101, block);
        for (int64_t start : {0, 3, 250}) {
            nc.assign(x.data() + start * dim, n - start, a1.data(), d1.data());
            for (int64_t i = start; i < n; ++i) {
                ASSERT_EQ(a1[size_t(i - start)], a0[size_t(i)]) << "row " << i << " block " << block;
                ASSERT_EQ(d1[size_t(i - start)], d0[size_t(i)]) << "row " << i << " block " << block;
            }
        }
    }
}

// The op against a float64 brute force for center counts around the vector widths of the
// screening passes (16 and 8 floats), and for near ties the fp32 GEMM cannot resolve: points
// within ~1e-6 of the bisector of two centers, which only the float64 re-scoring decides.
TEST(KMeans, AssignmentMatchesFloat64BruteForceIncludingNearTies) {
    auto be = make_backend("cpu");
    std::mt19937_64 rng(12);
    std::normal_distribution<double> g(0.0, 1.0);
    for (int64_t k : {1, 7, 8, 15, 16, 17, 33, 100, 257}) {
        for (int64_t dim : {3, 64}) {
            const int64_t n = 300;
            std::vector<float> centers(size_t(k * dim)), x(size_t(n * dim));
            for (auto& v : centers) v = float(g(rng));
            for (int64_t i = 0; i < n; ++i) {
                float* p = &x[size_t(i * dim)];
                const float* a = &centers[size_t((i % k) * dim)];
                const float* b = &centers[size_t(((i * 7 + 3) % k) * dim)];
                // Even rows: near the midpoint of two centers (a near tie); odd rows: anywhere.
                for (int64_t d = 0; d < dim; ++d)
                    p[d] = i % 2 == 0 ? float(0.5 * (double(a[d]) + double(b[d])) + 1e-6 * g(rng)) : float(g(rng));
            }
            std::vector<int32_t> got(static_cast<size_t>(n));
            std::vector<float> dist(static_cast<size_t>(n));
            mode::NearestCenter(*be, centers.data(), k, dim, n, 64).assign(x.data(), n, got.data(), dist.data());
            for (int64_t i = 0; i < n; ++i) {
                double bd = 0;
                const int64_t best = brute_nearest(&x[size_t(i * dim)], centers.data(), k, dim, &bd);
                ASSERT_EQ(got[size_t(i)], best) << "k " << k << " dim " << dim << " row " << i;
                ASSERT_NEAR(dist[size_t(i)], bd, 1e-6 * bd) << "k " << k << " dim " << dim << " row " << i;
            }
        }
    }
}

TEST(KMeans, AssignmentTiesGoToTheLowestCenter) {
    auto be = make_backend("cpu");
    const std::vector<float> centers = {1, 0, 0, 1, 1, 0, 0, 1};  // 0 == 2, 1 == 3
    const std::vector<float> x = {0.9f, 0.1f, 0.1f, 0.9f, 0.5f, 0.5f};
    std::vector<int32_t> a(3);
    mode::NearestCenter(*be, centers.data(), 4, 2).assign(x.data(), 3, a.data(), nullptr);
    EXPECT_EQ(a, (std::vector<int32_t>{0, 1, 0}));
}

TEST(KMeans, RejectsBadInputs) {
    auto be = make_backend("cpu");
    const auto x = blobs(10, 3, 2, 8);
    KMeansOptions opt;
    opt.k = 11;
    EXPECT_THROW(mode::kmeans(*be, self(), x.data(), 10, 3, opt), Error);  // k > points
    opt.k = 0;
    EXPECT_THROW(mode::kmeans(*be, self(), x.data(), 10, 3, opt), Error);
    opt.k = 2;
    opt.iters = -1;
    EXPECT_THROW(mode::kmeans(*be, self(), x.data(), 10, 3, opt), Error);
    opt.iters = 2;
    EXPECT_THROW(mode::kmeans(*be, self(), nullptr, 10, 3, opt), Error);
    EXPECT_THROW(mode::kmeans(*be, self(), x.data(), 10, 0, opt), Error);
    auto bad = x;
    bad[4] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(mode::kmeans(*be, self(), bad.data(), 10, 3, opt), Error);
    // The op: D mismatch, wrong dtypes, wrong scratch shape.
    std::vector<void*> mem;
    auto t = [&](Shape s, DType dt) {
        mem.push_back(be->alloc(size_t(s.numel()) * dtype_size(dt)));
        return Tensor{mem.back(), dt, s};
    };
    Tensor a = t({10}, DType::i32), d = t({10}, DType::f32), xs = t({10, 3}, DType::f32);
    be->upload(xs, x.data());
    EXPECT_THROW(be->curation().kmeans_assign(a, d, xs, t({4, 5}, DType::f32), t({4}, DType::f32), t({2, 4}, DType::f32)), Error);
    EXPECT_THROW(be->curation().kmeans_assign(a, d, xs, t({4, 3}, DType::f32), t({4}, DType::f32), t({2, 5}, DType::f32)), Error);
    EXPECT_THROW(be->curation().kmeans_assign(t({10}, DType::f32), d, xs, t({4, 3}, DType::f32), t({4}, DType::f32), t({2, 4}, DType::f32)), Error);
    EXPECT_THROW(be->curation().kmeans_assign(a, d, xs, t({4, 3}, DType::f32), t({3}, DType::f32), t({2, 4}, DType::f32)), Error);
    for (void* p : mem) be->free(p);
    std::vector<float> dm(6, 1.0f);
    std::vector<int32_t> as(2);
    std::vector<double> prices;
    EXPECT_THROW(mode::balanced_assign(self(), dm.data(), 2, 3, 5, prices, as.data(), dm.data()), Error);
}

}  // namespace
}  // namespace curaclip
