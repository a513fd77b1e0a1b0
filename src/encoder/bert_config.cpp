// Reading a Hugging Face BERT folder's configuration (see bert_config.h).
#include "encoder/bert_config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace fs = std::filesystem;

namespace curaclip::encoder {

namespace {

nlohmann::json read_json(const fs::path& p) {
    std::ifstream f(p);
    CC_CHECK(f.good(), "sentence encoder: ", p.string(), " cannot be opened");
    try {
        return nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception& e) {
        CC_FAIL("sentence encoder: ", p.string(), " is not valid JSON: ", e.what());
    }
}

int64_t positive(const nlohmann::json& j, const char* key, const fs::path& p) {
    CC_CHECK(j.contains(key) && j[key].is_number_integer(), "sentence encoder: ", p.string(), " has no integer '",
             key, "'");
    const int64_t v = j[key].get<int64_t>();
    CC_CHECK(v > 0, "sentence encoder: ", p.string(), ": '", key, "' is ", v, ", expected a positive integer");
    return v;
}

}  // namespace

Pooling parse_pooling(const std::string& s) {
    if (s == "mean") return Pooling::mean;
    if (s == "cls") return Pooling::cls;
    if (s == "pooler") return Pooling::pooler;
    CC_FAIL("pooling must be mean, cls or pooler, got '", s, "'");
}

const char* pooling_name(Pooling p) {
    switch (p) {
        case Pooling::mean: return "mean";
        case Pooling::cls: return "cls";
        case Pooling::pooler: return "pooler";
    }
    return "?";
}

BertConfig read_bert_config(const std::string& dir_in) {
    CC_CHECK(fs::is_directory(dir_in), "sentence encoder: ", dir_in,
             " is not a folder (expected a Hugging Face model folder with config.json, model.safetensors, vocab.txt)");
    const fs::path dir = fs::absolute(dir_in);
    for (const char* f : {"config.json", "model.safetensors", "vocab.txt"})
        CC_CHECK(fs::is_regular_file(dir / f), "sentence encoder: ", (dir / f).string(),
                 " is missing (a Hugging Face BERT folder holds config.json, model.safetensors and vocab.txt)");
    BertConfig c;
    c.dir = dir.string();
    const fs::path cp = dir / "config.json";
    const nlohmann::json j = read_json(cp);
    const std::string type = j.value("model_type", std::string());
    CC_CHECK(type == "bert", "sentence encoder: ", cp.string(), " has model_type '", type,
             "'; curaclip's sentence encoder runs BERT-family models (model_type \"bert\") only");
    const std::string act = j.value("hidden_act", std::string("gelu"));
    CC_CHECK(act == "gelu", "sentence encoder: ", cp.string(), " has hidden_act '", act,
             "'; only \"gelu\" (exact erf GELU) is implemented");
    const std::string pos = j.value("position_embedding_type", std::string("absolute"));
    CC_CHECK(pos == "absolute", "sentence encoder: ", cp.string(), " has position_embedding_type '", pos,
             "'; only \"absolute\" is implemented");
    c.vocab_size = positive(j, "vocab_size", cp);
    c.hidden = positive(j, "hidden_size", cp);
    c.layers = positive(j, "num_hidden_layers", cp);
    c.heads = positive(j, "num_attention_heads", cp);
    c.intermediate = positive(j, "intermediate_size", cp);
    c.max_position = positive(j, "max_position_embeddings", cp);
    c.type_vocab = j.contains("type_vocab_size") ? positive(j, "type_vocab_size", cp) : 2;
    CC_CHECK(c.hidden % c.heads == 0, "sentence encoder: ", cp.string(), ": hidden_size ", c.hidden,
             " is not a multiple of num_attention_heads ", c.heads);
    if (j.contains("layer_norm_eps")) {
        CC_CHECK(j["layer_norm_eps"].is_number() && j["layer_norm_eps"].get<double>() > 0, "sentence encoder: ",
                 cp.string(), ": layer_norm_eps should be a positive number");
        c.layer_norm_eps = j["layer_norm_eps"].get<double>();
    }
    c.max_seq_length = c.max_position;
    const fs::path sp = dir / "sentence_bert_config.json";
    if (fs::is_regular_file(sp)) {
        const nlohmann::json s = read_json(sp);
        if (s.contains("max_seq_length")) c.max_seq_length = std::min(positive(s, "max_seq_length", sp), c.max_position);
    }
    CC_CHECK(c.max_seq_length >= 2, "sentence encoder: a maximum length of ", c.max_seq_length,
             " tokens leaves no room for [CLS] and [SEP]");
    c.pooling_source = "default";
    const fs::path pp = dir / "1_Pooling" / "config.json";
    if (fs::is_regular_file(pp)) {
        const nlohmann::json p = read_json(pp);
        auto on = [&](const char* k) { return p.contains(k) && p[k].is_boolean() && p[k].get<bool>(); };
        const bool mean = on("pooling_mode_mean_tokens"), cls = on("pooling_mode_cls_token");
        for (const char* k : {"pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                              "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
            CC_CHECK(!on(k), "sentence encoder: ", pp.string(), " asks for ", k,
                     ", which curaclip does not implement (mean and cls pooling only)");
        CC_CHECK(mean != cls, "sentence encoder: ", pp.string(),
                 " should switch on exactly one of pooling_mode_mean_tokens and pooling_mode_cls_token");
        c.pooling = mean ? Pooling::mean : Pooling::cls;
        c.pooling_source = "1_Pooling/config.json";
    }
    return c;
}

}  // namespace curaclip::encoder
