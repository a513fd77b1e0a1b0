// A Hugging Face BERT model folder as the field ships sentence encoders
// (all-MiniLM-L6-v2, SimCSE, BERT-base): what curaclip reads from it and checks.
//
//   config.json                 model_type "bert", hidden_size, num_hidden_layers,
//                               num_attention_heads, intermediate_size, hidden_act "gelu"
//                               (exact erf GELU), max_position_embeddings, type_vocab_size,
//                               vocab_size, layer_norm_eps (default 1e-12)
//   model.safetensors           the weights (bert_encoder.h lists the names)
//   vocab.txt                   the WordPiece vocabulary (wordpiece.h)
//   1_Pooling/config.json       sentence-transformers' pooling (optional): pooling_mode_mean_tokens
//                               or pooling_mode_cls_token; absent -> mean (sentence-transformers'
//                               default for a plain model)
//   sentence_bert_config.json   max_seq_length (optional): the truncation length, else
//                               max_position_embeddings
// A missing file, another model_type or hidden_act, a pooling mode curaclip lacks
// (max, weighted mean, ...) or a non-positive size is an Error naming the file and field.
#pragma once

#include <cstdint>
#include <string>

namespace curaclip::encoder {

// mean: average of the valid tokens' last hidden states; cls: the [CLS] state;
// pooler: BERT's pooler, tanh(W cls + b) (SimCSE's released "pooler" output).
enum class Pooling { mean, cls, pooler };
Pooling parse_pooling(const std::string& s);  // "mean", "cls", "pooler"
const char* pooling_name(Pooling p);

struct BertConfig {
    std::string dir;  // the folder, absolute
    int64_t vocab_size = 0, hidden = 0, layers = 0, heads = 0, intermediate = 0;
    int64_t max_position = 0, type_vocab = 0;
    double layer_norm_eps = 1e-12;
    int64_t max_seq_length = 0;  // truncation length in tokens, [CLS] and [SEP] included
    Pooling pooling = Pooling::mean;
    std::string pooling_source;  // "1_Pooling/config.json" or "default"
};

BertConfig read_bert_config(const std::string& dir);

}  // namespace curaclip::encoder
