#include "eval/evaluate.h"

#include <cstdio>
#include <sstream>

#include "eval/embed.h"
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
    io::SequentialReader reader(eval_path, model.max_batch(), &comm, expect);
    const int64_t N = reader.reader().size(), D = c.embed_dim;

    // This rank's block, embedded batch by batch, scattered into zeroed full matrices.
    EvalEmbeddings e;
    e.n = N;
    e.dim = D;
    if (images) e.images.assign(size_t(N * D), 0.0f);
    e.texts.assign(size_t(N * D), 0.0f);
    e.labels.assign(size_t(N), 0);
    io::Batch b;
    int64_t row = reader.begin();
    while (reader.next(b)) {
        if (images) {
            const std::vector<float> ie = embed_images(model, b.images.data(), b.size);
            std::copy(ie.begin(), ie.end(), e.images.begin() + row * D);
        }
        const std::vector<float> te = embed_texts(model, b.tokens.data(), b.size);
        std::copy(te.begin(), te.end(), e.texts.begin() + row * D);
        for (int64_t i = 0; i < b.size; ++i) e.labels[size_t(row + i)] = b.labels[size_t(i)];
        row += b.size;
    }
    if (comm.size() > 1) {
        if (images) comm.allreduce_sum(e.images.data(), e.images.size());
        comm.allreduce_sum(e.texts.data(), e.texts.size());
        comm.allreduce_sum(e.labels.data(), e.labels.size());
    }
    e.classnames = reader.reader().classnames();
    e.has_labels = reader.reader().has_labels() && !e.classnames.empty();
    return e;
}

EvalReport evaluate(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                    const Communicator& comm, const std::vector<std::string>& templates) {
    const EvalEmbeddings e = embed_eval_set(model, tok, eval_path, comm);
    EvalReport r;
    r.dataset = eval_path;
    if (e.has_labels) {
        const std::vector<float> cls = zero_shot_classifier(model, tok, e.classnames, templates);
        r.zero_shot = zero_shot_accuracy(e.images, e.labels, cls, e.dim);
    }
    r.retrieval = retrieval_recall(e.images, e.texts, e.dim);
    return r;
}

std::string format_report(const EvalReport& r) {
    std::ostringstream os;
    char buf[160];
    if (r.zero_shot.n > 0) {
        std::snprintf(buf, sizeof buf, "zero-shot classification (%lld images): top-1 %.2f%%  top-5 %.2f%%\n",
                      (long long)r.zero_shot.n, 100 * r.zero_shot.top1, 100 * r.zero_shot.top5);
        os << buf;
    }
    std::snprintf(buf, sizeof buf, "retrieval (%lld pairs)    R@1      R@5      R@10\n", (long long)r.retrieval.n);
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
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\"zeroshot_top1\": %.6f, \"zeroshot_top5\": %.6f, \"i2t_r1\": %.6f, \"i2t_r5\": %.6f, "
                  "\"i2t_r10\": %.6f, \"t2i_r1\": %.6f, \"t2i_r5\": %.6f, \"t2i_r10\": %.6f, \"eval_pairs\": %lld",
                  r.zero_shot.top1, r.zero_shot.top5, r.retrieval.image_to_text_r1, r.retrieval.image_to_text_r5,
                  r.retrieval.image_to_text_r10, r.retrieval.text_to_image_r1, r.retrieval.text_to_image_r5,
                  r.retrieval.text_to_image_r10, (long long)r.retrieval.n);
    return buf;
}

}  // namespace curaclip
