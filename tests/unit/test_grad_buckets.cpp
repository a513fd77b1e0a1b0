// Gradient buckets (src/train/grad_buckets.h): the planner on synthetic layouts, the
// spans of a real ParameterSet, and the reducer driven by a real backward pass with a
// recording Collectives (which buckets start when, and that together they cover every
// gradient exactly once). The numerics over MPI are tests/mpi/test_grad_buckets.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "model_fixtures.h"
#include "backend/registry.h"
#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "train/grad_buckets.h"

namespace curaclip {
namespace {

// n spans of `bytes` each, laid out in parameter order, listed last-first (backward order).
std::vector<GradSpan> reversed_layout(const std::vector<size_t>& sizes) {
    std::vector<GradSpan> spans;
    size_t off = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
        spans.push_back({i, off, sizes[i]});
        off += sizes[i];
    }
    std::reverse(spans.begin(), spans.end());
    return spans;
}

// Every parameter exactly once, every bucket one contiguous range made of its spans.
void expect_valid_plan(const std::vector<GradBucket>& plan, const std::vector<GradSpan>& spans) {
    std::vector<size_t> span_of(spans.size() + 1, 0);
    std::multiset<size_t> seen;
    for (size_t k = 0; k < spans.size(); ++k) span_of[spans[k].param] = k;
    for (const GradBucket& b : plan) {
        size_t lo = SIZE_MAX, hi = 0, total = 0;
        for (size_t p : b.params) {
            seen.insert(p);
            const GradSpan& s = spans[span_of[p]];
            lo = std::min(lo, s.offset);
            hi = std::max(hi, s.offset + s.bytes);
            total += s.bytes;
        }
        EXPECT_EQ(b.offset, lo);
        EXPECT_EQ(b.bytes, hi - lo);
        EXPECT_EQ(total, b.bytes) << "bucket at " << b.offset << " has a hole";
    }
    EXPECT_EQ(seen.size(), spans.size());
    for (const GradSpan& s : spans) EXPECT_EQ(seen.count(s.param), 1u) << s.param;
}

TEST(GradBuckets, BackwardOrderFillsBucketsToTheCap) {
    const auto spans = reversed_layout({100, 300, 50, 50, 400, 10, 90, 200});
    const auto plan = plan_grad_buckets(spans, 250);
    expect_valid_plan(plan, spans);
    // 200+90 | 10+400 | 50+50+300 | 100 : each closes at the first size >= 250, the rest is the tail.
    ASSERT_EQ(plan.size(), 4u);
    EXPECT_EQ(plan[0].params, (std::vector<size_t>{7, 6}));
    EXPECT_EQ(plan[1].params, (std::vector<size_t>{5, 4}));
    EXPECT_EQ(plan[2].params, (std::vector<size_t>{3, 2, 1}));
    EXPECT_EQ(plan[3].params, (std::vector<size_t>{0}));
    for (size_t b = 0; b + 1 < plan.size(); ++b) EXPECT_GE(plan[b].bytes, 250u);
}

TEST(GradBuckets, ZeroCapIsOneBucketPerParameterAndHugeCapIsOne) {
    const auto spans = reversed_layout({8, 16, 24, 32});
    const auto each = plan_grad_buckets(spans, 0);
    expect_valid_plan(each, spans);
    EXPECT_EQ(each.size(), 4u);
    const auto one = plan_grad_buckets(spans, size_t(1) << 40);
    expect_valid_plan(one, spans);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].offset, 0u);
    EXPECT_EQ(one[0].bytes, 80u);
}

TEST(GradBuckets, ANonNeighbourStartsANewBucket) {
    // Memory: p0 p1 | p2 p3 | p4. Ready order: p4, then p1 p0 (a jump), then p3 p2 (another).
    const std::vector<GradSpan> spans = {{4, 400, 100}, {1, 100, 100}, {0, 0, 100}, {3, 300, 100}, {2, 200, 100}};
    const auto plan = plan_grad_buckets(spans, 1000);
    expect_valid_plan(plan, spans);
    ASSERT_EQ(plan.size(), 3u);
    EXPECT_EQ(plan[0].params, (std::vector<size_t>{4}));
    EXPECT_EQ(plan[1].params, (std::vector<size_t>{1, 0}));
    EXPECT_EQ(plan[2].params, (std::vector<size_t>{3, 2}));
    // Forward order (ascending addresses) also joins.
    const std::vector<GradSpan> fwd = {{0, 0, 10}, {1, 10, 20}, {2, 30, 30}};
    const auto plan2 = plan_grad_buckets(fwd, 1000);
    expect_valid_plan(plan2, fwd);
    EXPECT_EQ(plan2.size(), 1u);
}

// Collectives of "2 ranks" that only records what it is asked to do.
class RecordingCollectives final : public Collectives {
public:
    int rank() const override { return 0; }
    int size() const override { return 2; }
    void allgather(Tensor, Tensor) override { ADD_FAILURE() << "unexpected allgather"; }
    void reduce_scatter_sum(Tensor, Tensor) override { ADD_FAILURE() << "unexpected reduce_scatter"; }
    void allreduce_sum(Tensor) override { ADD_FAILURE() << "unexpected allreduce_sum"; }
    void allreduce_sum_host(double*, size_t) override {}
    void allreduce_sum_start(Tensor x) override { started.push_back(x); }
    void wait_all() override { ++waits; }
    std::vector<Tensor> started;
    int waits = 0;
};

void run_reducer_on_backward(const ModelConfig& cfg, ClipModel::Resolution res) {
    auto be = make_backend("cpu");
    const int64_t B = 4;
    ClipModel model(*be, cfg, B);
    model.init_weights(3);
    model.set_batch(B, res);
    const testing::Batch batch = testing::random_batch(cfg, B, 7);
    model.set_inputs(batch.images.data(), batch.tokens.data());
    RecordingCollectives coll;
    const size_t cap = 2048;  // small: many buckets even for this small model
    GradReducer reducer(model.params(), coll, cap);
    size_t notified = 0, started_at_first_ready = 0;
    for (int pass = 0; pass < 2; ++pass) {
        coll.started.clear();
        model.forward();
        model.params().zero_grad();
        model.zero_embedding_grads();
        be->fill(model.d_image_embeddings(), 0.01f);
        be->fill(model.d_text_embeddings(), -0.01f);
        reducer.begin();
        notified = 0;
        model.backward([&](size_t first, size_t count) {
            if (notified == 0) started_at_first_ready = coll.started.size();
            notified += count;
            reducer.ready(first, count);
        });
        const size_t before_finish = coll.started.size();
        reducer.finish();
        EXPECT_EQ(notified, model.params().size()) << "every parameter is announced once per backward";
        EXPECT_EQ(coll.waits, pass + 1);
        ASSERT_TRUE(reducer.planned());
        EXPECT_EQ(coll.started.size(), reducer.buckets().size());
        if (pass == 0) {
            EXPECT_EQ(before_finish, 0u) << "the first backward only records the order";
        } else {
            EXPECT_EQ(started_at_first_ready, 0u);
            // Everything but the last bucket (the text stem) starts inside the backward.
            EXPECT_GE(before_finish + 1, coll.started.size());
            EXPECT_EQ(reducer.started_early(), before_finish);
            EXPECT_GT(before_finish, 1u);
        }
        // The started ranges cover every gradient byte exactly once.
        std::vector<std::pair<const char*, const char*>> ranges;
        for (const Tensor& t : coll.started) {
            EXPECT_EQ(t.dtype, be->dtype());
            ranges.push_back({static_cast<const char*>(t.data), static_cast<const char*>(t.data) + t.bytes()});
        }
        std::sort(ranges.begin(), ranges.end());
        for (size_t k = 1; k < ranges.size(); ++k) EXPECT_LE(ranges[k - 1].second, ranges[k].first) << "overlap";
        for (const auto& p : model.params().all()) {
            const char* lo = static_cast<const char*>(p.grad.data);
            const char* hi = lo + p.grad.bytes();
            bool covered = false;
            for (const auto& r : ranges) covered |= r.first <= lo && hi <= r.second;
            EXPECT_TRUE(covered) << p.name;
        }
    }
    // Buckets (but the last of each run of neighbours) reach the cap.
    for (const GradBucket& b : reducer.buckets()) EXPECT_GT(b.bytes, 0u);
}

TEST(GradBuckets, ReducerFollowsTheBackwardPass) {
    run_reducer_on_backward(testing::small_model_config(8, 4, 3, false), ClipModel::Resolution::full);
    run_reducer_on_backward(testing::small_model_config(8, 4, 1, true), ClipModel::Resolution::full);
}

TEST(GradBuckets, ReducerFollowsAMultiResolutionBackward) {
    run_reducer_on_backward(testing::small_model_config(8, 2, 3, false, 4), ClipModel::Resolution::multires);
}

TEST(GradBuckets, SpansOfAParameterSetTileItsArena) {
    auto be = make_backend("cpu");
    ClipModel model(*be, testing::small_model_config(8, 4, 1, true), 2);
    const auto spans = grad_spans(model.params());
    ASSERT_EQ(spans.size(), model.params().size());
    size_t total = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
        EXPECT_EQ(spans[i].param, i);
        EXPECT_GE(spans[i].bytes, model.params()[i].grad.bytes());
        total += spans[i].bytes;
    }
    EXPECT_LE(total, model.params().grad_bytes());
    std::vector<GradSpan> sorted = spans;
    std::sort(sorted.begin(), sorted.end(), [](const GradSpan& a, const GradSpan& b) { return a.offset < b.offset; });
    EXPECT_EQ(sorted.front().offset, 0u);
    for (size_t k = 1; k < sorted.size(); ++k) EXPECT_EQ(sorted[k - 1].offset + sorted[k - 1].bytes, sorted[k].offset);
}

}  // namespace
}  // namespace curaclip
