// A BERT-family sentence encoder, forward only, on the Backend ops (CPU or CUDA):
// MoDE clusters captions with such a separate encoder (Ma et al. 2024 use SimCSE,
// a BERT-base; all-MiniLM-L6-v2 is the small one the tests and benchmark use).
//
// The forward pass is Hugging Face BertModel's (transformers' modeling_bert.py) with
// token_type_ids = 0 and attention_mask = 1 on each sentence's tokens:
//   x = LN(word[ids] + position[t] + token_type[0])
//   per layer (post-LN):  a = attention(x Wq|Wk|Wv)  -> dense -> x = LN(x + a)
//                         f = GELU_erf(x Wi + bi)   -> dense -> x = LN(x + f)
// with padding-aware bidirectional attention (Backend::attention_padded_forward),
// then pooling (pooling.h: mean over valid tokens, CLS, or BERT's pooler) and L2
// normalization, as sentence-transformers' Transformer -> Pooling -> Normalize.
//
// LayerNorm epsilon: the backend's layernorm uses torch's default 1e-5, BERT uses
// config.layer_norm_eps (1e-12). LayerNorm is scale-invariant but for epsilon:
// LN(s x; eps') = LN(x; eps' / s^2), so the sum entering each LayerNorm is scaled by
// s = sqrt(1e-5 / layer_norm_eps) (folded into the embedding tables for the first one),
// which gives BERT's epsilon exactly in real arithmetic.
//
// Weights (model.safetensors, F32/F16/BF16; names with or without a "bert." prefix):
//   embeddings.{word,position,token_type}_embeddings.weight, embeddings.LayerNorm.{weight,bias}
//   encoder.layer.L.attention.self.{query,key,value}.{weight,bias}
//   encoder.layer.L.attention.output.dense.{weight,bias}, ...attention.output.LayerNorm.{weight,bias}
//   encoder.layer.L.intermediate.dense.{weight,bias}, encoder.layer.L.output.dense.{weight,bias},
//   encoder.layer.L.output.LayerNorm.{weight,bias}
//   pooler.dense.{weight,bias} (only for Pooling::pooler)
// A missing tensor or a shape other than config.json's is an Error naming both.
//
// Batching: texts are tokenized (wordpiece.h), grouped by token count (sorted, so a
// batch pads little) into batches of at most `batch` texts, each padded to its
// longest row. Results come back in the input order; a row's result depends on its
// batch only through float rounding (the GEMM shapes), not through the padding.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/arena.h"
#include "encoder/bert_config.h"
#include "encoder/wordpiece.h"

namespace curaclip::encoder {

class BertEncoder {
public:
    // dir: a Hugging Face model folder (bert_config.h). pooling overrides the folder's
    // (empty: the folder's, or mean). batch: texts per forward pass.
    BertEncoder(Backend& be, const std::string& dir, int64_t batch = 128, const std::string& pooling = "");
    ~BertEncoder();
    BertEncoder(const BertEncoder&) = delete;
    BertEncoder& operator=(const BertEncoder&) = delete;

    const BertConfig& config() const { return cfg_; }
    const WordPieceTokenizer& tokenizer() const { return tok_; }
    Pooling pooling() const { return pooling_; }
    int64_t dim() const { return cfg_.hidden; }
    // What made an embedding space, for side files and the routing check: the folder
    // name, its pooling and a fingerprint (FNV-1a 64) of config.json, vocab.txt and the
    // safetensors header, e.g. "bert all-MiniLM-L6-v2 mean 3f2a...". Two folders with
    // the same files give the same id wherever they lie.
    const std::string& id() const { return id_; }

    // [texts.size(), dim()] L2-normalized embeddings, row i of texts[i]. Identical
    // texts are tokenized and embedded once (their rows are bitwise equal).
    std::vector<float> embed(const std::vector<std::string>& texts);
    // The same from token id rows ([CLS] ... [SEP], no padding; each at most
    // max_seq_length ids within the vocabulary).
    std::vector<float> embed_ids(const std::vector<std::vector<int32_t>>& ids);

private:
    struct Layer;
    void forward_batch(const std::vector<const std::vector<int32_t>*>& rows, float* out);
    void ensure_activations(int64_t tokens);

    Backend& be_;
    BertConfig cfg_;
    WordPieceTokenizer tok_;
    Pooling pooling_;
    int64_t batch_;
    std::string id_;
    float ln_scale_ = 1.0f;
    Arena params_;
    Arena acts_;
    int64_t act_tokens_ = 0;
    Tensor wte_, wpe_, ln_e_w_, ln_e_b_;
    std::vector<Layer> layers_;
    std::vector<float> pool_w_, pool_b_;  // host copies (pooler pooling runs on the host)
    // activations (views sized per batch)
    Tensor x_, h_, qkv_, att_, proj_, inter_, gel_, mean_, rstd_, tokens_, lengths_;
};

}  // namespace curaclip::encoder
