#include "eval/evaluate.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include "eval/embed.h"
#include "io/dataset_reader.h"
#include "io/loader.h"

namespace curaclip {

EvalEmbeddings embed_eval_set(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                              const Communicator& comm, bool images) {
    const ModelConfig& c = model.config();
    io::DatasetExpect expect;
    if (images) {
        expect.image_size = c.image_size;
        expect.channels = c.channels;
    }
    expect.context_length = c.context_length;
    expect.tokenizer_id = tok.id_hex();
    const io::DatasetReader reader(eval_path, expect);
    const int64_t N = reader.size(), D = c.embed_dim, B = model.max_batch(), ctx = c.context_length;

    EvalEmbeddings e;
    e.n = N;
    e.dim = D;
    e.has_image_ids = reader.has_image_ids();
    // The distinct images in order of first occurrence, and each row's image.
    e.text_image.resize(size_t(N));
    if (e.has_image_ids) {
        const std::vector<int64_t> ids = reader.read_image_ids(0, N);
        std::unordered_map<int64_t, int64_t> index;
        index.reserve(size_t(N));
        for (int64_t r = 0; r < N; ++r) {
            const auto [it, inserted] = index.emplace(ids[size_t(r)], int64_t(e.image_rows.size()));
            if (inserted) e.image_rows.push_back(r);
            e.text_image[size_t(r)] = it->second;
        }
    } else {
        std::iota(e.text_image.begin(), e.text_image.end(), int64_t(0));
        e.image_rows = e.text_image;
    }
    e.n_images = int64_t(e.image_rows.size());

    // This rank's block of the captions (rows), embedded batch by batch and
    // scattered into zeroed full matrices; the all-reduce fills in the others.
    e.texts.assign(size_t(N * D), 0.0f);
    std::vector<int32_t> row_labels(size_t(N), 0);
    {
        const auto [begin, end] = io::SequentialReader::block_range(N, comm.rank(), comm.size());
        std::vector<int32_t> tokens(size_t(B * ctx));
        for (int64_t row = begin; row < end; row += B) {
            const int64_t m = std::min(B, end - row);
            reader.read_range(row, m, nullptr, tokens.data(), &row_labels[size_t(row)], nullptr);
            const std::vector<float> te = embed_texts(model, tokens.data(), m);
            std::copy(te.begin(), te.end(), e.texts.begin() + row * D);
        }
    }
    // This rank's block of the distinct images, each read from its first row.
    if (images) {
        e.images.assign(size_t(e.n_images * D), 0.0f);
        const auto [begin, end] = io::SequentialReader::block_range(e.n_images, comm.rank(), comm.size());
        std::vector<uint8_t> pixels(size_t(B) * reader.image_bytes());
        for (int64_t i = begin; i < end; i += B) {
            const int64_t m = std::min(B, end - i);
            reader.read_rows(&e.image_rows[size_t(i)], size_t(m), pixels.data(), nullptr, nullptr, nullptr);
            const std::vector<float> ie = embed_images(model, pixels.data(), m);
            std::copy(ie.begin(), ie.end(), e.images.begin() + i * D);
        }
    }
    if (comm.size() > 1) {
        if (images) comm.allreduce_sum(e.images.data(), e.images.size());
        comm.allreduce_sum(e.texts.data(), e.texts.size());
        comm.allreduce_sum(row_labels.data(), row_labels.size());
    }
    e.classnames = reader.classnames();
    e.has_labels = reader.has_labels() && !e.classnames.empty();
    // Zero-shot classifies images: each takes its first row's label, which every
    // other row of the image must repeat (else the image has no one true class).
    e.labels.resize(size_t(e.n_images));
    for (int64_t i = 0; i < e.n_images; ++i) e.labels[size_t(i)] = row_labels[size_t(e.image_rows[size_t(i)])];
    if (e.has_labels && e.has_image_ids)
        for (int64_t r = 0; r < N; ++r) {
            const int64_t i = e.text_image[size_t(r)], r0 = e.image_rows[size_t(i)];
            CC_CHECK(row_labels[size_t(r)] == row_labels[size_t(r0)], eval_path, ": rows ", r0, " and ", r,
                     " show the same image (/image_ids) but have labels ", row_labels[size_t(r0)], " and ",
                     row_labels[size_t(r)]);
        }
    return e;
}

EvalReport evaluate_embeddings(const EvalEmbeddings& e, const std::vector<float>& class_emb, int64_t templates,
                               const std::string& dataset) {
    EvalReport r;
    r.dataset = dataset;
    if (e.has_labels) {
        r.zero_shot = zero_shot_accuracy(e.images, e.labels, class_emb, e.dim);
        r.templates = templates;
    }
    r.retrieval = retrieval_recall(e.images, e.texts, e.text_image, e.dim);
    return r;
}

EvalReport evaluate(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                    const Communicator& comm, const std::vector<std::string>& templates) {
    const EvalEmbeddings e = embed_eval_set(model, tok, eval_path, comm);
    std::vector<float> cls;
    if (e.has_labels) cls = zero_shot_classifier(model, tok, e.classnames, templates);
    return evaluate_embeddings(e, cls, int64_t(templates.size()), eval_path);
}

std::string format_report(const EvalReport& r) {
    std::ostringstream os;
    char buf[256];
    if (r.zero_shot.n > 0) {
        std::snprintf(buf, sizeof buf,
                      "zero-shot classification (%lld images, %lld classes, %lld templates): top-1 %.2f%%  top-5 "
                      "%.2f%%  mean per-class recall %.2f%%\n",
                      (long long)r.zero_shot.n, (long long)r.zero_shot.classes, (long long)r.templates,
                      100 * r.zero_shot.top1, 100 * r.zero_shot.top5, 100 * r.zero_shot.mean_per_class_recall);
        os << buf;
    }
    std::snprintf(buf, sizeof buf, "retrieval (%lld images, %lld captions)    R@1      R@5      R@10\n",
                  (long long)r.retrieval.images, (long long)r.retrieval.n);
    os << buf;
    std::snprintf(buf, sizeof buf, "  image -> text     %6.2f%%  %6.2f%%  %6.2f%%\n", 100 * r.retrieval.image_to_text_r1,
                  100 * r.retrieval.image_to_text_r5, 100 * r.retrieval.image_to_text_r10);
    os << buf;
    std::snprintf(buf, sizeof buf, "  text -> image     %6.2f%%  %6.2f%%  %6.2f%%\n", 100 * r.retrieval.text_to_image_r1,
                  100 * r.retrieval.text_to_image_r5, 100 * r.retrieval.text_to_image_r10);
    os << buf;
    return os.str();
}

std::string report_json_fields(const EvalReport& r) {
    char buf[768];
    std::snprintf(buf, sizeof buf,
                  "\"zeroshot_top1\": %.6f, \"zeroshot_top5\": %.6f, \"zeroshot_mean_per_class_recall\": %.6f, "
                  "\"zeroshot_images\": %lld, \"zeroshot_classes\": %lld, \"zeroshot_templates\": %lld, "
                  "\"i2t_r1\": %.6f, \"i2t_r5\": %.6f, \"i2t_r10\": %.6f, \"t2i_r1\": %.6f, \"t2i_r5\": %.6f, "
                  "\"t2i_r10\": %.6f, \"eval_pairs\": %lld, \"eval_images\": %lld, \"eval_captions\": %lld",
                  r.zero_shot.top1, r.zero_shot.top5, r.zero_shot.mean_per_class_recall, (long long)r.zero_shot.n,
                  (long long)r.zero_shot.classes, (long long)r.templates, r.retrieval.image_to_text_r1,
                  r.retrieval.image_to_text_r5, r.retrieval.image_to_text_r10, r.retrieval.text_to_image_r1,
                  r.retrieval.text_to_image_r5, r.retrieval.text_to_image_r10, (long long)r.retrieval.n,
                  (long long)r.retrieval.images, (long long)r.retrieval.n);
    return buf;
}

}  // namespace curaclip
