// Evaluation metrics (src/eval/metrics.h, templates.h, evaluate.h) against hand
// computations and plainly written references: zero-shot top-1/top-5 and mean
// per-class recall (clip_benchmark), retrieval with several captions per image
// (clip_benchmark's zeroshot_retrieval), the score-function forms the MoDE
// ensemble uses, prompt template sets and files, and evaluate() end to end on a
// tiny dataset with /image_ids.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <numeric>
#include <set>

#include "backend/registry.h"
#include "core/philox.h"
#include "eval/embed.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "eval/templates.h"
#include "io/dataset_writer.h"
#include "model_fixtures.h"
#include "mpi/communicator.h"
#include "tests/common/test_files.h"
#include "tokenizer/bpe_tokenizer.h"

namespace curaclip {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::TempDir;

std::vector<float> random_rows(int64_t n, int64_t d, uint64_t seed) {
    Philox rng(seed, RngPurpose::test);
    std::vector<float> x(size_t(n * d));
    for (float& v : x) v = float(rng.normal());
    return x;
}

// Integers in [-50, 50]: every dot product is exact in float whatever the BLAS
// kernel's summation order, so a reference in double sees the same scores (ties included).
std::vector<float> random_int_rows(int64_t n, int64_t d, uint64_t seed) {
    Philox rng(seed, RngPurpose::test);
    std::vector<float> x(size_t(n * d));
    for (float& v : x) v = float(int64_t(rng.below(101)) - 50);
    return x;
}

// ---- retrieval references, written plainly -------------------------------------------

double dot(const std::vector<float>& a, int64_t i, const std::vector<float>& b, int64_t j, int64_t d) {
    double s = 0;
    for (int64_t k = 0; k < d; ++k) s += double(a[size_t(i * d + k)]) * double(b[size_t(j * d + k)]);
    return s;
}

// clip_benchmark's zeroshot_retrieval: sort the items of each query by score
// (descending), take the top k, and count the query correct when a positive is
// among them. Our rules (eval/metrics.h): an item identical to a positive (dup) is
// a positive, every score is its representative's, and ties put the positives
// LAST (a different input scoring the same counts against the positive;
// torch.topk would break them by position).
RetrievalResult brute_force_retrieval(const std::vector<float>& img, const std::vector<float>& txt,
                                      const std::vector<int64_t>& text_image, int64_t d,
                                      const DuplicateInputs& dup = {}) {
    const int64_t I = int64_t(img.size()) / d, T = int64_t(txt.size()) / d;
    auto irep = [&](int64_t i) { return dup.images.empty() ? i : dup.images[size_t(i)]; };
    auto trep = [&](int64_t t) { return dup.texts.empty() ? t : dup.texts[size_t(t)]; };
    auto top_k_has_positive = [](std::vector<std::pair<double, bool>> scored, int64_t k) {
        std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
            return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        for (int64_t j = 0; j < k && j < int64_t(scored.size()); ++j)
            if (scored[size_t(j)].second) return true;
        return false;
    };
    RetrievalResult r;
    r.n = T;
    r.images = I;
    const int64_t ks[3] = {1, 5, 10};
    double t2i[3] = {0, 0, 0}, i2t[3] = {0, 0, 0};
    for (int64_t t = 0; t < T; ++t) {  // text -> image
        std::vector<std::pair<double, bool>> scored;
        for (int64_t i = 0; i < I; ++i)
            scored.push_back({dot(txt, trep(t), img, irep(i), d), irep(text_image[size_t(t)]) == irep(i)});
        for (int k = 0; k < 3; ++k) t2i[k] += top_k_has_positive(scored, ks[k]);
    }
    for (int64_t i = 0; i < I; ++i) {  // image -> text
        std::vector<std::pair<double, bool>> scored;
        for (int64_t t = 0; t < T; ++t) {
            bool positive = false;  // t is (identical to) one of image i's captions
            for (int64_t c = 0; c < T; ++c) positive |= text_image[size_t(c)] == i && trep(c) == trep(t);
            scored.push_back({dot(img, irep(i), txt, trep(t), d), positive});
        }
        for (int k = 0; k < 3; ++k) i2t[k] += top_k_has_positive(scored, ks[k]);
    }
    r.text_to_image_r1 = t2i[0] / double(T);
    r.text_to_image_r5 = t2i[1] / double(T);
    r.text_to_image_r10 = t2i[2] / double(T);
    r.image_to_text_r1 = i2t[0] / double(I);
    r.image_to_text_r5 = i2t[1] / double(I);
    r.image_to_text_r10 = i2t[2] / double(I);
    return r;
}

void expect_same(const RetrievalResult& a, const RetrievalResult& b) {
    EXPECT_EQ(a.n, b.n);
    EXPECT_EQ(a.images, b.images);
    EXPECT_DOUBLE_EQ(a.image_to_text_r1, b.image_to_text_r1);
    EXPECT_DOUBLE_EQ(a.image_to_text_r5, b.image_to_text_r5);
    EXPECT_DOUBLE_EQ(a.image_to_text_r10, b.image_to_text_r10);
    EXPECT_DOUBLE_EQ(a.text_to_image_r1, b.text_to_image_r1);
    EXPECT_DOUBLE_EQ(a.text_to_image_r5, b.text_to_image_r5);
    EXPECT_DOUBLE_EQ(a.text_to_image_r10, b.text_to_image_r10);
}

// Groups of 1..5 captions per image, captions in a shuffled order.
std::vector<int64_t> random_groups(int64_t images, uint64_t seed) {
    Philox rng(seed, RngPurpose::test);
    std::vector<int64_t> text_image;
    for (int64_t i = 0; i < images; ++i)
        for (uint64_t c = 0, n = 1 + rng.below(5); c < n; ++c) text_image.push_back(i);
    for (size_t k = text_image.size(); k > 1; --k) std::swap(text_image[k - 1], text_image[size_t(rng.below(k))]);
    return text_image;
}

// ---- retrieval -----------------------------------------------------------------------------

TEST(EvalMetrics, ScoredRetrievalEqualsEmbeddingRetrieval) {
    const int64_t n = 700, d = 8;  // more than one 512-row block
    const std::vector<float> img = random_rows(n, d, 1), txt = random_rows(n, d, 2);
    const RetrievalResult a = retrieval_recall(img, txt, d);
    const RetrievalResult b = retrieval_recall_scored(n, [&](bool text_queries, int64_t q0, int64_t m, float* out) {
        const std::vector<float>& q = text_queries ? txt : img;
        const std::vector<float>& it = text_queries ? img : txt;
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) out[i * n + j] = 2.0f * float(dot(q, q0 + i, it, j, d));  // scale: no rank change
    });
    expect_same(a, b);
    EXPECT_GT(a.image_to_text_r10, 0.0);
}

TEST(EvalMetrics, OneCaptionPerImageIsThePairwiseRecall) {
    // Without /image_ids every row is its own image: the pairwise rule (rank = other
    // items scoring at least as high as the own pair; small integers make ties).
    const int64_t n = 300, d = 4;
    const std::vector<float> img = random_int_rows(n, d, 11), txt = random_int_rows(n, d, 12);
    std::vector<int64_t> identity(static_cast<size_t>(n));
    std::iota(identity.begin(), identity.end(), int64_t(0));
    const RetrievalResult a = retrieval_recall(img, txt, d);
    expect_same(a, retrieval_recall(img, txt, identity, d));
    int64_t i2t_r5 = 0, t2i_r1 = 0, t2i_r10 = 0;
    for (int64_t q = 0; q < n; ++q) {
        const float pos = float(dot(img, q, txt, q, d));
        int64_t hi = 0, ht = 0;
        for (int64_t j = 0; j < n; ++j) {
            hi += j != q && float(dot(img, q, txt, j, d)) >= pos;
            ht += j != q && float(dot(txt, q, img, j, d)) >= pos;
        }
        i2t_r5 += hi < 5;
        t2i_r1 += ht < 1;
        t2i_r10 += ht < 10;
    }
    EXPECT_EQ(a.n, n);
    EXPECT_EQ(a.images, n);
    EXPECT_DOUBLE_EQ(a.image_to_text_r5, double(i2t_r5) / n);
    EXPECT_DOUBLE_EQ(a.text_to_image_r1, double(t2i_r1) / n);
    EXPECT_DOUBLE_EQ(a.text_to_image_r10, double(t2i_r10) / n);
    expect_same(a, brute_force_retrieval(img, txt, identity, d));
}

TEST(EvalMetrics, SeveralCaptionsPerImageMatchTheBruteForceReference) {
    for (const uint64_t seed : {21u, 22u, 23u}) {
        const int64_t I = 220, d = 8;  // about 660 captions: more than one 512-query block
        const std::vector<int64_t> text_image = random_groups(I, seed);
        const int64_t T = int64_t(text_image.size());
        ASSERT_GT(T, 512);
        // Each caption = its image + noise (integers), so recall is well above chance.
        const std::vector<float> img = random_int_rows(I, d, seed * 10), noise = random_int_rows(T, d, seed * 10 + 1);
        std::vector<float> txt(noise.size());
        for (int64_t t = 0; t < T; ++t)
            for (int64_t k = 0; k < d; ++k)
                txt[size_t(t * d + k)] = 3 * img[size_t(text_image[size_t(t)] * d + k)] + noise[size_t(t * d + k)];
        const RetrievalResult ref = brute_force_retrieval(img, txt, text_image, d);
        const RetrievalResult got = retrieval_recall(img, txt, text_image, d);
        SCOPED_TRACE(seed);
        expect_same(got, ref);
        EXPECT_EQ(got.images, I);
        EXPECT_EQ(got.n, T);
        EXPECT_GT(got.image_to_text_r1, 0.3);  // well above chance: the reference is not checked on noise only
        EXPECT_GT(got.image_to_text_r10, got.image_to_text_r1);
        EXPECT_GT(got.text_to_image_r10, got.text_to_image_r1);
        // The score-function form (the MoDE ensemble's) agrees.
        const RetrievalResult scored =
            retrieval_recall_scored(I, text_image, [&](bool text_queries, int64_t q0, int64_t m, float* out) {
                const std::vector<float>& q = text_queries ? txt : img;
                const std::vector<float>& it = text_queries ? img : txt;
                const int64_t items = text_queries ? I : T;
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = 0; j < items; ++j) out[i * items + j] = float(dot(q, q0 + i, it, j, d));
            });
        expect_same(scored, ref);
    }
}

TEST(EvalMetrics, SeveralCaptionsHandMadeCase) {
    // 2 images, 3 captions: captions 0 and 2 show image 0, caption 1 image 1.
    // Scores image x text:  img0: [0.1, 0.9, 0.5]   img1: [0.2, 0.3, 0.8]
    const std::vector<float> s_it = {0.1f, 0.9f, 0.5f, 0.2f, 0.3f, 0.8f};
    const std::vector<int64_t> text_image = {0, 1, 0};
    const RetrievalResult r = retrieval_recall_scored(2, text_image, [&](bool text_queries, int64_t q0, int64_t m, float* out) {
        for (int64_t q = q0; q < q0 + m; ++q)
            if (text_queries)
                for (int64_t i = 0; i < 2; ++i) out[(q - q0) * 2 + i] = s_it[size_t(i * 3 + q)];
            else
                for (int64_t t = 0; t < 3; ++t) out[(q - q0) * 3 + t] = s_it[size_t(q * 3 + t)];
    });
    // image 0: best own caption (2) scores 0.5, one text (0.9) higher -> rank 1;
    // image 1: its caption 1 scores 0.3, one text (0.8) higher -> rank 1.
    EXPECT_DOUBLE_EQ(r.image_to_text_r1, 0.0);
    EXPECT_DOUBLE_EQ(r.image_to_text_r5, 1.0);
    // caption 0: img0 0.1 < img1 0.2 -> rank 1; caption 1: img1 0.3 < img0 0.9 -> rank 1;
    // caption 2: img0 0.5 < img1 0.8 -> rank 1.
    EXPECT_DOUBLE_EQ(r.text_to_image_r1, 0.0);
    EXPECT_DOUBLE_EQ(r.text_to_image_r5, 1.0);
    EXPECT_EQ(r.images, 2);
    EXPECT_EQ(r.n, 3);
    // An image without captions, or a caption of an image that does not exist, is refused.
    auto noop = [](bool, int64_t, int64_t, float*) {};
    expect_error([&] { retrieval_recall_scored(3, text_image, noop); }, {"image 2 has no caption"});
    expect_error([&] { retrieval_recall_scored(1, text_image, noop); }, {"caption 1 belongs to image 1"});
}

TEST(EvalMetrics, TiesBetweenDifferentInputsCountAgainstThePositive) {
    // Identical embeddings of different inputs (a collapsed model): every query is
    // tied with every item, which is the model telling nothing apart: R@1 = 0, not 1.
    const std::vector<float> same = {0.6f, 0.8f, 0.6f, 0.8f, 0.6f, 0.8f};  // 3 x [0.6, 0.8]
    const RetrievalResult r = retrieval_recall(same, same, 2);
    EXPECT_DOUBLE_EQ(r.image_to_text_r1, 0.0);
    EXPECT_DOUBLE_EQ(r.text_to_image_r1, 0.0);
    EXPECT_DOUBLE_EQ(r.image_to_text_r5, 1.0);  // rank 2 < 5
    // Two texts tied for image 0: its own (text 0) and text 1 -> rank 1.
    const std::vector<float> img = {1, 0, 0, 1}, txt = {1, 0, 1, 0};
    const RetrievalResult t = retrieval_recall(img, txt, 2);
    EXPECT_DOUBLE_EQ(t.image_to_text_r1, 0.0);  // image 0: text 1 ties -> 1; image 1: text 0 ties (0 = 0) -> 1
    EXPECT_DOUBLE_EQ(t.text_to_image_r1, 0.5);  // text 0 -> image 0 (1 > 0); text 1 -> image 0 beats image 1
}

TEST(EvalMetrics, IdenticalInputsAreOnePositiveWhateverTheirRoundoff) {
    // 2 images, 3 captions; captions 0 and 2 are the same text (the same token row)
    // but caption 2's scores carry a round-off of the batch it was embedded in.
    //   image x caption scores:  img0: [0.5, 0.1, 0.5 + 1ulp]   img1: [0.2, 0.3, 0.2]
    const float up = std::nextafter(0.5f, 1.0f);
    const std::vector<float> s_it = {0.5f, 0.1f, up, 0.2f, 0.3f, 0.2f};
    const std::vector<int64_t> text_image = {0, 1, 1};  // caption 2 (= caption 0's text) describes image 1
    auto fill = [&](bool text_queries, int64_t q0, int64_t m, float* out) {
        for (int64_t q = q0; q < q0 + m; ++q)
            if (text_queries)
                for (int64_t i = 0; i < 2; ++i) out[(q - q0) * 2 + i] = s_it[size_t(i * 3 + q)];
            else
                for (int64_t t = 0; t < 3; ++t) out[(q - q0) * 3 + t] = s_it[size_t(q * 3 + t)];
    };
    // Without identity: image 0's caption 0 (0.5) is beaten by caption 2 (0.5 + 1ulp).
    const RetrievalResult plain = retrieval_recall_scored(2, text_image, fill);
    EXPECT_DOUBLE_EQ(plain.image_to_text_r1, 0.5);  // image 1: best own 0.3 > 0.2, 0.2 -> rank 0
    // With identity, caption 2 is caption 0's text: it scores 0.5 exactly, and as a
    // copy of image 0's own caption it is a positive of image 0, never against it.
    DuplicateInputs dup;
    dup.texts = {0, 1, 0};
    const RetrievalResult r = retrieval_recall_scored(2, text_image, fill, dup);
    EXPECT_DOUBLE_EQ(r.image_to_text_r1, 1.0);
    // text -> image: caption 0 -> image 0 (0.5 > 0.2); caption 1 -> image 1 (0.3 > 0.1);
    // caption 2 scores with caption 0's row: its image 1 (0.2) < image 0 (0.5) -> rank 1.
    EXPECT_DOUBLE_EQ(r.text_to_image_r1, 2.0 / 3);
    // Identical images: image 1 a copy of image 0 -> both are scored by image 0's row,
    // and for captions of either, the other is not a competitor.
    DuplicateInputs both = dup;
    both.images = {0, 0};
    const RetrievalResult b = retrieval_recall_scored(2, text_image, fill, both);
    EXPECT_DOUBLE_EQ(b.text_to_image_r1, 1.0);
    // image 1 is scored by image 0's row, and its caption 2 is caption 0's text: best 0.5.
    EXPECT_DOUBLE_EQ(b.image_to_text_r1, 1.0);
    // A representative must be the first of its group.
    DuplicateInputs bad;
    bad.texts = {0, 2, 2};
    EXPECT_THROW(retrieval_recall_scored(2, text_image, fill, bad), Error);
}

TEST(EvalMetrics, NonFiniteScoresAreRefused) {
    // NaN compares false both ways: without the check every query would be "rank 0".
    const std::vector<float> img = {1, 0, 0, 1}, txt = {std::nanf(""), 0, 0, 1};
    expect_error([&] { retrieval_recall(img, txt, 2); }, {"retrieval", "not finite", "caption 0"});
    const std::vector<float> logits = {1, 2, std::numeric_limits<float>::infinity(), 0};
    expect_error([&] { zero_shot_accuracy_from_logits(logits, {0, 1}, 2); }, {"zero-shot", "image 1", "class 0",
                                                                               "not finite"});
}

// ---- zero-shot -----------------------------------------------------------------------------

TEST(EvalMetrics, AccuracyFromLogits) {
    // 3 examples, 6 classes: right at rank 0, at rank 2, at rank 5.
    const std::vector<float> logits = {9, 1, 1, 1, 1, 1,  //
                                       3, 2, 1, 0, 0, 0,  //
                                       5, 4, 3, 2, 1, 0};
    const std::vector<int32_t> labels = {0, 2, 5};
    const ZeroShotResult r = zero_shot_accuracy_from_logits(logits, labels, 6);
    EXPECT_EQ(r.n, 3);
    EXPECT_EQ(r.classes, 6);
    EXPECT_DOUBLE_EQ(r.top1, 1.0 / 3);
    EXPECT_DOUBLE_EQ(r.top5, 2.0 / 3);
    EXPECT_THROW(zero_shot_accuracy_from_logits(logits, labels, 5), Error);
    expect_error([&] { zero_shot_accuracy_from_logits(logits, {0, 7, 1}, 6); }, {"label 7 of image 1", "6 classes"});
    // An unlabelled image (-1: a webdataset sample without .cls) is left out.
    const ZeroShotResult u = zero_shot_accuracy_from_logits(logits, {0, -1, 5}, 6);
    EXPECT_EQ(u.n, 2);
    EXPECT_DOUBLE_EQ(u.top1, 0.5);
    EXPECT_DOUBLE_EQ(u.top5, 0.5);
}

TEST(EvalMetrics, MeanPerClassRecallOverTheClassesPresent) {
    // 4 classes; class 3 has no sample (left out of the mean, as sklearn's
    // balanced_accuracy_score does), though one image is predicted as class 3.
    //   class 0: 4 samples, 3 right     class 1: 1 sample, 0 right (predicted 3)
    //   class 2: 2 samples, 2 right
    const std::vector<int32_t> labels = {0, 0, 0, 0, 1, 2, 2};
    const std::vector<float> logits = {
        5, 1, 1, 1,  //
        5, 1, 1, 1,  //
        5, 1, 1, 1,  //
        1, 5, 1, 1,  // class 0 predicted 1
        1, 2, 1, 5,  // class 1 predicted 3
        1, 1, 5, 1,  //
        1, 1, 5, 1,  //
    };
    const ZeroShotResult r = zero_shot_accuracy_from_logits(logits, labels, 4);
    EXPECT_DOUBLE_EQ(r.top1, 5.0 / 7);  // plain accuracy weighs class 0 most
    EXPECT_DOUBLE_EQ(r.mean_per_class_recall, (3.0 / 4 + 0.0 + 2.0 / 2) / 3);
    EXPECT_EQ(r.classes_present, 3);
    EXPECT_EQ(r.classes, 4);
    ASSERT_EQ(r.per_class_recall.size(), 4u);
    EXPECT_DOUBLE_EQ(r.per_class_recall[0], 0.75);
    EXPECT_DOUBLE_EQ(r.per_class_recall[1], 0.0);
    EXPECT_DOUBLE_EQ(r.per_class_recall[2], 1.0);
    EXPECT_TRUE(std::isnan(r.per_class_recall[3]));  // no sample: not a recall of 0
    EXPECT_DOUBLE_EQ(r.top5, 1.0);  // K = 4 < 5: every label is in the top 5
    // Balanced classes: mean per-class recall = accuracy.
    const ZeroShotResult b = zero_shot_accuracy_from_logits({5, 1, 1, 5, 5, 1, 1, 5}, {0, 0, 1, 1}, 2);
    EXPECT_DOUBLE_EQ(b.top1, 0.5);
    EXPECT_DOUBLE_EQ(b.mean_per_class_recall, 0.5);
    // No samples at all.
    const ZeroShotResult e = zero_shot_accuracy_from_logits({}, {}, 3);
    EXPECT_EQ(e.n, 0);
    EXPECT_DOUBLE_EQ(e.mean_per_class_recall, 0.0);
}

TEST(EvalMetrics, TopFiveWithFewerThanFiveClassesIsOne) {
    for (const int64_t K : {1, 2, 3, 4}) {
        std::vector<float> logits;
        std::vector<int32_t> labels;
        for (int64_t y = 0; y < K; ++y) {  // every image wrong at top-1 unless K = 1
            for (int64_t k = 0; k < K; ++k) logits.push_back(k == (y + 1) % K ? 1.0f : 0.0f);
            labels.push_back(int32_t(y));
        }
        const ZeroShotResult r = zero_shot_accuracy_from_logits(logits, labels, K);
        EXPECT_DOUBLE_EQ(r.top5, 1.0) << K;
        EXPECT_DOUBLE_EQ(r.top1, K == 1 ? 1.0 : 0.0) << K;
    }
    // K = 5: the last-ranked class is still within the top 5; K = 6: it is not.
    EXPECT_DOUBLE_EQ(zero_shot_accuracy_from_logits({5, 4, 3, 2, 1}, {4}, 5).top5, 1.0);
    EXPECT_DOUBLE_EQ(zero_shot_accuracy_from_logits({5, 4, 3, 2, 1, 0}, {5}, 6).top5, 0.0);
}

TEST(EvalMetrics, ZeroShotTiesAndIdenticalClassNames) {
    // All logits equal (a collapsed model): nothing is classified right at top-1.
    const ZeroShotResult flat = zero_shot_accuracy_from_logits({1, 1, 1, 1, 1, 1}, {0, 2}, 3);
    EXPECT_DOUBLE_EQ(flat.top1, 0.0);
    EXPECT_DOUBLE_EQ(flat.top5, 1.0);  // rank 2 < 5
    // Classes 0 and 2 have the same name: one class. Class 2's logit, 1 ulp below
    // class 0's, is read from class 0's column, and class 0 is no competitor.
    const float lo = std::nextafter(0.9f, 0.0f);
    const std::vector<float> logits = {0.9f, 0.2f, lo,  //
                                       0.1f, 0.3f, 0.1f};
    const ZeroShotResult plain = zero_shot_accuracy_from_logits(logits, {2, 1}, 3);
    EXPECT_DOUBLE_EQ(plain.top1, 0.5);  // image 0: class 0 beats its label 2 by 1 ulp
    DuplicateInputs dup;
    dup.classes = first_occurrences({"shoe", "bag", "shoe"});
    EXPECT_EQ(dup.classes, (std::vector<int64_t>{0, 1, 0}));
    const ZeroShotResult r = zero_shot_accuracy_from_logits(logits, {2, 1}, 3, dup);
    EXPECT_DOUBLE_EQ(r.top1, 1.0);
    EXPECT_DOUBLE_EQ(r.mean_per_class_recall, 1.0);
}

TEST(EvalMetrics, ZeroShotFromEmbeddingsEqualsFromLogits) {
    const int64_t n = 50, K = 7, d = 5;
    const std::vector<float> img = random_rows(n, d, 31), cls = random_rows(K, d, 32);
    std::vector<int32_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = int32_t((i * 3) % 5);  // classes 5, 6 absent
    std::vector<float> logits(size_t(n * K));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < K; ++k) logits[size_t(i * K + k)] = float(dot(img, i, cls, k, d));
    const ZeroShotResult a = zero_shot_accuracy(img, labels, cls, d), b = zero_shot_accuracy_from_logits(logits, labels, K);
    EXPECT_DOUBLE_EQ(a.top1, b.top1);
    EXPECT_DOUBLE_EQ(a.top5, b.top5);
    EXPECT_DOUBLE_EQ(a.mean_per_class_recall, b.mean_per_class_recall);
    EXPECT_EQ(a.classes_present, 5);
}

// ---- prompt templates ---------------------------------------------------------------------

TEST(EvalMetrics, BuiltinTemplateSets) {
    const std::vector<std::string> openai = builtin_templates("openai_imagenet");
    EXPECT_EQ(openai.size(), 80u);
    EXPECT_EQ(std::set<std::string>(openai.begin(), openai.end()).size(), 80u);
    EXPECT_EQ(openai.front(), "a bad photo of a {}.");
    EXPECT_EQ(openai.back(), "a tattoo of the {}.");
    for (const char* t : {"a bad photo of a {}.", "a photo of the large {}.", "itap of a {}.", "a {} in a video game.",
                          "a black and white photo of the {}.", "a jpeg corrupted photo of a {}.", "itap of my {}."})
        EXPECT_NE(std::find(openai.begin(), openai.end(), t), openai.end()) << t;
    for (const auto& t : openai) EXPECT_TRUE(has_placeholder(t)) << t;

    const std::vector<std::string> simple = builtin_templates("simple");
    EXPECT_EQ(simple, (std::vector<std::string>{"itap of a {}.", "a bad photo of the {}.", "a origami {}.",
                                                "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
                                                "a photo of the small {}."}));
    for (const auto& t : simple) EXPECT_NE(std::find(openai.begin(), openai.end(), t), openai.end()) << t;

    EXPECT_EQ(builtin_templates("default"), default_templates());
    EXPECT_EQ(default_templates().front(), "a photo of a {}.");
    EXPECT_EQ(default_templates().size(), 5u);
    EXPECT_EQ(resolve_templates("simple"), simple);
    expect_error([] { builtin_templates("imagenet"); }, {"'imagenet'", "default, openai_imagenet, simple"});
    expect_error([] { resolve_templates("no_such_set_or_file"); },
                 {"'no_such_set_or_file'", "default, openai_imagenet, simple", "template file"});
}

TEST(EvalMetrics, ApplyTemplateFillsEveryPlaceholder) {
    EXPECT_EQ(apply_template("a photo of a {}.", "bag"), "a photo of a bag.");
    EXPECT_EQ(apply_template("a {c} next to a {c}.", "coat"), "a coat next to a coat.");
    EXPECT_EQ(apply_template("{} and {c}", "x"), "x and x");
    expect_error([] { apply_template("a photo of a {x}.", "bag"); }, {"'a photo of a {x}.'", "no {}"});
}

TEST(EvalMetrics, TemplateFiles) {
    const std::vector<std::string> t =
        parse_templates("# prompts for products\n\na photo of a {}.\r\n   a {c} on a shelf.  \n  # indented comment\n\t\n"
                        "itap of my {}.",
                        "p.txt");
    EXPECT_EQ(t, (std::vector<std::string>{"a photo of a {}.", "a {c} on a shelf.", "itap of my {}."}));
    expect_error([] { parse_templates("a photo of a {}.\n# ok\n\na photo of a bag.\n", "prompts.txt"); },
                 {"prompts.txt:4:", "'a photo of a bag.'", "no {}"});
    expect_error([] { parse_templates("# nothing\n\n", "empty.txt"); }, {"empty.txt", "no prompt templates"});

    TempDir d;
    const std::string path = d / "mine.txt";
    std::ofstream(path) << "# mine\na sketch of a {}.\nthe {} in a video game.\n";
    EXPECT_EQ(resolve_templates(path), (std::vector<std::string>{"a sketch of a {}.", "the {} in a video game."}));
    const std::string bad = d / "bad.txt";
    std::ofstream(bad) << "a sketch of a {}.\nno class here\n";
    expect_error([&] { resolve_templates(bad); }, {bad + ":2:", "'no class here'"});
}

// ---- evaluate() end to end ---------------------------------------------------------------------

// This binary has no MPI main: a world of one, initialized on first use.
// Tests that start MPI are in suites named *WithMpi: tests/run_all.sh runs them
// without LeakSanitizer's leak check (Open MPI keeps memory past MPI_Finalize).
const Communicator& self() {
    static MpiEnvironment env;
    static Communicator world = Communicator::world();
    return world;
}

struct TinyEvalSet {
    BpeTokenizer tok;
    ModelConfig cfg;
    std::vector<int64_t> image_of_row;  // the image id of each row
    std::vector<int32_t> image_label;   // [images]
    io::DatasetContents contents;
};

// 9 images, 1..4 captions each, rows in a shuffled order; 3 classes.
TinyEvalSet tiny_eval_set() {
    const std::vector<std::string> classes = {"shoe", "bag", "coat"};
    std::vector<std::string> words;
    for (const auto& t : builtin_templates("simple"))
        for (const auto& c : classes) words.push_back(apply_template(t, c));
    for (const auto& t : default_templates())
        for (const auto& c : classes) words.push_back(apply_template(t, c));
    TinyEvalSet s{BpeTokenizer::train(words, 600), testing::small_model_config(8, 4, 1, false), {}, {}, {}};
    s.cfg.context_length = 12;
    s.cfg.vocab_size = s.tok.vocab_size();
    const int64_t images = 9;
    Philox rng(41, RngPurpose::test);
    for (int64_t i = 0; i < images; ++i) {
        s.image_label.push_back(int32_t(rng.below(3)));
        for (uint64_t c = 0, n = 1 + rng.below(4); c < n; ++c) s.image_of_row.push_back(100 + 7 * i);  // any ids
    }
    const int64_t N = int64_t(s.image_of_row.size());
    for (size_t k = size_t(N); k > 1; --k) std::swap(s.image_of_row[k - 1], s.image_of_row[size_t(rng.below(k))]);
    std::vector<std::vector<uint8_t>> pixels(static_cast<size_t>(images));
    for (auto& p : pixels)
        for (int k = 0; k < 64; ++k) p.push_back(uint8_t(rng.below(256)));
    io::DatasetContents& d = s.contents;
    d.count = N;
    d.image_size = 8;
    d.channels = 1;
    d.context_length = 12;
    d.classnames = classes;
    for (int64_t r = 0; r < N; ++r) {
        const int64_t i = (s.image_of_row[size_t(r)] - 100) / 7;
        d.images.insert(d.images.end(), pixels[size_t(i)].begin(), pixels[size_t(i)].end());
        d.captions.push_back(words[size_t(rng.below(words.size()))]);
        const std::vector<int32_t> ids = s.tok.encode(d.captions.back(), 12);
        d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
        d.labels.push_back(s.image_label[size_t(i)]);
    }
    d.image_ids = s.image_of_row;
    return s;
}

io::DatasetAttributes tiny_attrs(const BpeTokenizer& tok) {
    io::DatasetAttributes a;
    a.tokenizer_id = tok.id_hex();
    a.source = "synthetic";
    a.creation_command = "test_eval_metrics";
    return a;
}

// dup.texts of token rows [n, ctx]: the first row holding the same ids.
DuplicateInputs same_token_rows(const std::vector<int32_t>& tokens, int64_t ctx) {
    DuplicateInputs dup;
    const int64_t n = int64_t(tokens.size()) / ctx;
    for (int64_t r = 0; r < n; ++r) {
        int64_t f = 0;
        while (!std::equal(tokens.begin() + f * ctx, tokens.begin() + (f + 1) * ctx, tokens.begin() + r * ctx)) ++f;
        dup.texts.push_back(f);
    }
    return dup;
}

TEST(EvalWithMpi, EvaluateEmbedsEachImageOnceAndRetrievesOverDistinctImages) {
    TinyEvalSet s = tiny_eval_set();
    TempDir dir;
    const std::string with_ids = dir / "with_ids.h5", without_ids = dir / "without_ids.h5";
    io::write_dataset(with_ids, s.contents, tiny_attrs(s.tok));
    io::DatasetContents plain = s.contents;
    plain.image_ids.clear();
    io::write_dataset(without_ids, plain, tiny_attrs(s.tok));

    auto be = make_backend("cpu");
    ClipModel model(*be, s.cfg, 4);  // 4 rows per forward: several chunks
    model.init_weights(7);
    const std::vector<std::string> templates = builtin_templates("simple");
    const EvalReport r = evaluate(model, s.tok, with_ids, self(), templates);

    // The reference: every row embedded, the distinct images taken at their first row.
    const int64_t N = s.contents.count;
    const std::vector<float> all_img = embed_images(model, s.contents.images.data(), N);
    const std::vector<float> all_txt = embed_texts(model, s.contents.tokens.data(), N);
    const int64_t D = s.cfg.embed_dim;
    std::vector<int64_t> first_row, text_image;
    std::vector<int32_t> labels;
    for (int64_t row = 0; row < N; ++row) {
        int64_t i = 0;
        while (i < int64_t(first_row.size()) && s.image_of_row[size_t(first_row[size_t(i)])] != s.image_of_row[size_t(row)])
            ++i;
        if (i == int64_t(first_row.size())) {
            first_row.push_back(row);
            labels.push_back(s.contents.labels[size_t(row)]);
        }
        text_image.push_back(i);
    }
    std::vector<float> img;
    for (const int64_t row : first_row) img.insert(img.end(), all_img.begin() + row * D, all_img.begin() + (row + 1) * D);
    ASSERT_EQ(first_row.size(), 9u);
    ASSERT_GT(N, 9);

    EXPECT_EQ(r.retrieval.images, 9);
    EXPECT_EQ(r.retrieval.n, N);
    // Identical token rows are one text (the captions repeat: 36 strings for N rows).
    const DuplicateInputs dup = same_token_rows(s.contents.tokens, 12);
    const RetrievalResult ref = brute_force_retrieval(img, all_txt, text_image, D, dup);
    expect_same(r.retrieval, ref);
    const std::vector<float> cls = zero_shot_classifier(model, s.tok, s.contents.classnames, templates);
    const ZeroShotResult zs = zero_shot_accuracy(img, labels, cls, D);
    EXPECT_EQ(r.zero_shot.n, 9);  // images, not rows
    EXPECT_EQ(r.templates, 7);
    EXPECT_DOUBLE_EQ(r.zero_shot.top1, zs.top1);
    EXPECT_DOUBLE_EQ(r.zero_shot.mean_per_class_recall, zs.mean_per_class_recall);

    // Without /image_ids every row is its own image (the former behaviour).
    const EvalReport p = evaluate(model, s.tok, without_ids, self(), templates);
    EXPECT_EQ(p.retrieval.images, N);
    EXPECT_EQ(p.zero_shot.n, N);
    std::vector<int64_t> identity(static_cast<size_t>(N));
    std::iota(identity.begin(), identity.end(), int64_t(0));
    // Rows of one image id hold the same pixels: as images of their own they are
    // one input (the first such row), so a caption's image ties with no copy of it.
    DuplicateInputs dup_rows = dup;
    for (int64_t row = 0; row < N; ++row) {
        int64_t f = 0;
        while (s.image_of_row[size_t(f)] != s.image_of_row[size_t(row)]) ++f;
        dup_rows.images.push_back(f);
    }
    expect_same(p.retrieval, brute_force_retrieval(all_img, all_txt, identity, D, dup_rows));
    expect_same(p.retrieval, retrieval_recall(all_img, all_txt, D, dup_rows));

    // The report names the images and captions used, and the JSON carries every field.
    const std::string table = format_report(r), json = report_json_fields(r);
    EXPECT_NE(table.find("retrieval (9 images, " + std::to_string(N) + " captions)"), std::string::npos) << table;
    EXPECT_NE(table.find("zero-shot classification (9 images, 3 classes, 7 templates)"), std::string::npos) << table;
    EXPECT_NE(table.find("mean per-class recall"), std::string::npos) << table;
    for (const char* f : {"\"zeroshot_top1\": ", "\"zeroshot_top5\": ", "\"zeroshot_mean_per_class_recall\": ",
                          "\"zeroshot_per_class_recall\": [", "\"i2t_r1\": ", "\"t2i_r10\": ", "\"eval_images\": 9", "\"zeroshot_templates\": 7"})
        EXPECT_NE(json.find(f), std::string::npos) << f << " not in " << json;
    EXPECT_NE(json.find("\"eval_captions\": " + std::to_string(N)), std::string::npos) << json;
}

TEST(EvalWithMpi, RowsOfOneImageMustAgreeOnTheLabel) {
    TinyEvalSet s = tiny_eval_set();
    // Give one row of a multi-caption image another label.
    int64_t a = -1, b = -1;
    for (int64_t r = 0; r < s.contents.count && b < 0; ++r)
        for (int64_t q = 0; q < r; ++q)
            if (s.image_of_row[size_t(q)] == s.image_of_row[size_t(r)]) {
                a = q;
                b = r;
                break;
            }
    ASSERT_GE(b, 0);
    s.contents.labels[size_t(b)] = (s.contents.labels[size_t(b)] + 1) % 3;
    TempDir dir;
    const std::string path = dir / "bad.h5";
    io::write_dataset(path, s.contents, tiny_attrs(s.tok));
    auto be = make_backend("cpu");
    ClipModel model(*be, s.cfg, 4);
    model.init_weights(7);
    expect_error([&] { evaluate(model, s.tok, path, self()); },
                 {path, "rows " + std::to_string(a) + " and " + std::to_string(b), "same image"});
}

TEST(EvalWithMpi, SameNumbersForAnyBatchWithDuplicateCaptionsAndImages) {
    // Captions drawn from 4 strings (many identical token rows), and image 8 a pixel
    // copy of image 0 under another id. Identical inputs embedded at different batch
    // positions differ in the last bits; the metrics must not.
    TinyEvalSet s = tiny_eval_set();
    io::DatasetContents& d = s.contents;
    const std::vector<std::string> few = {"a photo of a shoe.", "a bag.", "a photo of a coat.", "a shoe."};
    const int64_t N = d.count, px = 64;
    d.tokens.clear();
    for (int64_t r = 0; r < N; ++r) {
        d.captions[size_t(r)] = few[size_t((r * 7) % 4)];
        const std::vector<int32_t> ids = s.tok.encode(d.captions[size_t(r)], 12);
        d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
    }
    int64_t row0 = -1;  // a row of image 0 (id 100), whose pixels image 8 (id 156) gets
    for (int64_t r = 0; r < N && row0 < 0; ++r)
        if (s.image_of_row[size_t(r)] == 100) row0 = r;
    for (int64_t r = 0; r < N; ++r)
        if (s.image_of_row[size_t(r)] == 156) {
            std::copy_n(d.images.begin() + row0 * px, px, d.images.begin() + r * px);
            d.labels[size_t(r)] = d.labels[size_t(row0)];
        }
    TempDir dir;
    const std::string path = dir / "dups.h5";
    io::write_dataset(path, d, tiny_attrs(s.tok));
    const std::vector<std::string> templates = builtin_templates("simple");
    auto be = make_backend("cpu");

    // The right value: every row embedded alone (batch 1), identical inputs one input.
    ClipModel one(*be, s.cfg, 1);
    one.init_weights(7);
    const EvalEmbeddings e = embed_eval_set(one, s.tok, path, self());
    EXPECT_EQ(e.distinct_texts, 4);
    const DuplicateInputs dup_t = same_token_rows(d.tokens, 12);
    EXPECT_EQ(e.dup.texts, dup_t.texts);
    ASSERT_EQ(e.n_images, 9);
    int64_t i0 = -1, i8 = -1;  // the indices of images 0 and 8 (order of first occurrence)
    for (int64_t i = 0; i < 9; ++i) {
        const int64_t id = s.image_of_row[size_t(e.image_rows[size_t(i)])];
        if (id == 100) i0 = i;
        if (id == 156) i8 = i;
    }
    ASSERT_GE(std::min(i0, i8), 0);
    for (int64_t i = 0; i < 9; ++i) EXPECT_EQ(e.dup.images[size_t(i)], i == std::max(i0, i8) ? std::min(i0, i8) : i) << i;
    const int64_t D = s.cfg.embed_dim;
    std::vector<float> img, txt(size_t(N * D));
    std::vector<int32_t> labels;
    for (int64_t i = 0; i < 9; ++i) {
        const std::vector<float> v = embed_images(one, &d.images[size_t(e.image_rows[size_t(i)] * px)], 1);
        img.insert(img.end(), v.begin(), v.end());
        labels.push_back(d.labels[size_t(e.image_rows[size_t(i)])]);
    }
    for (int64_t r = 0; r < N; ++r) {
        const std::vector<float> v = embed_texts(one, &d.tokens[size_t(r * 12)], 1);
        std::copy(v.begin(), v.end(), txt.begin() + r * D);
    }
    DuplicateInputs dup = dup_t;
    dup.images = e.dup.images;
    const RetrievalResult ref = brute_force_retrieval(img, txt, e.text_image, D, dup);
    dup.classes = first_occurrences(d.classnames);
    const ZeroShotResult zs_ref =
        zero_shot_accuracy(img, labels, zero_shot_classifier(one, s.tok, d.classnames, templates), D, dup);

    for (const int64_t B : {1, 3, 4, 7}) {
        SCOPED_TRACE(B);
        ClipModel model(*be, s.cfg, B);
        model.init_weights(7);
        const EvalReport r = evaluate(model, s.tok, path, self(), templates);
        expect_same(r.retrieval, ref);
        EXPECT_DOUBLE_EQ(r.zero_shot.top1, zs_ref.top1);
        EXPECT_DOUBLE_EQ(r.zero_shot.top5, zs_ref.top5);
        EXPECT_DOUBLE_EQ(r.zero_shot.mean_per_class_recall, zs_ref.mean_per_class_recall);
    }
}

// Sets every value of parameter `name` to v.
void fill_param(ClipModel& model, const std::string& name, double v) {
    Parameter& p = model.params().get(name);
    const std::vector<double> vals(size_t(p.shape.numel()), v);
    model.backend().upload(p.value, vals.data());
}

TEST(EvalWithMpi, NonFiniteEmbeddingsAreRefusedNamingModelDatasetAndRows) {
    // Finite but huge weights: the projections overflow to Inf, normalization makes
    // NaN. Without the check every NaN score compares false: "rank 0", 100%.
    TinyEvalSet s = tiny_eval_set();
    TempDir dir;
    const std::string path = dir / "eval.h5";
    io::write_dataset(path, s.contents, tiny_attrs(s.tok));
    auto be = make_backend("cpu");
    {
        ClipModel model(*be, s.cfg, 4);
        model.init_weights(7);
        fill_param(model, "text_projection", 3e38);
        expect_error([&] { evaluate(model, s.tok, path, self(), default_templates(), "checkpoint runs/x/step_9.h5"); },
                     {"checkpoint runs/x/step_9.h5 on " + path, "text embeddings of rows 0, 1, 2, 3, 4 and ",
                      "not finite"});
        expect_error([&] { zero_shot_classifier(model, s.tok, {"shoe", "bag"}, {"a {}."}, "model m"); },
                     {"model m", "prompt 'a shoe.'", "class 'shoe'", "not finite"});
    }
    {
        ClipModel model(*be, s.cfg, 4);
        model.init_weights(7);
        fill_param(model, "visual.proj", 3e38);
        expect_error([&] { evaluate(model, s.tok, path, self()); },
                     {"the model on " + path, "image embeddings of rows ", "(9 of 9 images)", "not finite"});
    }
}

TEST(EvalWithMpi, TokenIdsOutsideTheModelNeverReachTheEmbedding) {
    TinyEvalSet s = tiny_eval_set();
    TempDir dir;
    auto be = make_backend("cpu");
    // A model whose vocabulary is smaller than the tokenizer's.
    {
        const std::string path = dir / "eval.h5";
        io::write_dataset(path, s.contents, tiny_attrs(s.tok));
        ModelConfig small = s.cfg;
        small.vocab_size = s.tok.vocab_size() - 1;
        ClipModel model(*be, small, 4);
        model.init_weights(7);
        expect_error([&] { evaluate(model, s.tok, path, self()); },
                     {"tokenizer", "has " + std::to_string(s.tok.vocab_size()) + " ids",
                      "vocabulary of " + std::to_string(small.vocab_size)});
    }
    // A row holding an id above the end of text (the tokenizer's largest id), and a negative one.
    for (const int32_t bad : {s.tok.eot_id() + 1, -2}) {
        io::DatasetContents d = s.contents;
        d.tokens[size_t(5 * 12 + 2)] = bad;
        const std::string path = dir / ("bad" + std::to_string(bad + 10) + ".h5");
        io::write_dataset(path, d, tiny_attrs(s.tok));
        ClipModel model(*be, s.cfg, 4);
        model.init_weights(7);
        expect_error([&] { evaluate(model, s.tok, path, self()); },
                     {path, "/tokens row 5 holds id " + std::to_string(bad), "position 2"});
    }
}

}  // namespace
}  // namespace curaclip
