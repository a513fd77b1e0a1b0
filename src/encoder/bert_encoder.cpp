// BERT-family sentence encoder on the Backend ops (see bert_encoder.h).
#include "encoder/bert_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "core/check.h"
#include "encoder/pooling.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace curaclip::encoder {

struct BertEncoder::Layer {
    Tensor wqkv, bqkv, wo, bo, ln1_w, ln1_b, wi, bi, wo2, bo2, ln2_w, ln2_b;
};

namespace {

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
uint64_t fnv1a_file(uint64_t h, const std::string& path, uint64_t max_bytes) {
    std::ifstream f(path, std::ios::binary);
    CC_CHECK(f.good(), "sentence encoder: ", path, " cannot be read");
    std::vector<char> buf(1 << 16);
    uint64_t left = max_bytes;
    while (left > 0 && f) {
        f.read(buf.data(), std::streamsize(std::min<uint64_t>(buf.size(), left)));
        const auto got = f.gcount();
        if (got <= 0) break;
        h = fnv1a(h, buf.data(), size_t(got));
        left -= uint64_t(got);
    }
    return h;
}

// Reads one weight as float, checking its shape against config.json's.
std::vector<float> weight(const io::SafetensorsFile& f, const std::string& name, std::vector<int64_t> shape) {
    CC_CHECK(f.has(name), "sentence encoder: ", f.path(), " has no tensor '", name,
             "' (expected a BERT model's weights)");
    const auto& t = f.tensor(name);
    auto str = [](const std::vector<int64_t>& s) {
        std::string r = "[";
        for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
        return r + "]";
    };
    CC_CHECK(t.shape == shape, "sentence encoder: ", f.path(), ": tensor '", name, "' has shape ", str(t.shape),
             ", config.json implies ", str(shape));
    return f.read_f32(name);
}

}  // namespace

BertEncoder::BertEncoder(Backend& be, const std::string& dir, int64_t batch, const std::string& pooling)
    : be_(be),
      cfg_(read_bert_config(dir)),
      tok_(WordPieceTokenizer::from_file((fs::path(cfg_.dir) / "vocab.txt").string())),
      pooling_(pooling.empty() ? cfg_.pooling : parse_pooling(pooling)),
      batch_(batch) {
    CC_CHECK(batch_ > 0, "sentence encoder: batch must be positive, got ", batch_);
    CC_CHECK(tok_.vocab_size() <= cfg_.vocab_size, "sentence encoder: ", cfg_.dir, "/vocab.txt has ",
             tok_.vocab_size(), " tokens, more than config.json's vocab_size ", cfg_.vocab_size);
    const std::string st_path = (fs::path(cfg_.dir) / "model.safetensors").string();
    const io::SafetensorsFile f(st_path);
    const std::string pre = f.has("bert.embeddings.word_embeddings.weight") ? "bert." : "";
    const int64_t C = cfg_.hidden, I = cfg_.intermediate, V = cfg_.vocab_size, P = cfg_.max_position;
    const int64_t T = cfg_.max_seq_length;
    ln_scale_ = float(std::sqrt(1e-5 / cfg_.layer_norm_eps));

    // Identity of the embedding space.
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a_file(h, (fs::path(cfg_.dir) / "config.json").string(), ~0ull);
    h = fnv1a_file(h, (fs::path(cfg_.dir) / "vocab.txt").string(), ~0ull);
    h = fnv1a_file(h, st_path, f.data_start());
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    id_ = std::string("bert ") + fs::path(cfg_.dir).filename().string() + " " + pooling_name(pooling_) + " " + hex;

    // Parameters: laid out once against a measuring arena, then for real.
    const DType dt = be_.dtype();
    layers_.resize(size_t(cfg_.layers));
    auto layout = [&](Arena& a) {
        wte_ = a.alloc({V, C}, dt);
        wpe_ = a.alloc({T, C}, dt);
        ln_e_w_ = a.alloc({C}, dt);
        ln_e_b_ = a.alloc({C}, dt);
        for (Layer& l : layers_) {
            l.wqkv = a.alloc({3 * C, C}, dt);
            l.bqkv = a.alloc({3 * C}, dt);
            l.wo = a.alloc({C, C}, dt);
            l.bo = a.alloc({C}, dt);
            l.ln1_w = a.alloc({C}, dt);
            l.ln1_b = a.alloc({C}, dt);
            l.wi = a.alloc({I, C}, dt);
            l.bi = a.alloc({I}, dt);
            l.wo2 = a.alloc({C, I}, dt);
            l.bo2 = a.alloc({C}, dt);
            l.ln2_w = a.alloc({C}, dt);
            l.ln2_b = a.alloc({C}, dt);
        }
    };
    Arena measure;
    layout(measure);
    params_ = Arena(be_, measure.used(), "sentence encoder parameters");
    layout(params_);

    const std::string e = pre + "embeddings.";
    {
        std::vector<float> w = weight(f, e + "word_embeddings.weight", {V, C});
        for (float& v : w) v *= ln_scale_;
        be_.upload(wte_, w.data());
        const std::vector<float> pos = weight(f, e + "position_embeddings.weight", {P, C});
        const std::vector<float> tt = weight(f, e + "token_type_embeddings.weight", {cfg_.type_vocab, C});
        // position[t] + token_type[0] (every token is of segment 0), scaled like the words.
        std::vector<float> pe(size_t(T * C));
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < C; ++c) pe[size_t(t * C + c)] = (pos[size_t(t * C + c)] + tt[size_t(c)]) * ln_scale_;
        be_.upload(wpe_, pe.data());
        be_.upload(ln_e_w_, weight(f, e + "LayerNorm.weight", {C}).data());
        be_.upload(ln_e_b_, weight(f, e + "LayerNorm.bias", {C}).data());
    }
    for (int64_t i = 0; i < cfg_.layers; ++i) {
        Layer& l = layers_[size_t(i)];
        const std::string p = pre + "encoder.layer." + std::to_string(i) + ".";
        std::vector<float> wqkv, bqkv;
        for (const char* n : {"query", "key", "value"}) {
            const auto w = weight(f, p + "attention.self." + n + ".weight", {C, C});
            const auto b = weight(f, p + "attention.self." + n + ".bias", {C});
            wqkv.insert(wqkv.end(), w.begin(), w.end());
            bqkv.insert(bqkv.end(), b.begin(), b.end());
        }
        be_.upload(l.wqkv, wqkv.data());
        be_.upload(l.bqkv, bqkv.data());
        be_.upload(l.wo, weight(f, p + "attention.output.dense.weight", {C, C}).data());
        be_.upload(l.bo, weight(f, p + "attention.output.dense.bias", {C}).data());
        be_.upload(l.ln1_w, weight(f, p + "attention.output.LayerNorm.weight", {C}).data());
        be_.upload(l.ln1_b, weight(f, p + "attention.output.LayerNorm.bias", {C}).data());
        be_.upload(l.wi, weight(f, p + "intermediate.dense.weight", {I, C}).data());
        be_.upload(l.bi, weight(f, p + "intermediate.dense.bias", {I}).data());
        be_.upload(l.wo2, weight(f, p + "output.dense.weight", {C, I}).data());
        be_.upload(l.bo2, weight(f, p + "output.dense.bias", {C}).data());
        be_.upload(l.ln2_w, weight(f, p + "output.LayerNorm.weight", {C}).data());
        be_.upload(l.ln2_b, weight(f, p + "output.LayerNorm.bias", {C}).data());
    }
    if (pooling_ == Pooling::pooler) {
        CC_CHECK(f.has(pre + "pooler.dense.weight"), "sentence encoder: pooler pooling needs '", pre,
                 "pooler.dense.weight', which ", st_path, " lacks (use --pooling mean or cls)");
        pool_w_ = weight(f, pre + "pooler.dense.weight", {C, C});
        pool_b_ = weight(f, pre + "pooler.dense.bias", {C});
    }
}

BertEncoder::~BertEncoder() = default;

void BertEncoder::ensure_activations(int64_t tokens) {
    if (tokens <= act_tokens_) return;
    const int64_t n = std::max(tokens, act_tokens_ * 2);
    const int64_t C = cfg_.hidden, I = cfg_.intermediate;
    const DType dt = be_.dtype();
    auto layout = [&](Arena& a) {
        x_ = a.alloc({n, C}, dt);
        h_ = a.alloc({n, C}, dt);
        qkv_ = a.alloc({n, 3 * C}, dt);
        att_ = a.alloc({n, C}, dt);
        proj_ = a.alloc({n, C}, dt);
        inter_ = a.alloc({n, I}, dt);
        gel_ = a.alloc({n, I}, dt);
        mean_ = a.alloc({n}, DType::f32);
        rstd_ = a.alloc({n}, DType::f32);
        tokens_ = a.alloc({n}, DType::i32);
        lengths_ = a.alloc({n}, DType::i32);
    };
    acts_ = Arena();  // free the old block first
    Arena measure;
    layout(measure);
    acts_ = Arena(be_, measure.used(), "sentence encoder activations");
    layout(acts_);
    act_tokens_ = n;
}

void BertEncoder::forward_batch(const std::vector<const std::vector<int32_t>*>& rows, float* out) {
    const int64_t B = int64_t(rows.size()), C = cfg_.hidden, I = cfg_.intermediate;
    int64_t T = 0;
    for (const auto* r : rows) T = std::max<int64_t>(T, int64_t(r->size()));
    const int64_t N = B * T;
    ensure_activations(N);
    std::vector<int32_t> ids(static_cast<size_t>(N), tok_.pad_id()), len(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
        std::copy(rows[size_t(b)]->begin(), rows[size_t(b)]->end(), ids.begin() + b * T);
        len[size_t(b)] = int32_t(rows[size_t(b)]->size());
    }
    auto v = [](const Tensor& t, Shape s) { return Tensor{t.data, t.dtype, s}; };
    const Tensor tokens = v(tokens_, {B, T}), lengths = v(lengths_, {B});
    be_.upload_raw(tokens, ids.data());
    be_.upload_raw(lengths, len.data());
    const Tensor x = v(x_, {N, C}), h = v(h_, {N, C}), qkv = v(qkv_, {B, T, 3 * C}), att = v(att_, {B, T, C});
    const Tensor proj = v(proj_, {N, C}), inter = v(inter_, {N, I}), gel = v(gel_, {N, I});
    const Tensor mean = v(mean_, {N}), rstd = v(rstd_, {N});
    const bool rescale = ln_scale_ != 1.0f;
    be_.embedding_forward(v(x_, {B, T, C}), tokens, wte_, wpe_);
    be_.layernorm_forward(h, mean, rstd, x, ln_e_w_, ln_e_b_);
    for (const Layer& l : layers_) {
        be_.linear_forward(v(qkv_, {N, 3 * C}), h, l.wqkv, l.bqkv);
        be_.attention_padded_forward(att, qkv, lengths, int(cfg_.heads));
        be_.linear_forward(proj, v(att_, {N, C}), l.wo, l.bo);
        be_.add(x, h, proj);
        if (rescale) be_.scale(x, ln_scale_);
        be_.layernorm_forward(h, mean, rstd, x, l.ln1_w, l.ln1_b);
        be_.linear_forward(inter, h, l.wi, l.bi);
        be_.activation_forward(gel, inter, Activation::gelu);
        be_.linear_forward(proj, gel, l.wo2, l.bo2);
        be_.add(x, h, proj);
        if (rescale) be_.scale(x, ln_scale_);
        be_.layernorm_forward(h, mean, rstd, x, l.ln2_w, l.ln2_b);
    }
    std::vector<float> hidden(size_t(N * C));
    be_.download(hidden.data(), h);
    pool_rows(pooling_, hidden.data(), len.data(), B, T, C, pool_w_.empty() ? nullptr : pool_w_.data(),
              pool_b_.empty() ? nullptr : pool_b_.data(), out);
    l2_normalize_rows(out, B, C);
}

std::vector<float> BertEncoder::embed_ids(const std::vector<std::vector<int32_t>>& ids) {
    const int64_t n = int64_t(ids.size()), C = cfg_.hidden;
    for (int64_t i = 0; i < n; ++i) {
        const auto& r = ids[size_t(i)];
        CC_CHECK(!r.empty() && int64_t(r.size()) <= cfg_.max_seq_length, "sentence encoder: token row ", i, " has ",
                 r.size(), " ids, expected 1 to ", cfg_.max_seq_length);
        for (int32_t t : r)
            CC_CHECK(t >= 0 && t < cfg_.vocab_size, "sentence encoder: token row ", i, " holds id ", t,
                     " outside the vocabulary [0, ", cfg_.vocab_size, ")");
    }
    // Longest first (as sentence-transformers), so each batch pads to similar lengths.
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return ids[size_t(a)].size() > ids[size_t(b)].size(); });
    std::vector<float> out(static_cast<size_t>(n * C)), pooled;
    std::vector<const std::vector<int32_t>*> rows;
    for (int64_t s = 0; s < n; s += batch_) {
        const int64_t c = std::min(batch_, n - s);
        rows.clear();
        for (int64_t k = 0; k < c; ++k) rows.push_back(&ids[size_t(order[size_t(s + k)])]);
        pooled.resize(size_t(c * C));
        forward_batch(rows, pooled.data());
        for (int64_t k = 0; k < c; ++k)
            std::copy(pooled.begin() + k * C, pooled.begin() + (k + 1) * C, out.begin() + order[size_t(s + k)] * C);
    }
    return out;
}

std::vector<float> BertEncoder::embed(const std::vector<std::string>& texts) {
    // Identical texts are embedded once (caption corpora repeat captions; Fashion-MNIST's
    // 10k test captions hold 1440 distinct ones): same ids, so the same row exactly.
    std::unordered_map<std::string_view, int64_t> first;
    std::vector<int64_t> slot(texts.size());
    std::vector<size_t> uniq;
    for (size_t i = 0; i < texts.size(); ++i) {
        const auto [it, fresh] = first.emplace(texts[i], int64_t(uniq.size()));
        if (fresh) uniq.push_back(i);
        slot[i] = it->second;
    }
    std::vector<std::vector<int32_t>> ids(uniq.size());
    const int max_len = int(cfg_.max_seq_length);
#pragma omp parallel for schedule(dynamic, 64) if (uniq.size() > 256)
    for (size_t u = 0; u < uniq.size(); ++u) ids[u] = tok_.encode(texts[uniq[u]], max_len);
    const std::vector<float> e = embed_ids(ids);
    if (uniq.size() == texts.size()) return e;
    const int64_t C = cfg_.hidden;
    std::vector<float> out(texts.size() * size_t(C));
    for (size_t i = 0; i < texts.size(); ++i)
        std::copy_n(e.begin() + slot[i] * C, C, out.begin() + int64_t(i) * C);
    return out;
}

}  // namespace curaclip::encoder
