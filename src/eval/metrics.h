// Zero-shot classification and image<->text retrieval from embeddings (host
// float rows, L2-normalized), defined as clip_benchmark defines them
// (clip_benchmark/metrics/zeroshot_classification.py, zeroshot_retrieval.py);
// docs/evaluation.md has the definitions and where we differ.
//
// TIES ARE DECIDED BY IDENTITY (docs/evaluation.md). Identical inputs (the same
// token row, the same pixels, the same class name) are one input: they share one
// score (the score of the first of them, their representative), and an item
// identical to a positive is itself a positive, so it never pushes the positive
// down. Every other item scoring AT LEAST the positive's score counts against it:
// an exact tie between different inputs is the model failing to tell them apart
// (a collapsed model, all scores equal, scores 0, not 100%). The rank of a positive
// is the number of such items; top-k / R@k counts a query correct when it is < k.
// Because identical inputs share a score, the result does not depend on the tiny
// differences the batch position of an input makes to its embedding. (torch.topk,
// as clip_benchmark uses, breaks ties by position instead.)
//
// NON-FINITE scores (NaN compares false both ways and would make every query
// "rank 0") are refused with an Error naming the query and item.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/templates.h"
#include "model/clip_model.h"
#include "tokenizer/bpe_tokenizer.h"

namespace curaclip {

// The class embeddings [K, D]: for each class, every template filled with the
// class name (apply_template) is encoded, embedded, averaged and renormalized
// (open_clip / clip_benchmark zero_shot_classifier). Identical prompts are
// embedded once, so identical class names get bit-identical embeddings.
// Errors: a tokenizer with more ids than the model's vocabulary; a prompt whose
// embedding is not finite (message: model_label, the class and the prompt).
std::vector<float> zero_shot_classifier(ClipModel& model, const BpeTokenizer& tok,
                                        const std::vector<std::string>& classnames,
                                        const std::vector<std::string>& templates,
                                        const std::string& model_label = "the model");

// Which inputs are identical: rep[i] = the first index whose input equals i's
// (rep[i] <= i, rep[rep[i]] == rep[i]). An empty vector: every input is distinct.
struct DuplicateInputs {
    std::vector<int64_t> images;   // [I] distinct images (pixels)
    std::vector<int64_t> texts;    // [T] captions (token rows)
    std::vector<int64_t> classes;  // [K] class names (zero-shot)
};
// The first occurrence of each value: rep[i] = min { j : v[j] == v[i] }.
std::vector<int64_t> first_occurrences(const std::vector<std::string>& v);

struct ZeroShotResult {
    double top1 = 0, top5 = 0;
    // clip_benchmark's mean_per_class_recall (sklearn balanced_accuracy_score of
    // the top-1 predictions): the mean, over the classes with at least one
    // sample, of (samples of the class predicted top-1 correctly) / (samples of the class).
    double mean_per_class_recall = 0;
    // Recall of each class [K]; NaN for a class without samples (JSON null).
    std::vector<double> per_class_recall;
    int64_t n = 0;        // samples (images)
    int64_t classes = 0;  // K, the classes scored
    int64_t classes_present = 0;  // classes with at least one sample (the recall mean's denominator)
};
// Top-1/top-5 accuracy and mean per-class recall of img · classᵀ.
// image_emb [n, dim], labels [n] in [0, K), class_emb [K, dim]; dup.images [n] and
// dup.classes [K] (optional) say which images / classes are identical.
ZeroShotResult zero_shot_accuracy(const std::vector<float>& image_emb, const std::vector<int32_t>& labels,
                                  const std::vector<float>& class_emb, int64_t dim, const DuplicateInputs& dup = {});

// The same from precomputed logits [n, K] (e.g. an ensemble's). With K < 5
// every label is within the top 5, so top-5 = 1 (clip_benchmark reports NaN).
// Images labelled -1 (no label, e.g. webdataset samples without a .cls member) are
// left out (n counts the scored ones). Error for a label >= K or a logits size
// other than rows * K.
// The rank of image i's label y: classes k not identical to y (dup.classes) whose
// logit is >= y's, read from the row of i's representative (dup.images).
ZeroShotResult zero_shot_accuracy_from_logits(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                                              int64_t K, const DuplicateInputs& dup = {});

struct RetrievalResult {
    double image_to_text_r1 = 0, image_to_text_r5 = 0, image_to_text_r10 = 0;
    double text_to_image_r1 = 0, text_to_image_r5 = 0, text_to_image_r10 = 0;
    int64_t n = 0;         // captions (text queries; = rows of the evaluation set)
    int64_t images = 0;    // distinct images (image queries); = n when each row is its own image
};

// One image per caption: pair i is (image i, text i). image_emb, text_emb [n, dim].
RetrievalResult retrieval_recall(const std::vector<float>& image_emb, const std::vector<float>& text_emb, int64_t dim,
                                 const DuplicateInputs& dup = {});

// Several captions per image (COCO/Flickr style), as clip_benchmark's
// zeroshot_retrieval: image_emb [I, dim] (each distinct image once), text_emb
// [T, dim], text_image [T] = the image (in [0, I)) caption t describes; every
// image must have at least one caption.
//   text -> image: caption t is correct at k when ITS image ranks < k among the I
//     images (rank = images not identical to it scoring at least as high);
//   image -> text: image i is correct at k when ANY of its captions ranks < k
//     among the T texts, i.e. fewer than k texts score at least as high as its
//     best-scoring caption, not counting texts identical to one of its captions
//     (clip_benchmark: recall_at_k > 0).
// Scores are those of the representatives (dup): a query is scored by its
// representative's row, an item by its representative's column.
// R@k is the share of correct queries (over T captions / over I images). With
// text_image = 0, 1, ..., n-1 this is exactly the one-caption form above.
RetrievalResult retrieval_recall(const std::vector<float>& image_emb, const std::vector<float>& text_emb,
                                 const std::vector<int64_t>& text_image, int64_t dim, const DuplicateInputs& dup = {});

// Recall@1/5/10 from any pairwise score: fill(text_queries, q0, m, out) writes
// the scores of queries [q0, q0 + m) against all items into out
// (text_queries false: image queries [q0, q0+m) vs the T texts, out [m, T];
//  true: text queries vs the I images, out [m, I]).
// Only the rows of representative queries (dup) are used.
using RetrievalScores = std::function<void(bool text_queries, int64_t q0, int64_t m, float* out)>;
// One image per caption (I = T = n).
RetrievalResult retrieval_recall_scored(int64_t n, const RetrievalScores& fill, const DuplicateInputs& dup = {});
// Several captions per image: n_images = I, text_image [T] as above.
RetrievalResult retrieval_recall_scored(int64_t n_images, const std::vector<int64_t>& text_image,
                                        const RetrievalScores& fill, const DuplicateInputs& dup = {});

// The "default" template set (eval/templates.h): Fashion-MNIST product photos.
std::vector<std::string> default_templates();

}  // namespace curaclip
