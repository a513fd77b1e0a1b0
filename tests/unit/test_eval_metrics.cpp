// Zero-shot accuracy and retrieval recall: the score-function forms used by the
// MoDE ensemble agree with the embedding forms, and a hand-made case.
#include <gtest/gtest.h>


#include "core/philox.h"
#include "eval/metrics.h"

namespace curaclip {
namespace {

std::vector<float> random_rows(int64_t n, int64_t d, uint64_t seed) {
    Philox rng(seed, RngPurpose::test);
    std::vector<float> x(size_t(n * d));
    for (float& v : x) v = float(rng.normal());
    return x;
}

TEST(EvalMetrics, ScoredRetrievalEqualsEmbeddingRetrieval) {
    const int64_t n = 700, d = 8;  // more than one 512-row block
    const std::vector<float> img = random_rows(n, d, 1), txt = random_rows(n, d, 2);
    const RetrievalResult a = retrieval_recall(img, txt, d);
    const RetrievalResult b = retrieval_recall_scored(n, [&](bool text_queries, int64_t q0, int64_t m, float* out) {
        const std::vector<float>& q = text_queries ? txt : img;
        const std::vector<float>& it = text_queries ? img : txt;
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
                double s = 0;
                for (int64_t k = 0; k < d; ++k) s += double(q[size_t((q0 + i) * d + k)]) * it[size_t(j * d + k)];
                out[i * n + j] = 2.0f * float(s);  // a positive scale changes no rank
            }
    });
    EXPECT_EQ(a.n, b.n);
    EXPECT_DOUBLE_EQ(a.image_to_text_r1, b.image_to_text_r1);
    EXPECT_DOUBLE_EQ(a.image_to_text_r10, b.image_to_text_r10);
    EXPECT_DOUBLE_EQ(a.text_to_image_r5, b.text_to_image_r5);
    EXPECT_GT(a.image_to_text_r10, 0.0);
}

TEST(EvalMetrics, AccuracyFromLogits) {
    // 3 examples, 6 classes: right at rank 0, at rank 2, at rank 5.
    const std::vector<float> logits = {9, 1, 1, 1, 1, 1,  //
                                       3, 2, 1, 0, 0, 0,  //
                                       5, 4, 3, 2, 1, 0};
    const std::vector<int32_t> labels = {0, 2, 5};
    const ZeroShotResult r = zero_shot_accuracy_from_logits(logits, labels, 6);
    EXPECT_EQ(r.n, 3);
    EXPECT_DOUBLE_EQ(r.top1, 1.0 / 3);
    EXPECT_DOUBLE_EQ(r.top5, 2.0 / 3);
    EXPECT_THROW(zero_shot_accuracy_from_logits(logits, labels, 5), Error);
}

}  // namespace
}  // namespace curaclip
