// Distributed k-means and the MoDE two-stage clustering on 1, 2 and 4 ranks:
// every configuration must give the same assignments and centers as one
// process holding all the points (run on every rank through a split
// communicator of size 1), and the pipeline must recover planted clusters.
// EXPECT_* only before collectives (an ASSERT would leave the other ranks waiting).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "backend/registry.h"
#include "io/hdf5_file.h"
#include "mode/clustering.h"
#include "mode/kmeans.h"
#include "mode/side_file.h"
#include "mpi/communicator.h"

namespace curaclip {
namespace {

std::vector<float> blobs(int64_t n, int64_t dim, int64_t k, uint64_t seed, double spread) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    std::vector<double> mu(size_t(k * dim));
    for (auto& v : mu) v = g(rng);
    std::vector<float> x(size_t(n * dim));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < dim; ++d)
            x[size_t(i * dim + d)] = float(mu[size_t((i * 7919 % k) * dim + d)] + spread * g(rng));
    return x;
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i)
        m = std::max(m, std::fabs(double(a[i]) - double(b[i])) / (1e-6 + std::fabs(double(b[i]))));
    return m;
}

struct Case {
    mode::KMeansInit init;
    bool balanced;
};

TEST(KMeansDistributed, SameAsOneProcessForAnyRankCount) {
    const Communicator world = Communicator::world();
    const Communicator self = world.split(world.rank(), 0);
    auto be = make_backend("cpu");
    const int64_t n = 2501, dim = 16, k = 20;
    // Overlapping blobs: many points near cluster borders.
    const auto x = blobs(n, dim, 12, 11, 0.8);
    const auto [b, e] = mode::block_of(n, world.rank(), world.size());
    for (Case c : {Case{mode::KMeansInit::kmeanspp, false}, Case{mode::KMeansInit::random, false},
                   Case{mode::KMeansInit::kmeanspp, true}}) {
        mode::KMeansOptions opt;
        opt.k = k;
        opt.iters = c.balanced ? 6 : 15;
        opt.init = c.init;
        opt.balanced = c.balanced;
        opt.seed = 5;
        opt.block_rows = 97;
        const auto dist = mode::kmeans(*be, world, x.data() + b * dim, e - b, dim, opt);
        const auto one = mode::kmeans(*be, self, x.data(), n, dim, opt);
        const std::string what = std::string(mode::kmeans_init_name(c.init)) + (c.balanced ? " balanced" : "");
        EXPECT_LE(max_rel(dist.centers, one.centers), 1e-6) << what;
        EXPECT_EQ(dist.centers, one.centers) << what << " (bitwise: the sums are exact)";
        int64_t diff = 0;
        for (int64_t i = b; i < e; ++i) diff += dist.assign[size_t(i - b)] != one.assign[size_t(i)];
        EXPECT_EQ(diff, 0) << what << ": points assigned differently on rank " << world.rank();
        EXPECT_EQ(dist.sizes, one.sizes) << what;
        EXPECT_NEAR(dist.inertia, one.inertia, 1e-9 * one.inertia) << what;
        EXPECT_EQ(dist.iterations, one.iterations) << what;
        if (c.balanced) {
            const auto [lo, hi] = std::minmax_element(dist.sizes.begin(), dist.sizes.end());
            EXPECT_LE(*hi - *lo, 1) << what;
        }
    }
}

// Synthetic captions: 4 planted topics on the unit sphere, each with 6 sub-topics.
std::vector<float> planted(int64_t n, int64_t dim, std::vector<int>* topic) {
    std::mt19937_64 rng(21);
    std::normal_distribution<double> g(0.0, 1.0);
    const int T = 4, S = 6;
    std::vector<double> top(size_t(T * dim)), sub(size_t(T * S * dim));
    for (auto& v : top) v = g(rng) * 3.0;
    for (int t = 0; t < T; ++t)
        for (int s = 0; s < S; ++s)
            for (int64_t d = 0; d < dim; ++d) sub[size_t((t * S + s) * dim + d)] = top[size_t(t * dim + d)] + 0.7 * g(rng);
    std::vector<float> x(size_t(n * dim));
    topic->resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
        const int64_t j = (i * 104729) % (T * S);
        (*topic)[size_t(i)] = int(j / S);
        for (int64_t d = 0; d < dim; ++d) x[size_t(i * dim + d)] = float(sub[size_t(j * dim + d)] + 0.15 * g(rng));
    }
    return x;
}

TEST(KMeansDistributed, TwoStageRecoversPlantedClustersAndWritesTheSideFile) {
    const Communicator world = Communicator::world();
    const Communicator self = world.split(world.rank(), 0);
    auto be = make_backend("cpu");
    const int64_t n = 3000, dim = 24;
    std::vector<int> topic;
    const auto x = planted(n, dim, &topic);
    mode::ClusterOptions opt;
    opt.fine = 48;
    opt.experts = 4;
    opt.sample = 1500;
    opt.iters = 15;
    opt.seed = 3;
    opt.chunk_rows = 333;
    const auto src = mode::memory_source(x.data(), n, dim);
    const auto r = mode::cluster_two_stage(*be, world, src, opt);
    const auto one = mode::cluster_two_stage(*be, self, src, opt);
    EXPECT_EQ(r.fine_centers, one.fine_centers);
    EXPECT_EQ(r.coarse_centers, one.coarse_centers);
    EXPECT_EQ(r.fine_to_expert, one.fine_to_expert);
    EXPECT_EQ(r.expert_sizes, one.expert_sizes);
    int64_t diff = 0;
    for (int64_t i = r.begin; i < r.end; ++i)
        diff += r.fine[size_t(i - r.begin)] != one.fine[size_t(i)] || r.expert[size_t(i - r.begin)] != one.expert[size_t(i)];
    EXPECT_EQ(diff, 0);
    // Each planted topic is exactly one expert, and the experts are distinct.
    std::vector<int> expert_of(4, -1);
    int64_t impure = 0;
    for (int64_t i = 0; i < n; ++i) {
        int& e = expert_of[size_t(topic[size_t(i)])];
        if (e < 0) e = one.expert[size_t(i)];
        impure += one.expert[size_t(i)] != e;
    }
    EXPECT_EQ(impure, 0);
    std::vector<int> sorted = expert_of;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<int>{0, 1, 2, 3}));

    // The side file, written by turns, read back; never overwritten.
    int64_t tag = world.rank() == 0 ? int64_t(getpid()) : 0;
    world.broadcast(&tag, 1, 0);
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("curaclip_assign_" + std::to_string(tag) + "_np" + std::to_string(world.size()) + ".h5")).string();
    mode::check_new_output(path, "--out");
    mode::ClusterFileInfo info;
    info.source_dataset = "synthetic";
    info.seed = opt.seed;
    mode::save_cluster_result(world, path, r, info);
    {
        H5File f(path, H5File::Mode::read);
        std::vector<int64_t> shape;
        const auto fine = f.read_i32("/assign/fine", &shape);
        EXPECT_EQ(shape, (std::vector<int64_t>{n}));
        EXPECT_EQ(fine, one.fine);
        EXPECT_EQ(f.read_i32("/assign/expert"), one.expert);
        EXPECT_EQ(f.read_f32("/centers/fine", &shape), one.fine_centers);
        EXPECT_EQ(shape, (std::vector<int64_t>{48, dim}));
        EXPECT_EQ(f.read_i32("/centers/fine_to_expert"), one.fine_to_expert);
        EXPECT_EQ(f.attr_i64("/", "m"), 48);
        EXPECT_EQ(f.attr_i64("/", "n"), 4);
        EXPECT_EQ(f.attr_i64("/", "n_examples"), n);
        EXPECT_EQ(f.attr_string("/", "source_dataset"), "synthetic");
    }
    bool refused = false;
    try {
        mode::check_new_output(path, "--out");
    } catch (const Error&) {
        refused = true;
    }
    EXPECT_TRUE(refused);
    world.barrier();
    if (world.rank() == 0) std::filesystem::remove(path);
}

}  // namespace
}  // namespace curaclip
