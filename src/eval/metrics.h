// Zero-shot classification and image<->text retrieval from embeddings
// (host float rows, L2-normalized), as open_clip's zero_shot and retrieval evals.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/clip_model.h"
#include "tokenizer/bpe_tokenizer.h"

namespace curaclip {

// The class embeddings [K, D]: for each class, every template with "{}"
// replaced by the class name is encoded, embedded, averaged and renormalized.
std::vector<float> zero_shot_classifier(ClipModel& model, const BpeTokenizer& tok,
                                        const std::vector<std::string>& classnames,
                                        const std::vector<std::string>& templates);

struct ZeroShotResult {
    double top1 = 0, top5 = 0;
    int64_t n = 0;
};
// Top-1/top-5 accuracy of argmax over img · classᵀ.
ZeroShotResult zero_shot_accuracy(const std::vector<float>& image_emb, const std::vector<int32_t>& labels,
                                  const std::vector<float>& class_emb, int64_t dim);

// Top-1/top-5 accuracy of precomputed logits [n, K] (e.g. an ensemble's).
ZeroShotResult zero_shot_accuracy_from_logits(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                                              int64_t K);

struct RetrievalResult {
    double image_to_text_r1 = 0, image_to_text_r5 = 0, image_to_text_r10 = 0;
    double text_to_image_r1 = 0, text_to_image_r5 = 0, text_to_image_r10 = 0;
    int64_t n = 0;
};
// Pair i is (image i, text i). Recall@k: the share of queries whose own pair
// ranks in the top k; rank = the number of items scoring strictly higher, so an
// item tied with the positive (e.g. an identical caption) does not push it down.
RetrievalResult retrieval_recall(const std::vector<float>& image_emb, const std::vector<float>& text_emb, int64_t dim);

// Recall@1/5/10 from any pairwise score: fill(text_queries, q0, m, out) writes
// the scores of queries [q0, q0 + m) against all n items into out [m, n]
// (text_queries false: image queries vs texts; true: text queries vs images).
using RetrievalScores = std::function<void(bool text_queries, int64_t q0, int64_t m, float* out)>;
RetrievalResult retrieval_recall_scored(int64_t n, const RetrievalScores& fill);

// Prompt templates for zero-shot classification of product photos (Fashion-MNIST).
std::vector<std::string> default_templates();

}  // namespace curaclip
