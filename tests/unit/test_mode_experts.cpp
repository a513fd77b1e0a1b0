// MoDE experts: node-group splits, expert rows, routing weights against a hand
// computation, and the INI rewrite of train-experts.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "mode/ensemble.h"
#include "mode/experts.h"
#include "mode/routing.h"
#include "train/train_experts.h"

namespace curaclip::mode {
namespace {

// ranks_per_node[k] ranks on node k, world ranks in node order.
std::vector<int> nodes_of(const std::vector<int>& ranks_per_node) {
    std::vector<int> out;
    for (size_t k = 0; k < ranks_per_node.size(); ++k)
        for (int i = 0; i < ranks_per_node[k]; ++i) out.push_back(int(100 + k));  // any ids
    return out;
}

TEST(NodeGroups, WholeNodesWhenThereAreAtLeastAsManyNodesAsExperts) {
    // 4 nodes x 4 ranks, 2 experts: 2 nodes each.
    NodeGroupPlan p = plan_node_groups(nodes_of({4, 4, 4, 4}), 2);
    EXPECT_EQ(p.groups, 2);
    EXPECT_TRUE(p.whole_nodes);
    EXPECT_EQ(p.group_of_rank, (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
    EXPECT_EQ(p.experts, (std::vector<std::vector<int>>{{0}, {1}}));
    // 5 nodes x 2 ranks, 2 experts: 2 and 3 whole nodes (floor / ceil of 5/2).
    p = plan_node_groups(nodes_of({2, 2, 2, 2, 2}), 2);
    EXPECT_TRUE(p.whole_nodes);
    EXPECT_EQ(p.group_of_rank, (std::vector<int>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1}));
    // 4 nodes x 8 ranks, 4 experts: one node each.
    p = plan_node_groups(nodes_of({8, 8, 8, 8}), 4);
    for (int r = 0; r < 32; ++r) EXPECT_EQ(p.group_of_rank[size_t(r)], r / 8) << r;
    // Nodes of different sizes still go whole.
    p = plan_node_groups(nodes_of({1, 3, 2}), 3);
    EXPECT_EQ(p.group_of_rank, (std::vector<int>{0, 1, 1, 1, 2, 2}));
}

TEST(NodeGroups, ContiguousRanksWhenThereAreFewerNodesThanExperts) {
    // 1 node x 4 ranks, 2 experts.
    NodeGroupPlan p = plan_node_groups(nodes_of({4}), 2);
    EXPECT_FALSE(p.whole_nodes);
    EXPECT_EQ(p.group_of_rank, (std::vector<int>{0, 0, 1, 1}));
    // 2 nodes x 4 ranks, 4 experts: 2 ranks each, contiguous.
    p = plan_node_groups(nodes_of({4, 4}), 4);
    EXPECT_FALSE(p.whole_nodes);
    EXPECT_EQ(p.group_of_rank, (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3}));
    // 1 node x 6 ranks, 4 experts: 1 or 2 ranks each, every group non-empty.
    p = plan_node_groups(nodes_of({6}), 4);
    EXPECT_EQ(p.group_of_rank, (std::vector<int>{0, 0, 1, 2, 2, 3}));
}

TEST(NodeGroups, FewerRanksThanExpertsTrainSeveralInTurn) {
    NodeGroupPlan p = plan_node_groups(nodes_of({2}), 4);
    EXPECT_EQ(p.groups, 2);
    EXPECT_EQ(p.group_of_rank, (std::vector<int>{0, 1}));
    EXPECT_EQ(p.experts, (std::vector<std::vector<int>>{{0, 2}, {1, 3}}));
    p = plan_node_groups(nodes_of({1}), 3);
    EXPECT_EQ(p.groups, 1);
    EXPECT_EQ(p.experts, (std::vector<std::vector<int>>{{0, 1, 2}}));
    // 3 single-rank nodes, 5 experts: whole nodes (one rank each), 2+2+1 experts.
    p = plan_node_groups(nodes_of({1, 1, 1}), 5);
    EXPECT_TRUE(p.whole_nodes);
    EXPECT_EQ(p.experts, (std::vector<std::vector<int>>{{0, 3}, {1, 4}, {2}}));
    EXPECT_THROW(plan_node_groups({}, 2), Error);
    EXPECT_THROW(plan_node_groups({0}, 0), Error);
}

TEST(ExpertRows, OwnClusterPlusTheOutOfClusterShare) {
    std::vector<int32_t> expert(1000);
    for (size_t i = 0; i < expert.size(); ++i) expert[i] = int32_t((i * 7) % 3 == 0 ? 0 : (i % 2 ? 1 : 2));
    int64_t own = 0;
    for (int32_t e : expert) own += e == 1;
    const std::vector<int64_t> rows = expert_rows(expert, 3, 1, 0.02, 9);
    const int64_t share = std::llround(0.02 * double(own));
    EXPECT_EQ(int64_t(rows.size()), own + share);
    int64_t outside = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
        if (i) {
            EXPECT_LT(rows[i - 1], rows[i]);  // sorted, distinct
        }
        outside += expert[size_t(rows[i])] != 1;
    }
    EXPECT_EQ(outside, share);
    EXPECT_EQ(rows, expert_rows(expert, 3, 1, 0.02, 9));   // deterministic
    EXPECT_NE(rows, expert_rows(expert, 3, 1, 0.02, 10));  // seeded
    EXPECT_EQ(int64_t(expert_rows(expert, 3, 1, 0.0, 9).size()), own);
    EXPECT_THROW(expert_rows(expert, 3, 3, 0.02, 9), Error);   // no expert 3
    EXPECT_THROW(expert_rows(expert, 3, 1, -0.1, 9), Error);
}

TEST(Routing, PaperWeightsEqualAHandComputation) {
    // 2-D centers: fine 0, 1 -> expert 0; fine 2 -> expert 1.
    const float centers[] = {1, 0, 0.8f, 0.6f, 0, 1};
    const int32_t f2e[] = {0, 0, 1};
    const RoutingCenters c{3, 2, 2, centers, f2e};
    // Two class embeddings: (1,0) is nearest fine 0 (d^2 = 0); (0.6,0.8) is nearest
    // fine 1 (d^2 = 0.04 + 0.04 = 0.08; fine 2: 0.36 + 0.04 = 0.4).
    const float task[] = {1, 0, 0.6f, 0.8f};
    RoutingOptions o;  // paper, lambda 0.2
    std::vector<double> w = routing_weights(task, 2, c, o);
    const double s0 = std::exp(0.0) + std::exp(-0.08 / 0.2), s1 = 0.0;
    const double p0 = std::exp(s0) / (std::exp(s0) + std::exp(s1));
    ASSERT_EQ(w.size(), 2u);
    EXPECT_NEAR(w[0], p0, 1e-6);
    EXPECT_NEAR(w[1], 1 - p0, 1e-6);
    // A third class at (0.1, 0.99): nearest fine 2, d^2 = 0.01 + 0.0001.
    const float task3[] = {1, 0, 0.6f, 0.8f, 0.1f, 0.99f};
    w = routing_weights(task3, 3, c, o);
    const double t1 = std::exp(-(0.01 + 0.0001) / 0.2);
    EXPECT_NEAR(w[0], std::exp(s0) / (std::exp(s0) + std::exp(t1)), 1e-6);
    // The temperature divides the logits.
    o.temperature = 2;
    w = routing_weights(task3, 3, c, o);
    EXPECT_NEAR(w[0], std::exp(s0 / 2) / (std::exp(s0 / 2) + std::exp(t1 / 2)), 1e-6);
}

TEST(Routing, RouteTextsNamesTheNearestFineCenterItsExpertAndDistance) {
    const float centers[] = {1, 0, 0.8f, 0.6f, 0, 1};
    const int32_t f2e[] = {0, 0, 1};
    const RoutingCenters c{3, 2, 2, centers, f2e};
    const float task[] = {1, 0, 0.6f, 0.8f, 0.1f, 0.99f};
    const std::vector<TextRoute> r = route_texts(task, 3, c);
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0].fine, 0);
    EXPECT_EQ(r[0].expert, 0);
    EXPECT_NEAR(r[0].d2, 0.0, 1e-12);
    EXPECT_EQ(r[1].fine, 1);
    EXPECT_EQ(r[1].expert, 0);
    EXPECT_NEAR(r[1].d2, 0.08, 1e-6);
    EXPECT_EQ(r[2].fine, 2);
    EXPECT_EQ(r[2].expert, 1);
    EXPECT_NEAR(r[2].d2, 0.0101, 1e-6);
    // A fine center mapped to no valid expert is refused.
    const int32_t bad[] = {0, 0, 5};
    EXPECT_THROW(route_texts(task, 3, RoutingCenters{3, 2, 2, centers, bad}), Error);
}

TEST(Routing, MetaClipScheduleEqualsTheReleasedFormula) {
    const float centers[] = {1, 0, 0.8f, 0.6f, 0, 1};
    const int32_t f2e[] = {0, 0, 1};
    const RoutingCenters c{3, 2, 2, centers, f2e};
    const float task[] = {1, 0, 0.6f, 0.8f, 0.1f, 0.99f};
    RoutingOptions o;
    o.schedule = RoutingSchedule::metaclip;
    const std::vector<double> w = routing_weights(task, 3, c, o);
    // K = 3 < 10: add = exp(0.5 - sqrt 3); mul = 5 * log10(10) = 5; softmax(w / 8).
    const double add = std::exp(0.5 - std::sqrt(3.0)), mul = 5.0;
    const double w0 = std::exp((add - 0.0) * mul) + std::exp((add - std::sqrt(0.08)) * mul);
    const double w1 = std::exp((add - std::sqrt(0.0101)) * mul);
    EXPECT_NEAR(w[0], std::exp(w0 / 8) / (std::exp(w0 / 8) + std::exp(w1 / 8)), 1e-6);
    // Per-query routing: each query its own task (K = 1).
    const std::vector<double> q = routing_weights_per_query(task, 3, c, o);
    ASSERT_EQ(q.size(), 6u);
    for (int i = 0; i < 3; ++i) {
        const std::vector<double> one = routing_weights(task + 2 * i, 1, c, o);
        EXPECT_DOUBLE_EQ(q[size_t(2 * i)], one[0]);
        EXPECT_DOUBLE_EQ(q[size_t(2 * i + 1)], one[1]);
    }
    EXPECT_GT(q[0], 0.5);  // (1,0) routes to expert 0
    EXPECT_LT(q[4], 0.5);  // (0.1,0.99) routes to expert 1
    EXPECT_THROW(parse_routing_schedule("sharp"), Error);
}

TEST(Ensemble, ZeroShotScoresMixPerTaskOrPerClassName) {
    // 2 experts, 2 images x 3 classes.
    const std::vector<std::vector<float>> S = {{1, 2, 3, 4, 5, 6}, {10, 20, 30, 40, 50, 60}};
    // One task: every column mixed by the same weights.
    const std::vector<float> task = mix_zero_shot_scores(S, 2, 3, {0.25, 0.75});
    for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(task[i], 0.25f * S[0][i] + 0.75f * S[1][i]);
    // Each class name its own task: column l mixed by row l of [K, n].
    const std::vector<float> cls = mix_zero_shot_scores(S, 2, 3, {1, 0, 0, 1, 0.5, 0.5});
    EXPECT_EQ(cls, (std::vector<float>{1, 20, 16.5f, 4, 50, 33}));
    // Neither n nor K*n weights, or an expert of the wrong size: an internal error.
    EXPECT_THROW(mix_zero_shot_scores(S, 2, 3, {1, 0, 0}), Error);
    EXPECT_THROW(mix_zero_shot_scores({{1, 2}, {3}}, 1, 2, {0.5, 0.5}), Error);
    EXPECT_EQ(parse_routing_scope("class"), RoutingScope::per_class);
    EXPECT_THROW(parse_routing_scope("image"), Error);
}

TEST(TrainExperts, IniSetReplacesOrAddsAKey) {
    const std::string t = "[mode]\nassign = a.h5\nexpert = -1\n[train]\nout = runs/x\nsteps = 5\n";
    EXPECT_EQ(ini_set(t, "mode", "expert", "3"), "[mode]\nassign = a.h5\nexpert = 3\n[train]\nout = runs/x\nsteps = 5\n");
    EXPECT_EQ(ini_set(t, "train", "out", "runs/x/expert_3"),
              "[mode]\nassign = a.h5\nexpert = -1\n[train]\nout = runs/x/expert_3\nsteps = 5\n");
    EXPECT_EQ(ini_set("[train]\nsteps = 5\n", "mode", "expert", "1"), "[train]\nsteps = 5\n[mode]\nexpert = 1\n");
    EXPECT_EQ(expert_dir("runs/m", 2), "runs/m/expert_2");
}

}  // namespace
}  // namespace curaclip::mode
