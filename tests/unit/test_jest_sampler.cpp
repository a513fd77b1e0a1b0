// JEST scoring and sampling on one process: the exact conditional scores, the
// Gumbel-top-k law, the joint sampler against independent selection, the
// learnability row blocks against float64, and configuration errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "jest/config.h"
#include "jest/learnability.h"
#include "jest/sampler.h"
#include "jest/selector.h"
#include "mpi/collectives.h"

namespace curaclip::jest {
namespace {

std::vector<float> random_matrix(int64_t n, double lo, double hi, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> d(lo, hi);
    std::vector<float> m(size_t(n * n));
    for (auto& x : m) x = float(d(gen));
    return m;
}

ScoreBlock sigmoid_block(std::vector<float> L, int64_t B) {
    ScoreBlock blk;
    blk.loss = LossKind::sigmoid;
    blk.B = B;
    blk.rows = B;
    blk.L = std::move(L);
    return blk;
}

double lse(const std::vector<double>& v) {
    double m = -INFINITY, s = 0;
    for (double x : v) m = std::max(m, x);
    for (double x : v) s += std::exp(x - m);
    return m + std::log(s);
}

TEST(JestScores, SigmoidConditionalScoresMatchBruteForce) {
    const int64_t B = 40;
    const ScoreBlock blk = sigmoid_block(random_matrix(B, -3.0, 5.0, 7), B);
    std::mt19937 gen(3);
    for (int64_t nS : {0, 1, 7, 20}) {
        std::vector<int64_t> all(B);
        for (int64_t i = 0; i < B; ++i) all[size_t(i)] = i;
        std::shuffle(all.begin(), all.end(), gen);
        const std::vector<int64_t> S(all.begin(), all.begin() + nS);
        const auto got = conditional_scores(blk, S);
        ASSERT_EQ(int64_t(got.size()), B);
        double err = 0;
        for (int64_t c = 0; c < B; ++c) {
            double want = blk.L[size_t(c * B + c)];
            for (int64_t k : S) want += double(blk.L[size_t(k * B + c)]) + double(blk.L[size_t(c * B + k)]);
            err = std::max(err, std::abs(got[size_t(c)] - want));
        }
        EXPECT_LE(err, 1e-9) << "|S| = " << nS;  // fixed-point quantization only
    }
}

TEST(JestScores, SoftmaxConditionalScoresMatchBruteForce) {
    const int64_t B = 30;
    for (ScoreKind kind : {ScoreKind::learnability, ScoreKind::hard_learner, ScoreKind::easy_reference}) {
        ScoreBlock blk;
        blk.loss = LossKind::softmax;
        blk.kind = kind;
        blk.B = B;
        blk.rows = B;
        // logits exp(t) x.y with |x.y| <= 1: t = ln 100 spreads them over [-100, 100].
        if (blk.uses_learner()) blk.learner = random_matrix(B, -100.0, 100.0, 11);
        if (blk.uses_reference()) blk.reference = random_matrix(B, -14.0, 14.0, 12);
        std::mt19937 gen(5);
        for (int64_t nS : {0, 1, 6, 17}) {
            std::vector<int64_t> all(B);
            for (int64_t i = 0; i < B; ++i) all[size_t(i)] = i;
            std::shuffle(all.begin(), all.end(), gen);
            std::vector<int64_t> S(all.begin(), all.begin() + nS);
            const auto got = conditional_scores(blk, S);
            if (nS == 0) S = std::vector<int64_t>(all);  // s(c|∅): loss of c in the whole super-batch
            double err = 0;
            for (int64_t c = 0; c < B; ++c) {
                std::set<int64_t> set(S.begin(), S.end());
                set.insert(c);
                double want = 0;
                for (int m = 0; m < 2; ++m) {
                    const std::vector<float>& l = m == 0 ? blk.learner : blk.reference;
                    if (l.empty()) continue;
                    std::vector<double> row, col;
                    for (int64_t k : set) {
                        row.push_back(l[size_t(c * B + k)]);
                        col.push_back(l[size_t(k * B + c)]);
                    }
                    const double loss = -double(l[size_t(c * B + c)]) + 0.5 * (lse(row) + lse(col));
                    want += m == 0 ? loss : -loss;
                }
                err = std::max(err, std::abs(got[size_t(c)] - want));
            }
            // s(c|∅) sums its 2 B^2 exps in float (sampler.cpp: the O(B^2) first pass):
            // ~1e-7 relative per term, below the float32 rounding of the logits.
            EXPECT_LE(err, nS == 0 ? 1e-7 : 1e-9) << score_kind_name(kind) << " |S| = " << nS;
        }
    }
}

// Gumbel-top-k draws without replacement with probability ∝ exp(s/τ): over many steps, the
// ordered outcome (first, second) of 5 choose 2 follows p_i p_j / (1 - p_i).
TEST(JestGumbel, TopKIsSequentialSamplingWithoutReplacement) {
    const std::vector<double> s = {0.0, 0.5, -1.0, 1.2, 0.3};
    const double tau = 0.8;
    const int n = 5, draws = 40000;
    std::vector<double> p(n);
    double z = 0;
    for (int i = 0; i < n; ++i) z += p[size_t(i)] = std::exp(s[size_t(i)] / tau);
    for (auto& x : p) x /= z;
    std::map<std::pair<int64_t, int64_t>, int> ordered;
    std::map<std::pair<int64_t, int64_t>, int> unordered;
    for (int t = 0; t < draws; ++t) {
        const Philox rng(20240611, RngPurpose::jest, uint64_t(t));
        const auto k = gumbel_top_k(s, {}, 2, tau, rng, 0);
        ASSERT_EQ(k.size(), 2u);
        ++ordered[{k[0], k[1]}];
        ++unordered[{std::min(k[0], k[1]), std::max(k[0], k[1])}];
    }
    double chi_o = 0, chi_u = 0;
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
            if (i == j) continue;
            const double e = draws * p[size_t(i)] * p[size_t(j)] / (1 - p[size_t(i)]);
            const double o = ordered[{i, j}];
            chi_o += (o - e) * (o - e) / e;
            if (i < j) {
                const double eu = e + draws * p[size_t(j)] * p[size_t(i)] / (1 - p[size_t(j)]);
                const double ou = unordered[{i, j}];
                chi_u += (ou - eu) * (ou - eu) / eu;
            }
        }
    // Critical values at p = 0.001: chi2(19) = 43.82, chi2(9) = 27.88.
    std::printf("  5 choose 2, %d draws: chi2 ordered %.2f (df 19), unordered %.2f (df 9)\n", draws, chi_o, chi_u);
    EXPECT_LT(chi_o, 43.82);
    EXPECT_LT(chi_u, 27.88);

    // Exclusion, order and ties: no noise -> decreasing score, ties to the smaller index.
    const Philox rng(1, RngPurpose::jest, 0);
    EXPECT_EQ(gumbel_top_k({1, 3, 3, 2, 5}, {0, 0, 0, 0, 1}, 3, 1.0, rng, 0, false),
              (std::vector<int64_t>{1, 2, 3}));
    EXPECT_THROW(gumbel_top_k({1, 2}, {1, 0}, 2, 1.0, rng, 0), Error);
}

// A block structure where a group is learnable only jointly: its members score 0 alone
// (the others 0.1) but +2 with every other member (each direction). Independent selection
// never takes the group; the joint sampler finds it once one member is in.
TEST(JestSampler, JointFindsTheJointlyLearnableBatch) {
    const int64_t B = 32, b = 8, G = 16;
    std::vector<float> L(size_t(B * B), 0.0f);
    auto in_group = [](int64_t i) { return i % 2 == 1; };  // 16 odd indices
    for (int64_t i = 0; i < B; ++i)
        for (int64_t j = 0; j < B; ++j)
            if (i == j) L[size_t(i * B + i)] = in_group(i) ? 0.0f : 0.1f;
            else if (in_group(i) && in_group(j)) L[size_t(i * B + j)] = 2.0f;
    const ScoreBlock blk = sigmoid_block(L, B);
    const int trials = 400;
    std::printf("  B=%lld b=%lld, group of %lld learnable only jointly; over %d steps:\n", (long long)B,
                (long long)b, (long long)G, trials);
    std::printf("  %-22s %-7s %-14s %-12s %-12s\n", "method", "chunks", "all-8-in-group", "group share",
                "batch score");
    double freq[5] = {};
    int row = 0;
    for (auto [method, chunks] : {std::pair{SelectMethod::joint, 8}, std::pair{SelectMethod::joint, 4},
                                  std::pair{SelectMethod::independent_topk, 1},
                                  std::pair{SelectMethod::independent_sampled, 1},
                                  std::pair{SelectMethod::uniform, 1}}) {
        JestConfig cfg;
        cfg.batch = b;
        cfg.chunks = chunks;
        cfg.method = method;
        cfg.seed = 99;
        Sampler sampler(cfg, B, nullptr);
        int hits = 0;
        double share = 0, score = 0;
        for (int t = 0; t < trials; ++t) {
            const Selection sel = sampler.select(blk, uint64_t(t));
            EXPECT_EQ(int64_t(sel.indices.size()), b);
            EXPECT_EQ(std::set<int64_t>(sel.indices.begin(), sel.indices.end()).size(), size_t(b));
            const auto ing = std::count_if(sel.indices.begin(), sel.indices.end(), in_group);
            hits += ing == b;
            share += double(ing) / double(b) / trials;
            score += sel.batch_score / trials;
        }
        freq[row++] = double(hits) / trials;
        std::printf("  %-22s %-7d %-14.3f %-12.3f %-12.3f\n", select_method_name(method), chunks,
                    double(hits) / trials, share, score);
    }
    EXPECT_GT(freq[0], 0.3);    // joint, chunks of 1
    EXPECT_GT(freq[1], 0.1);    // joint, chunks of 2
    EXPECT_EQ(freq[2], 0.0);    // independent top-k: never
    EXPECT_LT(freq[3], 0.05);   // independent sampled: C(16,8)/C(32,8)-ish
    EXPECT_LT(freq[4], 0.05);   // uniform
    EXPECT_GT(freq[0], 5 * std::max(freq[3], 0.01));
}

TEST(JestSampler, SelectionIsValidAndReproducible) {
    const int64_t B = 64;
    const ScoreBlock blk = sigmoid_block(random_matrix(B, -1.0, 1.0, 21), B);
    for (SelectMethod m : {SelectMethod::joint, SelectMethod::independent_topk,
                           SelectMethod::independent_sampled, SelectMethod::uniform}) {
        JestConfig cfg;
        cfg.batch = 16;
        cfg.chunks = 4;
        cfg.method = m;
        cfg.seed = 5;
        Sampler s(cfg, B, nullptr);
        const Selection a = s.select(blk, 3), b2 = s.select(blk, 3), c = s.select(blk, 4);
        EXPECT_EQ(a.indices, b2.indices) << select_method_name(m);
        if (m != SelectMethod::independent_topk) {
            EXPECT_NE(a.indices, c.indices) << select_method_name(m);
        }
        std::set<int64_t> u(a.indices.begin(), a.indices.end());
        EXPECT_EQ(u.size(), 16u);
        EXPECT_GE(*u.begin(), 0);
        EXPECT_LT(*u.rbegin(), B);
        // batch score = (1/b) Σ_{i,j∈S} L[i,j]
        double want = 0;
        for (int64_t i : a.indices)
            for (int64_t j : a.indices) want += blk.L[size_t(i * B + j)];
        EXPECT_NEAR(a.batch_score, want / 16, 1e-9);
    }
    ScoreBlock bad = blk;
    bad.L[77] = NAN;
    JestConfig cfg;
    cfg.batch = 16;
    cfg.chunks = 4;
    Sampler s(cfg, B, nullptr);
    EXPECT_THROW(s.select(bad, 0), Error);
}

// Row blocks of the learnability matrix (f32 backend) against float64 on the host.
TEST(JestLearnability, RowBlocksMatchFloat64) {
    const int64_t B = 24, D = 16;
    std::mt19937 gen(8);
    std::normal_distribution<double> nd;
    auto unit_rows = [&]() {
        std::vector<double> x(size_t(B * D));
        for (int64_t i = 0; i < B; ++i) {
            double s = 0;
            for (int64_t k = 0; k < D; ++k) s += std::pow(x[size_t(i * D + k)] = nd(gen), 2);
            for (int64_t k = 0; k < D; ++k) x[size_t(i * D + k)] /= std::sqrt(s);
        }
        return x;
    };
    const auto li = unit_rows(), lt = unit_rows(), ri = unit_rows(), rt = unit_rows();
    const double tl = std::log(10.0), bl = -10.0, tr = std::log(100.0), br = -5.0;
    auto nll = [&](const std::vector<double>& img, const std::vector<double>& txt, double t, double b, int64_t i,
                   int64_t j) {
        double dot = 0;
        for (int64_t k = 0; k < D; ++k) dot += img[size_t(i * D + k)] * txt[size_t(j * D + k)];
        const double z = i == j ? 1 : -1, x = -z * (std::exp(t) * dot + b);
        return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
    };
    auto logit = [&](const std::vector<double>& img, const std::vector<double>& txt, double t, int64_t i, int64_t j) {
        double dot = 0;
        for (int64_t k = 0; k < D; ++k) dot += img[size_t(i * D + k)] * txt[size_t(j * D + k)];
        return std::exp(t) * dot;
    };
    auto be = make_backend("cpu");
    auto coll = make_single_process_collectives(*be);
    Arena arena(*be, 1 << 20, "test");
    auto up = [&](const std::vector<double>& v, Shape s) {
        Tensor t = arena.alloc(s, be->dtype());
        be->upload(t, v.data());
        return t;
    };
    ScoringInputs in{up(li, {B, D}), up(lt, {B, D}), up(ri, {B, D}), up(rt, {B, D}), up({tl}, {1}),
                     up({bl}, {1}),  up({tr}, {1}),  up({br}, {1})};
    // tile_rows 0: one tile here (B^2 is small); 5: five tiles, the last one short.
    for (int64_t tile : {int64_t(0), int64_t(5)})
    for (LossKind loss : {LossKind::sigmoid, LossKind::softmax})
        for (ScoreKind kind : {ScoreKind::learnability, ScoreKind::hard_learner, ScoreKind::easy_reference}) {
            LearnabilityMatrix lm(*be, *coll, loss, kind, B, D, tile);
            ScoreBlock blk;
            lm.compute(in, blk);
            // The transposes and the statistics of the tile pass.
            ASSERT_TRUE(blk.stats_valid);
            EXPECT_TRUE(blk.all_finite);
            double mx = 0;
            for (const std::vector<float>* m : {&blk.L, &blk.learner, &blk.reference})
                for (float x : *m) mx = std::max(mx, double(std::fabs(x)));
            EXPECT_EQ(blk.max_abs, mx);
            for (auto [m, mt] : {std::pair{&blk.L, &blk.LT}, std::pair{&blk.learner, &blk.learnerT},
                                 std::pair{&blk.reference, &blk.referenceT}}) {
                ASSERT_EQ(m->size(), mt->size());
                if (m->empty()) continue;
                for (int64_t i = 0; i < B; ++i)
                    for (int64_t j = 0; j < B; ++j) ASSERT_EQ((*m)[size_t(i * B + j)], (*mt)[size_t(j * B + i)]);
            }
            EXPECT_EQ(blk.B, B);
            EXPECT_EQ(blk.rows, B);
            double err = 0, ref = 0;
            for (int64_t i = 0; i < B; ++i)
                for (int64_t j = 0; j < B; ++j) {
                    if (loss == LossKind::sigmoid) {
                        const double a = nll(li, lt, tl, bl, i, j), r = nll(ri, rt, tr, br, i, j);
                        const double want = kind == ScoreKind::learnability ? a - r
                                            : kind == ScoreKind::hard_learner ? a : -r;
                        err = std::max(err, std::abs(blk.L[size_t(i * B + j)] - want));
                        ref = std::max(ref, std::abs(want));
                    } else {
                        if (blk.uses_learner()) {
                            const double w = logit(li, lt, tl, i, j);
                            err = std::max(err, std::abs(blk.learner[size_t(i * B + j)] - w));
                            ref = std::max(ref, std::abs(w));
                        }
                        if (blk.uses_reference()) {
                            const double w = logit(ri, rt, tr, i, j);
                            err = std::max(err, std::abs(blk.reference[size_t(i * B + j)] - w));
                            ref = std::max(ref, std::abs(w));
                        }
                        EXPECT_EQ(blk.learner.empty(), kind == ScoreKind::easy_reference);
                        EXPECT_EQ(blk.reference.empty(), kind == ScoreKind::hard_learner);
                    }
                }
            EXPECT_LE(err, 2e-6 * ref) << loss_kind_name(loss) << " " << score_kind_name(kind);
        }
    // The selector runs end to end on the same inputs.
    JestConfig cfg;
    cfg.batch = 8;
    cfg.chunks = 4;
    JestSelector sel(*be, *coll, nullptr, cfg, B, D);
    const Selection s = sel.select(in, 0);
    EXPECT_EQ(s.indices.size(), 8u);
}

// The sampler's two ways to read the chunk's columns (the block's transposes, or a gather
// from every row) and its two ways to get max|L| (the tile pass, or a scan) give exactly
// the same selections and batch scores.
TEST(JestSampler, TransposedAndGatheredColumnsSelectAlike) {
    const int64_t B = 96, D = 16;
    std::mt19937 gen(12);
    std::normal_distribution<double> nd;
    auto unit_rows = [&]() {
        std::vector<double> x(size_t(B * D));
        for (int64_t i = 0; i < B; ++i) {
            double s = 0;
            for (int64_t k = 0; k < D; ++k) s += std::pow(x[size_t(i * D + k)] = nd(gen), 2);
            for (int64_t k = 0; k < D; ++k) x[size_t(i * D + k)] /= std::sqrt(s);
        }
        return x;
    };
    auto be = make_backend("cpu");
    auto coll = make_single_process_collectives(*be);
    Arena arena(*be, 1 << 20, "test");
    auto up = [&](const std::vector<double>& v, Shape s) {
        Tensor t = arena.alloc(s, be->dtype());
        be->upload(t, v.data());
        return t;
    };
    ScoringInputs in{up(unit_rows(), {B, D}), up(unit_rows(), {B, D}), up(unit_rows(), {B, D}),
                     up(unit_rows(), {B, D}), up({std::log(10.0)}, {1}), up({-10.0}, {1}),
                     up({std::log(30.0)}, {1}), up({-8.0}, {1})};
    for (LossKind loss : {LossKind::sigmoid, LossKind::softmax}) {
        LearnabilityMatrix lm(*be, *coll, loss, ScoreKind::learnability, B, D, 7);
        ScoreBlock with;
        lm.compute(in, with);
        ScoreBlock without = with;
        without.LT.clear();
        without.learnerT.clear();
        without.referenceT.clear();
        without.stats_valid = false;
        for (SelectMethod m : {SelectMethod::joint, SelectMethod::independent_sampled, SelectMethod::uniform}) {
            JestConfig cfg;
            cfg.batch = 24;
            cfg.chunks = 6;
            cfg.method = m;
            cfg.loss = loss;
            cfg.seed = 4;
            for (SelectMode mode : {SelectMode::gathered, SelectMode::sharded}) {
                cfg.mode = mode;
                Sampler s(cfg, B, nullptr);
                for (uint64_t step : {0u, 9u}) {
                    const Selection a = s.select(with, step), b = s.select(without, step);
                    EXPECT_EQ(a.indices, b.indices) << loss_kind_name(loss) << " " << select_method_name(m);
                    EXPECT_EQ(a.batch_score, b.batch_score) << loss_kind_name(loss) << " " << select_method_name(m);
                    EXPECT_EQ(a.mean_self_score, b.mean_self_score);
                }
            }
        }
    }
}

TEST(JestConfig, ParsesAndValidates) {
    EXPECT_EQ(parse_score_kind("Learnability"), ScoreKind::learnability);
    EXPECT_EQ(parse_score_kind("hard"), ScoreKind::hard_learner);
    EXPECT_EQ(parse_score_kind("easy-reference"), ScoreKind::easy_reference);
    EXPECT_EQ(parse_select_mode("sharded"), SelectMode::sharded);
    EXPECT_EQ(parse_select_method("independent_topk"), SelectMethod::independent_topk);
    EXPECT_EQ(parse_select_method("uniform"), SelectMethod::uniform);
    EXPECT_THROW(parse_score_kind("learnable"), Error);
    EXPECT_THROW(parse_select_mode("scattered"), Error);
    EXPECT_THROW(parse_select_method("greedy"), Error);

    auto msg = [](const JestConfig& c, int64_t B, int P) -> std::string {
        try {
            c.validate(B, P);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    JestConfig c;  // f = 0.8, N = 16
    EXPECT_EQ(msg(c, 1280, 4), "");  // b = 256
    EXPECT_EQ(c.selected_batch(1280), 256);
    EXPECT_NE(msg(c, 16384, 1).find("nearest valid b: 3264 or 3280"), std::string::npos) << msg(c, 16384, 1);
    c.filter_ratio = 1.0;
    EXPECT_NE(msg(c, 1280, 4).find("filter ratio f must be in [0, 1)"), std::string::npos);
    c.filter_ratio = -0.1;
    EXPECT_NE(msg(c, 1280, 4).find("[0, 1)"), std::string::npos);
    c.filter_ratio = 0.8;
    c.batch = 24;
    c.chunks = 4;
    EXPECT_EQ(msg(c, 64, 4), "");
    EXPECT_NE(msg(c, 64, 16).find("divisible by the chunks N = 4 and the ranks P = 16"), std::string::npos);
    EXPECT_NE(msg(c, 63, 4).find("not divisible by the 4 ranks"), std::string::npos);
    c.batch = 18;
    EXPECT_NE(msg(c, 64, 1).find("must be divisible"), std::string::npos);
    c.batch = 128;
    EXPECT_NE(msg(c, 64, 1).find("must be in [1, B = 64]"), std::string::npos);
    c.batch = 16;
    c.temperature = 0;
    EXPECT_NE(msg(c, 64, 1).find("temperature"), std::string::npos);
    c.temperature = 1;
    c.chunks = 0;
    EXPECT_NE(msg(c, 64, 1).find("chunks"), std::string::npos);
    EXPECT_THROW(Sampler(c, 64, nullptr), Error);
}

}  // namespace
}  // namespace curaclip::jest
