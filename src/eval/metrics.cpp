#include "eval/metrics.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <unordered_map>

#include "eval/embed.h"

namespace curaclip {

std::vector<std::string> default_templates() { return builtin_templates("default"); }

std::vector<int64_t> first_occurrences(const std::vector<std::string>& v) {
    std::unordered_map<std::string_view, int64_t> first;
    std::vector<int64_t> rep(v.size());
    for (size_t i = 0; i < v.size(); ++i) rep[i] = first.emplace(v[i], int64_t(i)).first->second;
    return rep;
}

std::vector<float> zero_shot_classifier(ClipModel& model, const BpeTokenizer& tok,
                                        const std::vector<std::string>& classnames,
                                        const std::vector<std::string>& templates, const std::string& model_label) {
    CC_CHECK(!classnames.empty(), "zero-shot: no class names");
    CC_CHECK(!templates.empty(), "zero-shot: no prompt templates");
    const int ctx = model.config().context_length;
    const int64_t D = model.config().embed_dim, K = int64_t(classnames.size()), T = int64_t(templates.size());
    CC_REQUIRE(tok.vocab_size() <= model.config().vocab_size, "tokenizer ", tok.id_hex(), " has ", tok.vocab_size(),
               " ids but ", model_label, " has a vocabulary of ", model.config().vocab_size,
               " (model.vocab_size): prompts would hold ids the model cannot embed");
    // The distinct prompts (as token rows), each embedded once.
    std::vector<std::string> prompts;
    prompts.reserve(size_t(K * T));
    for (const auto& name : classnames)
        for (const auto& t : templates) prompts.push_back(apply_template(t, name));
    std::vector<int32_t> tokens;
    std::vector<int64_t> distinct_of(prompts.size()), distinct;  // prompt -> its distinct prompt
    {
        std::unordered_map<std::string_view, int64_t> seen;
        for (size_t p = 0; p < prompts.size(); ++p) {
            const auto [it, inserted] = seen.emplace(prompts[p], int64_t(distinct.size()));
            if (inserted) {
                distinct.push_back(int64_t(p));
                const std::vector<int32_t> ids = tok.encode(prompts[p], ctx);
                tokens.insert(tokens.end(), ids.begin(), ids.end());
            }
            distinct_of[p] = it->second;
        }
    }
    const std::vector<float> emb = embed_texts(model, tokens.data(), int64_t(distinct.size()));
    for (size_t u = 0; u < distinct.size(); ++u)
        for (int64_t d = 0; d < D; ++d)
            if (!std::isfinite(emb[u * size_t(D) + size_t(d)])) {
                const int64_t p = distinct[u];
                CC_USER_FAIL(model_label, ": the text embedding of the zero-shot prompt '", prompts[size_t(p)],
                             "' (class '", classnames[size_t(p / T)], "') is not finite (NaN or Inf): the weights or "
                             "activations overflowed; refusing to report metrics from it");
            }
    std::vector<float> cls(size_t(K * D), 0.0f);
    for (int64_t k = 0; k < K; ++k) {
        float* c = &cls[size_t(k * D)];
        for (int64_t t = 0; t < T; ++t) {
            const float* e = &emb[size_t(distinct_of[size_t(k * T + t)] * D)];
            for (int64_t d = 0; d < D; ++d) c[d] += e[d];
        }
        double norm = 0;
        for (int64_t d = 0; d < D; ++d) norm += double(c[d]) * c[d];
        const float inv = float(1.0 / std::max(std::sqrt(norm), 1e-12));
        for (int64_t d = 0; d < D; ++d) c[d] *= inv;
    }
    return cls;
}

namespace {

// Checks rep (empty: the identity, filled in) for n inputs.
std::vector<int64_t> reps_or_identity(const std::vector<int64_t>& rep, int64_t n, const char* what) {
    if (rep.empty()) {
        std::vector<int64_t> id(static_cast<size_t>(std::max<int64_t>(n, 0)));
        for (int64_t i = 0; i < n; ++i) id[size_t(i)] = i;
        return id;
    }
    CC_CHECK(int64_t(rep.size()) == n, "duplicate ", what, ": ", rep.size(), " representatives for ", n, " inputs");
    for (int64_t i = 0; i < n; ++i) {
        const int64_t r = rep[size_t(i)];
        CC_CHECK(r >= 0 && r <= i && rep[size_t(r)] == r, "duplicate ", what, ": input ", i, " has representative ", r);
    }
    return rep;
}

// Error unless the m x n block of scores is finite (serial: nothing may throw
// inside the parallel loops that read it).
void require_finite(const float* s, int64_t m, int64_t n, const char* what, const char* query, int64_t q0,
                    const char* item) {
    for (int64_t i = 0; i < m * n; ++i)
        CC_REQUIRE(std::isfinite(s[i]), what, ": the score of ", query, " ", q0 + i / n, " against ", item, " ",
                   i % n, " is not finite (NaN or Inf); refusing to rank by it");
}

// CSR lists: members of each representative (inputs i with rep[i] == r, in order).
struct Groups {
    std::vector<int64_t> first, items;
    explicit Groups(const std::vector<int64_t>& rep) : first(rep.size() + 1, 0), items(rep.size()) {
        for (const int64_t r : rep) ++first[size_t(r + 1)];
        for (size_t i = 0; i < rep.size(); ++i) first[i + 1] += first[i];
        std::vector<int64_t> at(first.begin(), first.end() - 1);
        for (size_t i = 0; i < rep.size(); ++i) items[size_t(at[size_t(rep[i])]++)] = int64_t(i);
    }
};

}  // namespace

ZeroShotResult zero_shot_accuracy(const std::vector<float>& image_emb, const std::vector<int32_t>& labels,
                                  const std::vector<float>& class_emb, int64_t dim, const DuplicateInputs& dup) {
    const int64_t n = int64_t(labels.size()), K = int64_t(class_emb.size()) / dim;
    CC_CHECK(int64_t(image_emb.size()) == n * dim, "zero-shot: ", image_emb.size() / size_t(dim),
             " image embeddings for ", n, " labels");
    std::vector<float> logits(size_t(n * K));
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(K), int(dim), 1.0f, image_emb.data(),
                    int(dim), class_emb.data(), int(dim), 0.0f, logits.data(), int(K));
    return zero_shot_accuracy_from_logits(logits, labels, K, dup);
}

ZeroShotResult zero_shot_accuracy_from_logits(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                                              int64_t K, const DuplicateInputs& dup) {
    const int64_t rows = int64_t(labels.size());
    CC_CHECK(K > 0 && int64_t(logits.size()) == rows * K, "zero-shot: ", logits.size(), " logits for ", rows,
             " labels x ", K, " classes");
    const std::vector<int64_t> crep = reps_or_identity(dup.classes, K, "classes");
    const std::vector<int64_t> irep = reps_or_identity(dup.images, rows, "images");
    require_finite(logits.data(), rows, K, "zero-shot", "image", 0, "class");
    ZeroShotResult r;
    r.classes = K;
    int64_t top1 = 0, top5 = 0, n = 0;
    std::vector<int64_t> samples(size_t(K), 0), correct(size_t(K), 0);  // per class
    for (int64_t i = 0; i < rows; ++i) {
        const int32_t y = labels[size_t(i)];
        if (y < 0) continue;  // unlabelled (e.g. a webdataset sample without .cls): not scored
        CC_REQUIRE(y < K, "zero-shot: label ", y, " of image ", i, " outside the ", K, " classes (the dataset's "
                   "/classnames has ", K, " names)");
        ++n;
        const float* row = &logits[size_t(irep[size_t(i)] * K)];
        const int64_t cy = crep[size_t(y)];
        const float pos = row[cy];
        int64_t higher = 0;  // classes other than y's name scoring at least as high
        for (int64_t k = 0; k < K; ++k) higher += crep[size_t(k)] != cy && row[crep[size_t(k)]] >= pos;
        top1 += higher < 1;
        top5 += higher < 5;
        ++samples[size_t(y)];
        correct[size_t(y)] += higher < 1;
    }
    r.n = n;
    r.top1 = n ? double(top1) / double(n) : 0.0;
    r.top5 = n ? double(top5) / double(n) : 0.0;
    // balanced_accuracy_score: classes absent from the labels are left out of the mean.
    double recall_sum = 0;
    r.per_class_recall.assign(size_t(K), std::numeric_limits<double>::quiet_NaN());
    for (int64_t k = 0; k < K; ++k)
        if (samples[size_t(k)] > 0) {
            r.per_class_recall[size_t(k)] = double(correct[size_t(k)]) / double(samples[size_t(k)]);
            recall_sum += r.per_class_recall[size_t(k)];
            ++r.classes_present;
        }
    r.mean_per_class_recall = r.classes_present ? recall_sum / double(r.classes_present) : 0.0;
    return r;
}

RetrievalResult retrieval_recall(const std::vector<float>& image_emb, const std::vector<float>& text_emb, int64_t dim,
                                 const DuplicateInputs& dup) {
    const int64_t n = int64_t(image_emb.size()) / dim;
    CC_CHECK(int64_t(text_emb.size()) == n * dim, "retrieval: ", n, " images but ", text_emb.size() / size_t(dim),
             " texts");
    std::vector<int64_t> text_image(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) text_image[size_t(i)] = i;
    return retrieval_recall(image_emb, text_emb, text_image, dim, dup);
}

RetrievalResult retrieval_recall(const std::vector<float>& image_emb, const std::vector<float>& text_emb,
                                 const std::vector<int64_t>& text_image, int64_t dim, const DuplicateInputs& dup) {
    CC_CHECK(dim > 0, "retrieval: embedding width ", dim);
    const int64_t I = int64_t(image_emb.size()) / dim, T = int64_t(text_emb.size()) / dim;
    CC_CHECK(int64_t(image_emb.size()) == I * dim && int64_t(text_emb.size()) == T * dim,
             "retrieval: embeddings are not rows of ", dim, " floats");
    CC_CHECK(int64_t(text_image.size()) == T, "retrieval: ", T, " text embeddings but ", text_image.size(),
             " caption -> image indices");
    return retrieval_recall_scored(
        I, text_image,
        [&](bool text_queries, int64_t q0, int64_t m, float* out) {
            const std::vector<float>& queries = text_queries ? text_emb : image_emb;
            const std::vector<float>& items = text_queries ? image_emb : text_emb;
            const int64_t n_items = text_queries ? I : T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n_items), int(dim), 1.0f,
                        queries.data() + q0 * dim, int(dim), items.data(), int(dim), 0.0f, out, int(n_items));
        },
        dup);
}

RetrievalResult retrieval_recall_scored(int64_t n, const RetrievalScores& fill, const DuplicateInputs& dup) {
    std::vector<int64_t> text_image(static_cast<size_t>(std::max<int64_t>(n, 0)));
    for (int64_t i = 0; i < n; ++i) text_image[size_t(i)] = i;
    return retrieval_recall_scored(n, text_image, fill, dup);
}

RetrievalResult retrieval_recall_scored(int64_t n_images, const std::vector<int64_t>& text_image,
                                        const RetrievalScores& fill, const DuplicateInputs& dup) {
    const int64_t I = n_images, T = int64_t(text_image.size());
    CC_CHECK(I >= 0, "retrieval: ", I, " images");
    // The captions of each image, as CSR: caps[first[i] .. first[i + 1]).
    std::vector<int64_t> first(size_t(I + 1), 0), caps(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
        const int64_t i = text_image[size_t(t)];
        CC_CHECK(i >= 0 && i < I, "retrieval: caption ", t, " belongs to image ", i, ", outside the ", I, " images");
        ++first[size_t(i + 1)];
    }
    for (int64_t i = 0; i < I; ++i) {
        CC_CHECK(first[size_t(i + 1)] > 0, "retrieval: image ", i, " has no caption");
        first[size_t(i + 1)] += first[size_t(i)];
    }
    {
        std::vector<int64_t> fill_at(first.begin(), first.end() - 1);
        for (int64_t t = 0; t < T; ++t) caps[size_t(fill_at[size_t(text_image[size_t(t)])]++)] = t;
    }
    const std::vector<int64_t> irep = reps_or_identity(dup.images, I, "images");
    const std::vector<int64_t> trep = reps_or_identity(dup.texts, T, "texts");
    const Groups text_groups(trep), image_groups(irep);
    RetrievalResult r;
    r.n = T;
    r.images = I;
    if (T == 0) return r;

    // Ranks of the positives, in query blocks so memory stays at block x max(I, T).
    // Only representative queries are scored; each scores all of its members.
    const int64_t block = 512;
    std::vector<float> sims(size_t(std::min(block, std::max(I, T)) * std::max(I, T)));
    // text -> image: images not identical to the caption's own image scoring at
    // least as high as it.
    std::vector<int64_t> t2i(static_cast<size_t>(T));
    for (int64_t q0 = 0; q0 < T; q0 += block) {
        const int64_t m = std::min(block, T - q0);
        fill(true, q0, m, sims.data());
        require_finite(sims.data(), m, I, "retrieval", "caption", q0, "image");
#pragma omp parallel for schedule(static)
        for (int64_t q = 0; q < m; ++q) {
            const int64_t u = q0 + q;
            if (trep[size_t(u)] != u) continue;
            const float* row = &sims[size_t(q * I)];
            for (int64_t g = text_groups.first[size_t(u)]; g < text_groups.first[size_t(u + 1)]; ++g) {
                const int64_t t = text_groups.items[size_t(g)];
                const int64_t own = irep[size_t(text_image[size_t(t)])];
                const float pos = row[own];
                int64_t higher = 0;
                for (int64_t j = 0; j < I; ++j) higher += irep[size_t(j)] != own && row[irep[size_t(j)]] >= pos;
                t2i[size_t(t)] = higher;
            }
        }
    }
    // image -> text: texts not identical to any of the image's captions scoring at
    // least as high as its best caption.
    std::vector<int64_t> i2t(static_cast<size_t>(I));
    for (int64_t q0 = 0; q0 < I; q0 += block) {
        const int64_t m = std::min(block, I - q0);
        fill(false, q0, m, sims.data());
        require_finite(sims.data(), m, T, "retrieval", "image", q0, "caption");
#pragma omp parallel for schedule(static)
        for (int64_t q = 0; q < m; ++q) {
            const int64_t v = q0 + q;
            if (irep[size_t(v)] != v) continue;
            const float* row = &sims[size_t(q * T)];
            std::vector<int64_t> own;  // the distinct texts of the image's captions, sorted
            for (int64_t g = image_groups.first[size_t(v)]; g < image_groups.first[size_t(v + 1)]; ++g) {
                const int64_t i = image_groups.items[size_t(g)];
                own.clear();
                for (int64_t c = first[size_t(i)]; c < first[size_t(i + 1)]; ++c) own.push_back(trep[size_t(caps[size_t(c)])]);
                std::sort(own.begin(), own.end());
                float best = row[own[0]];
                for (const int64_t u : own) best = std::max(best, row[u]);
                int64_t higher = 0;
                for (int64_t j = 0; j < T; ++j) {
                    const int64_t u = trep[size_t(j)];
                    higher += row[u] >= best && !std::binary_search(own.begin(), own.end(), u);
                }
                i2t[size_t(i)] = higher;
            }
        }
    }
    auto recall = [](const std::vector<int64_t>& rk, int64_t k) {
        return double(std::count_if(rk.begin(), rk.end(), [k](int64_t v) { return v < k; })) / double(rk.size());
    };
    r.image_to_text_r1 = recall(i2t, 1);
    r.image_to_text_r5 = recall(i2t, 5);
    r.image_to_text_r10 = recall(i2t, 10);
    r.text_to_image_r1 = recall(t2i, 1);
    r.text_to_image_r5 = recall(t2i, 5);
    r.text_to_image_r10 = recall(t2i, 10);
    return r;
}

}  // namespace curaclip
