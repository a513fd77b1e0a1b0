// JEST under 1, 2 and 4 ranks: the gathered and the sharded mode select exactly the
// same examples, and the same as one process on the whole super-batch; the exchange
// delivers exactly the selected examples to each rank.
//
// The embeddings are dyadic (multiples of 1/16, |x.y| <= 1), so every dot product
// is exact in float32 whatever the GEMM's blocking: the score matrices are then the
// same numbers on any rank count, and any difference in the choice would be the
// sampler's. No ASSERT_* before a collective call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "jest/selector.h"
#include "mpi/collectives.h"
#include "mpi/communicator.h"
#include "jest/sample_exchange.h"

namespace curaclip {
namespace {

using jest::JestConfig;
using jest::JestSelector;
using jest::ScoreKind;
using jest::SelectMethod;
using jest::SelectMode;
using jest::Selection;

// Rows with entries k/16, k in [-4, 4]: D = 16 keeps |x.y| <= 1 and every partial sum exact.
std::vector<double> dyadic_rows(int64_t rows, int64_t D, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> d(-4, 4);
    std::vector<double> x(size_t(rows * D));
    for (auto& v : x) v = d(gen) / 16.0;
    return x;
}

struct Embeddings {
    std::vector<double> li, lt, ri, rt;
};

Selection run_selector(Backend& be, Collectives& coll, const Communicator* comm, const JestConfig& cfg,
                       const Embeddings& e, int64_t B, int64_t D, uint64_t step, int64_t tile_rows = 0) {
    const int P = coll.size(), r = coll.rank();
    const int64_t Bl = B / P;
    Arena arena(be, size_t(8 * Bl * D * 4 + 64 * 1024), "jest test");
    auto up = [&](const std::vector<double>& v, int64_t first, int64_t rows, int64_t cols) {
        Tensor t = arena.alloc({rows, cols}, be.dtype());
        be.upload(t, v.data() + first * cols);
        return t;
    };
    const std::vector<double> tl = {std::log(10.0)}, bl = {-10.0}, tr = {std::log(20.0)}, br = {-6.0};
    jest::ScoringInputs in{up(e.li, r * Bl, Bl, D), up(e.lt, r * Bl, Bl, D), up(e.ri, r * Bl, Bl, D),
                           up(e.rt, r * Bl, Bl, D), up(tl, 0, 1, 1),        up(bl, 0, 1, 1),
                           up(tr, 0, 1, 1),        up(br, 0, 1, 1)};
    JestSelector sel(be, coll, comm, cfg, B, D, tile_rows);
    return sel.select(in, step);
}

TEST(JestDistributed, GatheredAndShardedPickTheSameIndicesAsOneProcess) {
    const Communicator world = Communicator::world();
    const int P = world.size();
    const int64_t B = 64, D = 16;
    auto be = make_backend("cpu");
    auto coll = make_mpi_collectives(world, *be);
    auto single = make_single_process_collectives(*be);
    int cases = 0, mismatches = 0;
    for (LossKind loss : {LossKind::sigmoid, LossKind::softmax})
        for (ScoreKind kind : {ScoreKind::learnability, ScoreKind::hard_learner, ScoreKind::easy_reference})
            for (double tau : {1.0, 0.1})
                for (uint64_t seed : {1u, 77u}) {
                    const Embeddings e{dyadic_rows(B, D, uint32_t(seed * 4 + 1)), dyadic_rows(B, D, uint32_t(seed * 4 + 2)),
                                       dyadic_rows(B, D, uint32_t(seed * 4 + 3)), dyadic_rows(B, D, uint32_t(seed * 4 + 4))};
                    for (uint64_t step : {0u, 5u}) {
                        JestConfig cfg;
                        cfg.batch = 16;
                        cfg.chunks = 4;
                        cfg.temperature = tau;
                        cfg.score = kind;
                        cfg.loss = loss;
                        cfg.seed = seed;
                        cfg.mode = SelectMode::gathered;
                        const Selection g = run_selector(*be, *coll, &world, cfg, e, B, D, step);
                        cfg.mode = SelectMode::sharded;
                        // Row tiles of 3 (the last one short) on the ranks, one tile alone:
                        // the tiled score matrix is the same numbers.
                        const Selection s = run_selector(*be, *coll, &world, cfg, e, B, D, step, 3);
                        const Selection one = run_selector(*be, *single, nullptr, cfg, e, B, D, step);
                        const std::string what = std::string(loss_kind_name(loss)) + " " + jest::score_kind_name(kind) +
                                                 " tau " + std::to_string(tau) + " seed " + std::to_string(seed) +
                                                 " step " + std::to_string(step) + " P " + std::to_string(P);
                        EXPECT_EQ(g.indices, s.indices) << what;
                        EXPECT_EQ(g.indices, one.indices) << what;
                        EXPECT_EQ(g.batch_score, s.batch_score) << what;
                        EXPECT_EQ(g.batch_score, one.batch_score) << what;
                        EXPECT_EQ(std::set<int64_t>(g.indices.begin(), g.indices.end()).size(), 16u) << what;
                        mismatches += g.indices != s.indices || g.indices != one.indices;
                        ++cases;
                    }
                }
    // The baselines go through the same code path.
    const Embeddings e{dyadic_rows(B, D, 91), dyadic_rows(B, D, 92), dyadic_rows(B, D, 93), dyadic_rows(B, D, 94)};
    for (SelectMethod m : {SelectMethod::independent_topk, SelectMethod::independent_sampled, SelectMethod::uniform}) {
        JestConfig cfg;
        cfg.batch = 16;
        cfg.chunks = 4;
        cfg.method = m;
        cfg.seed = 3;
        cfg.mode = SelectMode::sharded;
        const Selection s = run_selector(*be, *coll, &world, cfg, e, B, D, 2);
        cfg.mode = SelectMode::gathered;
        const Selection g = run_selector(*be, *coll, &world, cfg, e, B, D, 2);
        const Selection one = run_selector(*be, *single, nullptr, cfg, e, B, D, 2);
        EXPECT_EQ(s.indices, g.indices) << jest::select_method_name(m);
        EXPECT_EQ(s.indices, one.indices) << jest::select_method_name(m);
        ++cases;
    }
    // And every rank holds the same list (compare with rank 0's).
    if (world.rank() == 0) std::printf("  %d cases on %d rank(s), %d mismatches\n", cases, P, mismatches);
}

TEST(JestDistributed, ExchangeDeliversTheSelectedExamples) {
    const Communicator world = Communicator::world();
    const int P = world.size(), r = world.rank();
    const int64_t B = 64, Bl = B / P, H = 3, C = 2, T = 5;
    auto image_byte = [](int64_t g, int64_t k) { return uint8_t((g * 31 + k * 7) & 0xff); };
    io::Batch local;
    local.epoch = 2;
    local.step = 9;
    local.offset = r * Bl;
    local.size = Bl;
    local.image_size = int(H);
    local.channels = int(C);
    local.context_length = int(T);
    for (int64_t i = 0; i < Bl; ++i) {
        const int64_t g = r * Bl + i;
        for (int64_t k = 0; k < H * H * C; ++k) local.images.push_back(image_byte(g, k));
        for (int64_t t = 0; t < T; ++t) local.tokens.push_back(int32_t(g * 100 + t));
        local.labels.push_back(int32_t(g % 10));
        local.corrupted.push_back(uint8_t(g % 3 == 0));
        local.indices.push_back(1000000 + g * 17);
    }
    for (uint64_t seed : {4u, 5u}) {
        // A selection as the sampler makes them: b distinct positions in some order.
        std::vector<int64_t> perm(B);
        for (int64_t i = 0; i < B; ++i) perm[size_t(i)] = i;
        std::mt19937 gen{static_cast<uint32_t>(seed)};
        std::shuffle(perm.begin(), perm.end(), gen);
        for (int64_t b : {int64_t(16), B}) {
            const std::vector<int64_t> sel(perm.begin(), perm.begin() + b);
            const io::Batch mine = exchange_selected(local, sel, B, world);
            const int64_t bl = b / P;
            EXPECT_EQ(mine.size, bl);
            EXPECT_EQ(mine.offset, r * bl);
            EXPECT_EQ(mine.epoch, 2);
            EXPECT_EQ(mine.step, 9);
            EXPECT_EQ(int64_t(mine.images.size()), bl * H * H * C);
            EXPECT_EQ(int64_t(mine.tokens.size()), bl * T);
            int bad = 0;
            for (int64_t j = 0; j < bl && j < mine.size; ++j) {
                const int64_t g = sel[size_t(r * bl + j)];
                for (int64_t k = 0; k < H * H * C; ++k) bad += mine.images[size_t(j * H * H * C + k)] != image_byte(g, k);
                for (int64_t t = 0; t < T; ++t) bad += mine.tokens[size_t(j * T + t)] != int32_t(g * 100 + t);
                bad += mine.labels[size_t(j)] != int32_t(g % 10);
                bad += mine.corrupted[size_t(j)] != uint8_t(g % 3 == 0);
                bad += mine.indices[size_t(j)] != 1000000 + g * 17;
            }
            EXPECT_EQ(bad, 0) << "rank " << r << " b " << b;
        }
    }
    // Variable-count all-gather: rank p contributes p+1 rows of 3 columns.
    std::vector<float> rows(size_t((r + 1) * 3));
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(r * 100 + int(i));
    std::vector<int64_t> counts;
    const std::vector<float> all = allgather_rows(rows.data(), r + 1, 3, world, &counts);
    EXPECT_EQ(int64_t(all.size()), int64_t(P) * (P + 1) / 2 * 3);
    size_t o = 0;
    for (int p = 0; p < P; ++p) {
        EXPECT_EQ(counts[size_t(p)], p + 1);
        for (int i = 0; i < (p + 1) * 3 && o < all.size(); ++i) EXPECT_EQ(all[o++], float(p * 100 + i));
    }
}

}  // namespace
}  // namespace curaclip
