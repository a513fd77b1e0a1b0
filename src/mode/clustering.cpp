// MoDE two-stage clustering (see clustering.h).
#include "mode/clustering.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "core/check.h"
#include "core/philox.h"
#include "core/sampling.h"

namespace curaclip::mode {

namespace {
// Philox steps of the RngPurpose::kmeans streams of one clustering run.
constexpr uint64_t kSampleStream = 100, kFineStream = 101, kCoarseStream = 102;

void normalize_rows(float* x, int64_t n, int64_t dim) {
#pragma omp parallel for schedule(static) if (n * dim > (1 << 16))
    for (int64_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (int64_t d = 0; d < dim; ++d) s += double(x[i * dim + d]) * double(x[i * dim + d]);
        const double inv = 1.0 / std::max(std::sqrt(s), 1e-12);
        for (int64_t d = 0; d < dim; ++d) x[i * dim + d] = float(double(x[i * dim + d]) * inv);
    }
}

// Sources that know their file check as they read (EmbeddingReader); this catches
// the others (memory sources), naming the example.
void check_finite(const float* x, int64_t count, int64_t first_row, int64_t dim) {
    for (int64_t i = 0; i < count; ++i)
        CC_REQUIRE(std::isfinite(x[i]), "clustering: the embedding of example ", first_row + i / dim,
                   " holds NaN or Inf (component ", i % dim, ")");
}
}  // namespace

EmbeddingSource memory_source(const float* x, int64_t n, int64_t dim) {
    EmbeddingSource s;
    s.n = n;
    s.dim = dim;
    s.read = [x, n, dim](int64_t start, int64_t count, float* out) {
        CC_CHECK(start >= 0 && count >= 0 && start + count <= n, "rows ", start, "+", count, " of ", n);
        std::memcpy(out, x + start * dim, size_t(count * dim) * sizeof(float));
    };
    return s;
}

std::pair<int64_t, int64_t> block_of(int64_t n, int rank, int size) {
    const int64_t q = n / size, r = n % size;
    const int64_t b = rank * q + std::min<int64_t>(rank, r);
    return {b, b + q + (rank < r ? 1 : 0)};
}

std::vector<int64_t> sample_indices(int64_t n, int64_t s, uint64_t seed) {
    std::vector<int64_t> idx;
    if (s <= 0 || s >= n) {
        idx.resize(size_t(n));
        for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = i;
        return idx;
    }
    Philox rng(seed, RngPurpose::kmeans, kSampleStream, 0);
    return floyd_sample(rng, n, s);  // s distinct, O(s)
}

ClusterResult cluster_two_stage(Backend& be, const Communicator& comm, const EmbeddingSource& src,
                                const ClusterOptions& opt) {
    const int64_t N = src.n, D = src.dim;
    CC_REQUIRE(N >= 1 && D >= 1, "clustering: no embeddings (", N, " rows of dimension ", D, ")");
    CC_REQUIRE(opt.fine >= 1, "clustering: --fine ", opt.fine, " (expected >= 1 fine center)");
    CC_REQUIRE(opt.experts >= 1, "clustering: --experts ", opt.experts, " (expected >= 1)");
    CC_REQUIRE(opt.experts <= opt.fine, "clustering: --experts ", opt.experts,
               " coarse clusters cannot be made of only ", opt.fine, " fine centers (--fine)");
    CC_REQUIRE(opt.sample >= 0, "clustering: --sample ", opt.sample, " (expected >= 0; 0 = all)");
    CC_REQUIRE(opt.chunk_rows >= 1, "clustering: chunk_rows ", opt.chunk_rows);
    const int64_t S = (opt.sample <= 0 || opt.sample >= N) ? N : opt.sample;
    CC_REQUIRE(opt.fine <= S, "clustering: --fine ", opt.fine,
               " centers need at least as many sampled points, but the sample has ", S, " (N = ", N, ", --sample ", opt.sample, ")");

    ClusterResult res;
    res.n = N;
    res.dim = D;
    res.m = opt.fine;
    res.n_experts = opt.experts;
    res.sample = S;

    // 1. This rank's block of the sorted sample, read in runs of nearby rows.
    const std::vector<int64_t> sample = sample_indices(N, S, opt.seed);
    const auto [sb, se] = block_of(S, comm.rank(), comm.size());
    std::vector<float> xs(size_t((se - sb) * D));
    {
        std::vector<float> buf;
        for (int64_t i = sb; i < se;) {
            const int64_t start = sample[size_t(i)];
            int64_t j = i;
            while (j < se && sample[size_t(j)] < start + opt.chunk_rows) ++j;
            const int64_t count = sample[size_t(j - 1)] - start + 1;
            buf.resize(size_t(count * D));
            src.read(start, count, buf.data());
            for (int64_t t = i; t < j; ++t)
                std::memcpy(&xs[size_t((t - sb) * D)], &buf[size_t((sample[size_t(t)] - start) * D)], size_t(D) * sizeof(float));
            i = j;
        }
    }
    for (int64_t t = sb; t < se; ++t) check_finite(&xs[size_t((t - sb) * D)], D, sample[size_t(t)], D);
    if (opt.normalize) normalize_rows(xs.data(), se - sb, D);

    // 2. Fine k-means on the sample.
    KMeansOptions fo;
    fo.k = opt.fine;
    fo.iters = opt.iters;
    fo.init = opt.init;
    fo.balanced = opt.balanced;
    fo.seed = opt.seed;
    fo.stream = kFineStream;
    fo.block_rows = opt.block_rows;
    if (opt.on_iteration) fo.on_iteration = [&](const KMeansIteration& s) { opt.on_iteration("fine", s); };
    KMeansResult fine = kmeans(be, comm, xs.data(), se - sb, D, fo);
    res.fine_centers = fine.centers;
    res.fine_inertia = fine.inertia;
    xs.clear();
    xs.shrink_to_fit();

    // 3. Coarse k-means of the fine centers (each rank a block of them).
    const auto [cb, ce] = block_of(opt.fine, comm.rank(), comm.size());
    KMeansOptions co = fo;
    co.k = opt.experts;
    co.iters = opt.coarse_iters;
    co.balanced = opt.coarse_balanced;
    co.stream = kCoarseStream;
    co.on_iteration = nullptr;
    if (opt.on_iteration) co.on_iteration = [&](const KMeansIteration& s) { opt.on_iteration("coarse", s); };
    KMeansResult coarse = kmeans(be, comm, res.fine_centers.data() + cb * D, ce - cb, D, co);
    res.coarse_centers = coarse.centers;
    res.coarse_inertia = coarse.inertia;
    res.fine_to_expert.assign(size_t(opt.fine), 0);
    std::copy(coarse.assign.begin(), coarse.assign.end(), res.fine_to_expert.begin() + cb);
    {
        // Every rank needs the whole map: blocks of different sizes, so pad to the largest.
        const int64_t width = block_of(opt.fine, 0, comm.size()).second;
        std::vector<int32_t> mine(size_t(width), -1), all(size_t(width * comm.size()));
        std::copy(coarse.assign.begin(), coarse.assign.end(), mine.begin());
        comm.allgather(mine.data(), all.data(), size_t(width));
        for (int r = 0; r < comm.size(); ++r) {
            const auto [b, e] = block_of(opt.fine, r, comm.size());
            for (int64_t c = b; c < e; ++c) res.fine_to_expert[size_t(c)] = all[size_t(r * width + c - b)];
        }
    }

    // 4. Every example to its nearest fine center, this rank's contiguous block.
    std::tie(res.begin, res.end) = block_of(N, comm.rank(), comm.size());
    const int64_t n_mine = res.end - res.begin;
    res.fine.resize(size_t(n_mine));
    res.expert.resize(size_t(n_mine));
    res.fine_sizes.assign(size_t(opt.fine), 0);
    res.expert_sizes.assign(size_t(opt.experts), 0);
    {
        const int64_t chunk = std::max<int64_t>(1, std::min(opt.chunk_rows, n_mine));
        NearestCenter nc(be, res.fine_centers.data(), opt.fine, D, chunk, opt.block_rows);
        std::vector<float> buf(size_t(chunk * D)), dist(static_cast<size_t>(chunk));
        for (int64_t s = res.begin; s < res.end; s += chunk) {
            const int64_t c = std::min(chunk, res.end - s);
            src.read(s, c, buf.data());
            check_finite(buf.data(), c * D, s, D);
            if (opt.normalize) normalize_rows(buf.data(), c, D);
            nc.assign(buf.data(), c, res.fine.data() + (s - res.begin), dist.data());
            for (int64_t i = 0; i < c; ++i) res.assign_inertia += double(dist[size_t(i)]);
        }
    }
    for (int64_t i = 0; i < n_mine; ++i) {
        const int32_t f = res.fine[size_t(i)];
        res.expert[size_t(i)] = res.fine_to_expert[size_t(f)];
        ++res.fine_sizes[size_t(f)];
        ++res.expert_sizes[size_t(res.expert[size_t(i)])];
    }
    comm.allreduce_sum(res.fine_sizes.data(), res.fine_sizes.size());
    comm.allreduce_sum(res.expert_sizes.data(), res.expert_sizes.size());
    comm.allreduce_sum(&res.assign_inertia, 1);
    return res;
}

}  // namespace curaclip::mode
