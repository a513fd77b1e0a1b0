#include "eval/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "eval/embed.h"
#include "io/dataset_reader.h"
#include "io/loader.h"

namespace curaclip {

namespace {

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
uint64_t mix64(uint64_t z) {  // splitmix64's finalizer
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A 128-bit hash of an image's pixels: two independent 64-bit lanes over 8-byte
// words (the tail zero-padded), each finalized with the length. Used only to find
// identical images; a false match needs both lanes to collide.
std::pair<uint64_t, uint64_t> pixel_hash(const uint8_t* p, size_t n) {
    uint64_t a = 0x9E3779B97F4A7C15ull, b = 0xC2B2AE3D27D4EB4Full;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        a = rotl(a ^ (w * 0x87C37B91114253D5ull), 31) * 0x4CF5AD432745937Full;
        b = rotl(b + (w * 0x52DCE729ull), 29) * 0xFF51AFD7ED558CCDull + 0x38495AB5ull;
    }
    if (i < n) {
        uint64_t w = 0;
        std::memcpy(&w, p + i, n - i);
        a = rotl(a ^ (w * 0x87C37B91114253D5ull), 31) * 0x4CF5AD432745937Full;
        b = rotl(b + (w * 0x52DCE729ull), 29) * 0xFF51AFD7ED558CCDull + 0x38495AB5ull;
    }
    return {mix64(a ^ n), mix64(b + n * 0x9E3779B97F4A7C15ull)};
}

// "rows 3, 17 and 20" / "rows 0, 1, 2, 3, 4 and 1995 more"
std::string rows_list(const std::vector<int64_t>& rows) {
    std::string s = rows.size() == 1 ? "row " : "rows ";
    const size_t shown = std::min<size_t>(rows.size(), 5);
    for (size_t i = 0; i < shown; ++i)
        s += (i == 0 ? "" : (i + 1 == rows.size() ? " and " : ", ")) + std::to_string(rows[i]);
    if (rows.size() > shown) s += " and " + std::to_string(rows.size() - shown) + " more";
    return s;
}

bool row_finite(const float* x, int64_t D) {
    for (int64_t d = 0; d < D; ++d)
        if (!std::isfinite(x[d])) return false;
    return true;
}

}  // namespace

EvalEmbeddings embed_eval_set(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                              const Communicator& comm, bool images, const std::string& model_label) {
    const ModelConfig& c = model.config();
    CC_REQUIRE(tok.vocab_size() <= c.vocab_size, "tokenizer ", tok.id_hex(), " has ", tok.vocab_size(), " ids but ",
               model_label, " has a vocabulary of ", c.vocab_size,
               " (model.vocab_size): its ids would fall outside the model's token embedding");
    io::DatasetExpect expect;
    if (images) {
        expect.image_size = c.image_size;
        expect.channels = c.channels;
    }
    expect.context_length = c.context_length;
    expect.tokenizer_id = tok.id_hex();
    // Token rows are checked as they are read: ids in [0, eot] of the tokenizer,
    // which lies inside the model's vocabulary (checked above), and an eot in each.
    expect.eot_id = tok.eot_id();
    expect.vocab_size = c.vocab_size;
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

    // Every caption's tokens and label, on every rank: all rows are checked (the
    // same Error on every rank) before anything is embedded.
    std::vector<int32_t> tokens(size_t(N * ctx));
    std::vector<int32_t> row_labels(size_t(N), -1);
    reader.read_range(0, N, nullptr, tokens.data(), row_labels.data(), nullptr);
    // Identical token rows are one text.
    std::vector<int64_t> distinct;            // the first row of each distinct text
    std::vector<int64_t> distinct_of(static_cast<size_t>(N));  // row -> its distinct text
    e.dup.texts.resize(size_t(N));
    {
        std::unordered_map<std::string_view, int64_t> seen;
        seen.reserve(size_t(N));
        for (int64_t r = 0; r < N; ++r) {
            const std::string_view key(reinterpret_cast<const char*>(&tokens[size_t(r * ctx)]), size_t(ctx) * 4);
            const auto [it, inserted] = seen.emplace(key, int64_t(distinct.size()));
            if (inserted) distinct.push_back(r);
            distinct_of[size_t(r)] = it->second;
            e.dup.texts[size_t(r)] = distinct[size_t(it->second)];
        }
    }
    const int64_t U = int64_t(distinct.size());
    e.distinct_texts = U;

    // This rank's block of the distinct texts, embedded batch by batch and
    // scattered into a zeroed matrix; the all-reduce fills in the others.
    std::vector<float> text_emb(size_t(U * D), 0.0f);
    {
        const auto [begin, end] = io::SequentialReader::block_range(U, comm.rank(), comm.size());
        std::vector<int32_t> chunk(size_t(B * ctx));
        for (int64_t u = begin; u < end; u += B) {
            const int64_t m = std::min(B, end - u);
            for (int64_t k = 0; k < m; ++k)
                std::copy_n(&tokens[size_t(distinct[size_t(u + k)] * ctx)], ctx, &chunk[size_t(k * ctx)]);
            const std::vector<float> te = embed_texts(model, chunk.data(), m);
            std::copy(te.begin(), te.end(), text_emb.begin() + u * D);
        }
    }
    // This rank's block of the distinct images, each read from its first row, and
    // the hash of its pixels.
    std::vector<int64_t> hashes;
    if (images) {
        e.images.assign(size_t(e.n_images * D), 0.0f);
        hashes.assign(size_t(2 * e.n_images), 0);
        const auto [begin, end] = io::SequentialReader::block_range(e.n_images, comm.rank(), comm.size());
        std::vector<uint8_t> pixels(size_t(B) * reader.image_bytes());
        for (int64_t i = begin; i < end; i += B) {
            const int64_t m = std::min(B, end - i);
            reader.read_rows(&e.image_rows[size_t(i)], size_t(m), pixels.data(), nullptr, nullptr, nullptr);
            const std::vector<float> ie = embed_images(model, pixels.data(), m);
            std::copy(ie.begin(), ie.end(), e.images.begin() + i * D);
            for (int64_t k = 0; k < m; ++k) {
                const auto [h0, h1] = pixel_hash(&pixels[size_t(k) * reader.image_bytes()], reader.image_bytes());
                hashes[size_t(2 * (i + k))] = int64_t(h0);
                hashes[size_t(2 * (i + k) + 1)] = int64_t(h1);
            }
        }
    }
    if (comm.size() > 1) {
        if (images) {
            comm.allreduce_sum(e.images.data(), e.images.size());
            comm.allreduce_sum(hashes.data(), hashes.size());  // each entry set by one rank, zero elsewhere
        }
        comm.allreduce_sum(text_emb.data(), text_emb.size());
    }
    // Non-finite embeddings (NaN or Inf: overflowed weights or activations) would
    // compare false with everything and make every query "rank 0". Every rank
    // holds the same matrices here, so every rank throws the same Error.
    {
        std::vector<int64_t> bad;
        for (int64_t r = 0; r < N; ++r)
            if (!row_finite(&text_emb[size_t(distinct_of[size_t(r)] * D)], D)) bad.push_back(r);
        CC_REQUIRE(bad.empty(), model_label, " on ", eval_path, ": the text embeddings of ", rows_list(bad), " (",
                   bad.size(), " of ", N, " captions) are not finite (NaN or Inf): the model's weights or activations "
                   "overflowed; refusing to report metrics from them");
        if (images) {
            for (int64_t i = 0; i < e.n_images; ++i)
                if (!row_finite(&e.images[size_t(i * D)], D)) bad.push_back(e.image_rows[size_t(i)]);
            CC_REQUIRE(bad.empty(), model_label, " on ", eval_path, ": the image embeddings of ", rows_list(bad), " (",
                       bad.size(), " of ", e.n_images, " images) are not finite (NaN or Inf): the model's weights or "
                       "activations overflowed; refusing to report metrics from them");
        }
    }
    e.texts.resize(size_t(N * D));
    for (int64_t r = 0; r < N; ++r)
        std::copy_n(&text_emb[size_t(distinct_of[size_t(r)] * D)], D, &e.texts[size_t(r * D)]);
    // Identical pixels are one image: its embedding is the first one's.
    if (images) {
        std::map<std::pair<int64_t, int64_t>, int64_t> seen;
        e.dup.images.resize(size_t(e.n_images));
        for (int64_t i = 0; i < e.n_images; ++i) {
            const int64_t first =
                seen.emplace(std::make_pair(hashes[size_t(2 * i)], hashes[size_t(2 * i + 1)]), i).first->second;
            e.dup.images[size_t(i)] = first;
            if (first != i) std::copy_n(&e.images[size_t(first * D)], D, &e.images[size_t(i * D)]);
        }
    }
    e.classnames = reader.classnames();
    e.has_labels = reader.has_labels() && !e.classnames.empty();
    if (e.has_labels) {
        const int64_t K = int64_t(e.classnames.size());
        for (int64_t r = 0; r < N; ++r)
            CC_REQUIRE(row_labels[size_t(r)] >= -1 && row_labels[size_t(r)] < K, eval_path, ": /labels[", r, "] = ",
                       row_labels[size_t(r)], " is not a class of /classnames (", K, " classes: 0..", K - 1,
                       ", or -1 for an unlabelled row)");
    }
    if (e.has_labels) e.dup.classes = first_occurrences(e.classnames);
    // Zero-shot classifies images: each takes its first row's label, which every
    // other row of the image must repeat (else the image has no one true class).
    e.labels.resize(size_t(e.n_images));
    for (int64_t i = 0; i < e.n_images; ++i) e.labels[size_t(i)] = row_labels[size_t(e.image_rows[size_t(i)])];
    if (e.has_labels && e.has_image_ids)
        for (int64_t r = 0; r < N; ++r) {
            const int64_t i = e.text_image[size_t(r)], r0 = e.image_rows[size_t(i)];
            CC_REQUIRE(row_labels[size_t(r)] == row_labels[size_t(r0)], eval_path, ": rows ", r0, " and ", r,
                       " show the same image (/image_ids) but have labels ", row_labels[size_t(r0)], " and ",
                       row_labels[size_t(r)], " (every row of one image must carry the same label)");
        }
    return e;
}

EvalReport evaluate_embeddings(const EvalEmbeddings& e, const std::vector<float>& class_emb, int64_t templates,
                               const std::string& dataset) {
    EvalReport r;
    r.dataset = dataset;
    if (e.has_labels) {
        r.zero_shot = zero_shot_accuracy(e.images, e.labels, class_emb, e.dim, e.dup);
        r.templates = templates;
    }
    r.retrieval = retrieval_recall(e.images, e.texts, e.text_image, e.dim, e.dup);
    return r;
}

EvalReport evaluate(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                    const Communicator& comm, const std::vector<std::string>& templates,
                    const std::string& model_label) {
    const EvalEmbeddings e = embed_eval_set(model, tok, eval_path, comm, /*images=*/true, model_label);
    std::vector<float> cls;
    if (e.has_labels) cls = zero_shot_classifier(model, tok, e.classnames, templates, model_label);
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

nlohmann::ordered_json report_json(const EvalReport& r) {
    auto frac = [](double v) { return std::isfinite(v) ? std::round(v * 1e6) / 1e6 : v; };
    nlohmann::ordered_json j;
    j["zeroshot_top1"] = frac(r.zero_shot.top1);
    j["zeroshot_top5"] = frac(r.zero_shot.top5);
    j["zeroshot_mean_per_class_recall"] = frac(r.zero_shot.mean_per_class_recall);
    nlohmann::ordered_json per_class = nlohmann::ordered_json::array();
    for (const double v : r.zero_shot.per_class_recall)
        per_class.push_back(std::isfinite(v) ? nlohmann::ordered_json(frac(v)) : nlohmann::ordered_json(nullptr));
    j["zeroshot_per_class_recall"] = per_class;  // in /classnames order; null: no sample of the class
    j["zeroshot_images"] = int64_t(r.zero_shot.n);
    j["zeroshot_classes"] = int64_t(r.zero_shot.classes);
    j["zeroshot_templates"] = int64_t(r.templates);
    j["i2t_r1"] = frac(r.retrieval.image_to_text_r1);
    j["i2t_r5"] = frac(r.retrieval.image_to_text_r5);
    j["i2t_r10"] = frac(r.retrieval.image_to_text_r10);
    j["t2i_r1"] = frac(r.retrieval.text_to_image_r1);
    j["t2i_r5"] = frac(r.retrieval.text_to_image_r5);
    j["t2i_r10"] = frac(r.retrieval.text_to_image_r10);
    j["eval_pairs"] = int64_t(r.retrieval.n);
    j["eval_images"] = int64_t(r.retrieval.images);
    j["eval_captions"] = int64_t(r.retrieval.n);
    return j;
}

std::string report_json_fields(const EvalReport& r) {
    const nlohmann::ordered_json j = report_json(r);
    std::string out;
    for (auto it = j.begin(); it != j.end(); ++it)
        out += (out.empty() ? "\"" : ", \"") + it.key() + "\": " + it.value().dump();
    return out;
}

}  // namespace curaclip
