// A tiny random BERT model folder written by a test (config.json, model.safetensors,
// vocab.txt, optionally 1_Pooling/config.json) and its float64 forward pass, as
// Hugging Face BertModel computes it (token type 0, exact GELU, post-LN, eps 1e-12),
// for the sentence encoder's unit and MPI tests (src/encoder/).
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "encoder/bert_config.h"
#include "io/safetensors.h"

namespace curaclip::testing {

struct TinyBert {
    int64_t V = 40, C = 8, L = 2, NH = 2, I = 16, P = 12, TV = 2;
    std::map<std::string, std::vector<float>> w;
    std::map<std::string, std::vector<int64_t>> shapes;
    std::vector<std::string> vocab;

    void add(const std::string& n, std::vector<int64_t> s, std::mt19937& rng, float scale, float offset = 0) {
        int64_t k = 1;
        for (auto d : s) k *= d;
        std::normal_distribution<float> nd(0.f, 1.f);
        std::vector<float> v(static_cast<size_t>(k));
        for (float& x : v) x = offset + scale * nd(rng);
        w[n] = v;
        shapes[n] = s;
    }
    void write(const std::string& dir, const std::string& pooling_json, bool prefix = false) {
        std::mt19937 rng(11);
        const std::string e = "embeddings.";
        add(e + "word_embeddings.weight", {V, C}, rng, 0.5f);
        add(e + "position_embeddings.weight", {P, C}, rng, 0.5f);
        add(e + "token_type_embeddings.weight", {TV, C}, rng, 0.5f);
        add(e + "LayerNorm.weight", {C}, rng, 0.1f, 1.f);
        add(e + "LayerNorm.bias", {C}, rng, 0.1f);
        for (int64_t l = 0; l < L; ++l) {
            const std::string p = "encoder.layer." + std::to_string(l) + ".";
            for (const char* n : {"query", "key", "value"}) {
                add(p + "attention.self." + n + ".weight", {C, C}, rng, 0.4f);
                add(p + "attention.self." + n + ".bias", {C}, rng, 0.1f);
            }
            add(p + "attention.output.dense.weight", {C, C}, rng, 0.3f);
            add(p + "attention.output.dense.bias", {C}, rng, 0.1f);
            add(p + "attention.output.LayerNorm.weight", {C}, rng, 0.1f, 1.f);
            add(p + "attention.output.LayerNorm.bias", {C}, rng, 0.1f);
            add(p + "intermediate.dense.weight", {I, C}, rng, 0.3f);
            add(p + "intermediate.dense.bias", {I}, rng, 0.1f);
            add(p + "output.dense.weight", {C, I}, rng, 0.3f);
            add(p + "output.dense.bias", {C}, rng, 0.1f);
            add(p + "output.LayerNorm.weight", {C}, rng, 0.1f, 1.f);
            add(p + "output.LayerNorm.bias", {C}, rng, 0.1f);
        }
        add("pooler.dense.weight", {C, C}, rng, 0.4f);
        add("pooler.dense.bias", {C}, rng, 0.1f);
        std::filesystem::create_directories(dir);
        std::vector<io::SafetensorsOut> out;
        for (auto& [n, v] : w) out.push_back({(prefix ? "bert." : "") + n, shapes[n], v.data()});
        io::write_safetensors(dir + "/model.safetensors", out, {{"format", "pt"}});
        nlohmann::json cfg = {{"model_type", "bert"}, {"architectures", {"BertModel"}}, {"hidden_act", "gelu"},
                              {"vocab_size", V}, {"hidden_size", C}, {"num_hidden_layers", L},
                              {"num_attention_heads", NH}, {"intermediate_size", I}, {"max_position_embeddings", P},
                              {"type_vocab_size", TV}, {"layer_norm_eps", 1e-12}};
        std::ofstream(dir + "/config.json") << cfg.dump(2);
        vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]"};
        for (const char* s : {"a", "photo", "of", "dress", "bag", "bright", "dark", "##s", ",", "."}) vocab.push_back(s);
        std::ofstream vf(dir + "/vocab.txt");
        for (auto& s : vocab) vf << s << "\n";
        if (!pooling_json.empty()) {
            std::filesystem::create_directories(dir + "/1_Pooling");
            std::ofstream(dir + "/1_Pooling/config.json") << pooling_json;
        }
    }

    // float64 Hugging Face BertModel forward (token type 0, eps 1e-12) + pooling + L2.
    std::vector<double> reference(const std::vector<int32_t>& ids, encoder::Pooling mode) {
        const int64_t T = int64_t(ids.size()), hs = C / NH;
        auto W = [&](const std::string& n) -> const std::vector<float>& { return w.at(n); };
        auto ln = [&](std::vector<double>& x, const std::string& p) {
            for (int64_t t = 0; t < T; ++t) {
                double m = 0, v = 0;
                for (int64_t c = 0; c < C; ++c) m += x[size_t(t * C + c)];
                m /= double(C);
                for (int64_t c = 0; c < C; ++c) v += (x[size_t(t * C + c)] - m) * (x[size_t(t * C + c)] - m);
                v /= double(C);
                for (int64_t c = 0; c < C; ++c)
                    x[size_t(t * C + c)] = (x[size_t(t * C + c)] - m) / std::sqrt(v + 1e-12) * W(p + ".weight")[size_t(c)] +
                                           W(p + ".bias")[size_t(c)];
            }
        };
        auto lin = [&](const std::vector<double>& x, int64_t in, int64_t out, const std::string& p) {
            std::vector<double> y(static_cast<size_t>(T * out));
            for (int64_t t = 0; t < T; ++t)
                for (int64_t o = 0; o < out; ++o) {
                    double s = W(p + ".bias")[size_t(o)];
                    for (int64_t k = 0; k < in; ++k) s += double(W(p + ".weight")[size_t(o * in + k)]) * x[size_t(t * in + k)];
                    y[size_t(t * out + o)] = s;
                }
            return y;
        };
        std::vector<double> x(static_cast<size_t>(T * C));
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < C; ++c)
                x[size_t(t * C + c)] = double(W("embeddings.word_embeddings.weight")[size_t(ids[size_t(t)] * C + c)]) +
                                       W("embeddings.position_embeddings.weight")[size_t(t * C + c)] +
                                       W("embeddings.token_type_embeddings.weight")[size_t(c)];
        ln(x, "embeddings.LayerNorm");
        for (int64_t l = 0; l < L; ++l) {
            const std::string p = "encoder.layer." + std::to_string(l) + ".";
            const auto q = lin(x, C, C, p + "attention.self.query"), k = lin(x, C, C, p + "attention.self.key"),
                       v = lin(x, C, C, p + "attention.self.value");
            std::vector<double> a(static_cast<size_t>(T * C));
            for (int64_t h = 0; h < NH; ++h)
                for (int64_t i = 0; i < T; ++i) {
                    std::vector<double> s(static_cast<size_t>(T));
                    double mx = -1e300, z = 0;
                    for (int64_t j = 0; j < T; ++j) {
                        double d = 0;
                        for (int64_t c = 0; c < hs; ++c) d += q[size_t(i * C + h * hs + c)] * k[size_t(j * C + h * hs + c)];
                        mx = std::max(mx, s[size_t(j)] = d / std::sqrt(double(hs)));
                    }
                    for (double& e : s) z += (e = std::exp(e - mx));
                    for (int64_t c = 0; c < hs; ++c) {
                        double o = 0;
                        for (int64_t j = 0; j < T; ++j) o += s[size_t(j)] / z * v[size_t(j * C + h * hs + c)];
                        a[size_t(i * C + h * hs + c)] = o;
                    }
                }
            auto ao = lin(a, C, C, p + "attention.output.dense");
            for (size_t i = 0; i < x.size(); ++i) x[i] += ao[i];
            ln(x, p + "attention.output.LayerNorm");
            auto f = lin(x, C, I, p + "intermediate.dense");
            for (double& e : f) e = 0.5 * e * (1.0 + std::erf(e / std::sqrt(2.0)));
            auto fo = lin(f, I, C, p + "output.dense");
            for (size_t i = 0; i < x.size(); ++i) x[i] += fo[i];
            ln(x, p + "output.LayerNorm");
        }
        std::vector<double> out(static_cast<size_t>(C), 0.0);
        for (int64_t c = 0; c < C; ++c) {
            if (mode == encoder::Pooling::mean) {
                for (int64_t t = 0; t < T; ++t) out[size_t(c)] += x[size_t(t * C + c)] / double(T);
            } else if (mode == encoder::Pooling::cls) {
                out[size_t(c)] = x[size_t(c)];
            } else {
                double s = W("pooler.dense.bias")[size_t(c)];
                for (int64_t k = 0; k < C; ++k) s += double(W("pooler.dense.weight")[size_t(c * C + k)]) * x[size_t(k)];
                out[size_t(c)] = std::tanh(s);
            }
        }
        double n = 0;
        for (double e : out) n += e * e;
        for (double& e : out) e /= std::sqrt(n);
        return out;
    }
};


}  // namespace curaclip::testing
