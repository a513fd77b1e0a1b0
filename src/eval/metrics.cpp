#include "eval/metrics.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "eval/embed.h"

namespace curaclip {

std::vector<std::string> default_templates() {
    return {"a photo of a {}.", "a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}."};
}

std::vector<float> zero_shot_classifier(ClipModel& model, const BpeTokenizer& tok,
                                        const std::vector<std::string>& classnames,
                                        const std::vector<std::string>& templates) {
    CC_CHECK(!classnames.empty(), "zero-shot: no class names");
    CC_CHECK(!templates.empty(), "zero-shot: no prompt templates");
    const int ctx = model.config().context_length;
    const int64_t D = model.config().embed_dim, K = int64_t(classnames.size()), T = int64_t(templates.size());
    std::vector<int32_t> tokens;
    tokens.reserve(size_t(K * T * ctx));
    for (const auto& name : classnames)
        for (const auto& t : templates) {
            std::string prompt = t;
            const auto pos = prompt.find("{}");
            CC_CHECK(pos != std::string::npos, "prompt template '", t, "' has no {}");
            prompt.replace(pos, 2, name);
            const std::vector<int32_t> ids = tok.encode(prompt, ctx);
            tokens.insert(tokens.end(), ids.begin(), ids.end());
        }
    const std::vector<float> emb = embed_texts(model, tokens.data(), K * T);
    std::vector<float> cls(size_t(K * D), 0.0f);
    for (int64_t k = 0; k < K; ++k) {
        float* c = &cls[size_t(k * D)];
        for (int64_t t = 0; t < T; ++t)
            for (int64_t d = 0; d < D; ++d) c[d] += emb[size_t((k * T + t) * D + d)];
        double norm = 0;
        for (int64_t d = 0; d < D; ++d) norm += double(c[d]) * c[d];
        const float inv = float(1.0 / std::max(std::sqrt(norm), 1e-12));
        for (int64_t d = 0; d < D; ++d) c[d] *= inv;
    }
    return cls;
}

ZeroShotResult zero_shot_accuracy(const std::vector<float>& image_emb, const std::vector<int32_t>& labels,
                                  const std::vector<float>& class_emb, int64_t dim) {
    const int64_t n = int64_t(labels.size()), K = int64_t(class_emb.size()) / dim;
    CC_CHECK(int64_t(image_emb.size()) == n * dim, "zero-shot: ", image_emb.size() / size_t(dim),
             " image embeddings for ", n, " labels");
    std::vector<float> logits(size_t(n * K));
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(K), int(dim), 1.0f, image_emb.data(),
                    int(dim), class_emb.data(), int(dim), 0.0f, logits.data(), int(K));
    return zero_shot_accuracy_from_logits(logits, labels, K);
}

ZeroShotResult zero_shot_accuracy_from_logits(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                                              int64_t K) {
    const int64_t n = int64_t(labels.size());
    CC_CHECK(K > 0 && int64_t(logits.size()) == n * K, "zero-shot: ", logits.size(), " logits for ", n, " labels x ",
             K, " classes");
    ZeroShotResult r;
    r.n = n;
    int64_t top1 = 0, top5 = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int32_t y = labels[size_t(i)];
        CC_CHECK(y >= 0 && y < K, "zero-shot: label ", y, " outside the ", K, " classes");
        const float* row = &logits[size_t(i * K)];
        int64_t higher = 0;
        for (int64_t k = 0; k < K; ++k) higher += row[k] > row[y];
        top1 += higher < 1;
        top5 += higher < 5;
    }
    r.top1 = n ? double(top1) / double(n) : 0.0;
    r.top5 = n ? double(top5) / double(n) : 0.0;
    return r;
}

RetrievalResult retrieval_recall(const std::vector<float>& image_emb, const std::vector<float>& text_emb, int64_t dim) {
    const int64_t n = int64_t(image_emb.size()) / dim;
    CC_CHECK(int64_t(text_emb.size()) == n * dim, "retrieval: ", n, " images but ", text_emb.size() / size_t(dim),
             " texts");
    return retrieval_recall_scored(n, [&](bool text_queries, int64_t q0, int64_t m, float* out) {
        const std::vector<float>& queries = text_queries ? text_emb : image_emb;
        const std::vector<float>& items = text_queries ? image_emb : text_emb;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(dim), 1.0f, queries.data() + q0 * dim,
                    int(dim), items.data(), int(dim), 0.0f, out, int(n));
    });
}

RetrievalResult retrieval_recall_scored(int64_t n, const RetrievalScores& fill) {
    RetrievalResult r;
    r.n = n;
    if (n == 0) return r;
    // Ranks of the positives, in row blocks so memory stays at block x n.
    const int64_t block = 512;
    std::vector<float> sims(size_t(std::min(block, n) * n));
    auto ranks = [&](bool text_queries, std::vector<int64_t>& out) {
        for (int64_t q0 = 0; q0 < n; q0 += block) {
            const int64_t m = std::min(block, n - q0);
            fill(text_queries, q0, m, sims.data());
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < m; ++i) {
                const float* row = &sims[size_t(i * n)];
                const float pos = row[q0 + i];
                int64_t higher = 0;
                for (int64_t j = 0; j < n; ++j) higher += row[j] > pos;
                out[size_t(q0 + i)] = higher;
            }
        }
    };
    std::vector<int64_t> i2t(static_cast<size_t>(n)), t2i(static_cast<size_t>(n));
    ranks(false, i2t);
    ranks(true, t2i);
    auto recall = [&](const std::vector<int64_t>& rk, int64_t k) {
        return double(std::count_if(rk.begin(), rk.end(), [k](int64_t v) { return v < k; })) / double(n);
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
