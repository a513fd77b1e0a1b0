#include "model/model_config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <sstream>

#include "core/check.h"
#include "core/ini_text.h"

namespace curaclip {

namespace {
const float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

ModelConfig rgb_224(int patch, TowerConfig vision, TowerConfig text, int embed) {
    ModelConfig c;
    c.image_size = 224;
    c.patch_size = patch;
    c.channels = 3;
    c.vision = vision;
    c.image_mean.assign(kClipMean, kClipMean + 3);
    c.image_std.assign(kClipStd, kClipStd + 3);
    c.context_length = 77;
    c.vocab_size = 49408;
    c.text = text;
    c.embed_dim = embed;
    return c;
}

std::vector<float> parse_floats(const std::string& s, const char* what) {
    std::vector<float> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        try {
            size_t used = 0;
            out.push_back(std::stof(item, &used));
            if (item.find_first_not_of(" \t", used) != std::string::npos) throw std::invalid_argument(item);
        } catch (const std::exception&) {
            CC_USER_FAIL("model.", what, ": '", s, "' is not a comma-separated list of numbers");
        }
        // std::stof takes "nan" and "inf"; a NaN mean makes every activation NaN.
        CC_REQUIRE(std::isfinite(out.back()), "model.", what, ": '", s, "' holds ", item,
                   ", not a finite number");
    }
    return out;
}
}  // namespace

Activation parse_activation(const std::string& s) {
    if (s == "gelu") return Activation::gelu;
    if (s == "quick_gelu") return Activation::quick_gelu;
    CC_USER_FAIL("model.activation: '", s, "' is not one of gelu, quick_gelu");
}

const char* activation_name(Activation a) { return a == Activation::gelu ? "gelu" : "quick_gelu"; }

ModelConfig ModelConfig::preset(const std::string& name) {
    if (name == "tiny") return ModelConfig{};  // 28 px, patch 7, width 64, 2 layers
    if (name == "small") {                     // the mid-size CPU benchmark shape
        ModelConfig c;
        c.image_size = 32;
        c.patch_size = 4;
        c.vision = {256, 4, 4, 4};
        c.text = {256, 4, 4, 4};
        c.context_length = 32;
        c.vocab_size = 4096;
        c.embed_dim = 256;
        return c;
    }
    if (name == "vit_b32") return rgb_224(32, {768, 12, 12, 4}, {512, 12, 8, 4}, 512);
    if (name == "vit_b16") return rgb_224(16, {768, 12, 12, 4}, {512, 12, 8, 4}, 512);
    if (name == "vit_l14") return rgb_224(14, {1024, 24, 16, 4}, {768, 12, 12, 4}, 768);
    std::string names;
    for (auto& n : preset_names()) names += " " + n;
    CC_USER_FAIL("model.preset: unknown preset '", name, "' (known:", names, ")");
}

std::vector<std::string> ModelConfig::preset_names() {
    return {"tiny", "small", "vit_b32", "vit_b16", "vit_l14"};
}

void ModelConfig::validate() const {
    auto tower = [](const TowerConfig& t, const char* name) {
        CC_REQUIRE(t.width > 0 && t.layers >= 0 && t.heads > 0 && t.mlp_ratio > 0, "model.", name,
                 ": width, heads and mlp_ratio must be positive and layers >= 0");
        CC_REQUIRE(t.width % t.heads == 0, "model.", name, "_width (", t.width,
                 ") must be divisible by model.", name, "_heads (", t.heads, ")");
    };
    tower(vision, "vision");
    tower(text, "text");
    CC_REQUIRE(image_size > 0 && patch_size > 0 && image_size % patch_size == 0,
             "model.image_size (", image_size, ") must be a positive multiple of model.patch_size (",
             patch_size, ")");
    CC_REQUIRE(channels == 1 || channels == 3, "model.channels must be 1 or 3, got ", channels);
    CC_REQUIRE(int(image_mean.size()) == channels && int(image_std.size()) == channels,
             "model.image_mean / model.image_std need one value per channel (", channels, ")");
    // Pixels are u8 / 255 in [0, 1]: a mean outside [0, 1] is no mean of them, and a
    // std below 1e-3 (or NaN, inf) blows the normalized pixels up by over 1000x.
    for (int c = 0; c < channels; ++c) {
        CC_REQUIRE(std::isfinite(image_mean[size_t(c)]) && image_mean[size_t(c)] >= 0.0f && image_mean[size_t(c)] <= 1.0f,
                   "model.image_mean: channel ", c, " = ", image_mean[size_t(c)],
                   " is outside [0, 1] (pixels are u8/255 in [0, 1])");
        CC_REQUIRE(std::isfinite(image_std[size_t(c)]) && image_std[size_t(c)] >= 1e-3f && image_std[size_t(c)] <= 10.0f,
                   "model.image_std: channel ", c, " = ", image_std[size_t(c)],
                   " is outside [0.001, 10] (pixels are u8/255 in [0, 1])");
    }
    CC_REQUIRE(context_length >= 2, "model.context_length must be >= 2, got ", context_length);
    CC_REQUIRE(vocab_size >= 3, "model.vocab_size must be >= 3, got ", vocab_size);
    CC_REQUIRE(embed_dim > 0, "model.embed_dim must be positive, got ", embed_dim);
    CC_REQUIRE(flexi_patch >= 0 && (flexi_patch == 0 || image_size % flexi_patch == 0),
             "model.flexi_patch (", flexi_patch, ") must be 0 (off) or a positive divisor of model.image_size (",
             image_size, ")");
    CC_REQUIRE(flexi_fraction >= 0.0 && flexi_fraction <= 1.0, "model.flexi_fraction must be in [0, 1], got ",
             flexi_fraction);
}

int64_t ModelConfig::flexi_rows(int64_t b) const {
    if (!flexi()) return 0;
    return std::min<int64_t>(b, std::max<int64_t>(0, std::llround(flexi_fraction * double(b))));
}

std::string ModelConfig::summary() const {
    std::ostringstream os;
    os << "vision " << image_size << "px/" << patch_size << " x" << channels << "ch w" << vision.width
       << " L" << vision.layers << " H" << vision.heads << " | text ctx" << context_length << " V"
       << vocab_size << " w" << text.width << " L" << text.layers << " H" << text.heads
       << " | embed " << embed_dim << " " << activation_name(activation) << " "
       << (sigmoid_loss ? "sigmoid" : "softmax");
    if (flexi())
        os << " | flexi patch " << flexi_patch << " (" << grid_at(flexi_patch) << "x" << grid_at(flexi_patch)
           << " tokens) on " << flexi_fraction << " of each batch";
    return os.str();
}

namespace {
double tower_flops(const TowerConfig& t, double T) {
    const double C = t.width, M = double(t.mlp_ratio) * t.width;
    const double per_layer = 2 * T * C * 3 * C      // qkv
                             + 2 * 2 * T * T * C     // scores and weighted sum
                             + 2 * T * C * C         // out proj
                             + 2 * 2 * T * C * M;    // mlp
    return t.layers * per_layer;
}
}  // namespace

double ModelConfig::image_forward_flops(int patch) const {
    const int p = patch > 0 ? patch : patch_size;
    const double P = double(grid_at(p)) * grid_at(p);
    const double patch_embed = 2 * P * channels * p * p * vision.width;
    return patch_embed + tower_flops(vision, P + 1) + 2.0 * vision.width * embed_dim;
}

double ModelConfig::text_forward_flops() const {
    return tower_flops(text, context_length) + 2.0 * text.width * embed_dim;
}

double ModelConfig::forward_flops_per_pair(int patch) const {
    return image_forward_flops(patch) + text_forward_flops();
}

double ModelConfig::flexi_flop_ratio() const {
    return flexi() ? forward_flops_per_pair(flexi_patch) / forward_flops_per_pair() : 1.0;
}

double ModelConfig::flexi_image_flop_ratio() const {
    return flexi() ? image_forward_flops(flexi_patch) / image_forward_flops() : 1.0;
}

double ModelConfig::train_flops_per_pair(int64_t b) const {
    const double k = b > 0 ? double(flexi_rows(b)) / double(b) : 0.0;
    return 3.0 * forward_flops_per_pair() * ((1.0 - k) + k * flexi_flop_ratio());
}

namespace {
int parse_int(const std::string& text, const char* key) {
    const std::string t = trim_ini(text);
    try {
        size_t used = 0;
        const long long v = std::stoll(t, &used);
        if (used == t.size() && v >= INT32_MIN && v <= INT32_MAX) return int(v);
    } catch (const std::exception&) {
    }
    CC_USER_FAIL("model.", key, ": '", text, "' is not a whole number");
}

double parse_double(const std::string& text, const char* key) {
    const std::string t = trim_ini(text);
    try {
        size_t used = 0;
        const double v = std::stod(t, &used);
        if (used == t.size()) {
            // The same words as every other floating-point option (src/cli/options.cpp).
            CC_REQUIRE(std::isfinite(v), "option model.", key, " = ", t, " is not a finite number");
            return v;
        }
    } catch (const std::invalid_argument&) {
    } catch (const std::out_of_range&) {
    }
    CC_USER_FAIL("model.", key, ": '", text, "' is not a number");
}

std::string floats_text(const std::vector<float>& v) {
    std::ostringstream os;
    os.precision(9);
    for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
    return os.str();
}

std::string double_text(double v) {
    std::ostringstream os;
    os.precision(17);
    os << v;
    return os.str();
}

ModelField int_field(const char* key, const char* help, int ModelConfig::*m) {
    return {key, help, [m](const ModelConfig& c) { return std::to_string(c.*m); },
            [m, key](ModelConfig& c, const std::string& t) { c.*m = parse_int(t, key); }};
}
ModelField tower_field(const char* key, const char* help, TowerConfig ModelConfig::*tower, int TowerConfig::*m) {
    return {key, help, [tower, m](const ModelConfig& c) { return std::to_string((c.*tower).*m); },
            [tower, m, key](ModelConfig& c, const std::string& t) { (c.*tower).*m = parse_int(t, key); }};
}
ModelField floats_field(const char* key, const char* help, std::vector<float> ModelConfig::*m) {
    return {key, help, [m](const ModelConfig& c) { return floats_text(c.*m); },
            [m, key](ModelConfig& c, const std::string& t) { c.*m = parse_floats(t, key); }};
}
}  // namespace

const std::vector<ModelField>& model_fields() {
    static const std::vector<ModelField> fields = {
        int_field("image_size", "image side in pixels", &ModelConfig::image_size),
        int_field("patch_size", "ViT patch side in pixels", &ModelConfig::patch_size),
        int_field("channels", "image channels (1 or 3)", &ModelConfig::channels),
        floats_field("image_mean", "per-channel mean, comma separated", &ModelConfig::image_mean),
        floats_field("image_std", "per-channel std, comma separated", &ModelConfig::image_std),
        tower_field("vision_width", "vision transformer width", &ModelConfig::vision, &TowerConfig::width),
        tower_field("vision_layers", "vision transformer layers", &ModelConfig::vision, &TowerConfig::layers),
        tower_field("vision_heads", "vision attention heads", &ModelConfig::vision, &TowerConfig::heads),
        int_field("context_length", "text context length (tokens)", &ModelConfig::context_length),
        int_field("vocab_size", "text vocabulary size (must match the tokenizer)", &ModelConfig::vocab_size),
        tower_field("text_width", "text transformer width", &ModelConfig::text, &TowerConfig::width),
        tower_field("text_layers", "text transformer layers", &ModelConfig::text, &TowerConfig::layers),
        tower_field("text_heads", "text attention heads", &ModelConfig::text, &TowerConfig::heads),
        // One ratio for both towers (the recipes never differ).
        {"mlp_ratio", "MLP hidden size / width (both towers)",
         [](const ModelConfig& c) { return std::to_string(c.vision.mlp_ratio); },
         [](ModelConfig& c, const std::string& t) { c.vision.mlp_ratio = c.text.mlp_ratio = parse_int(t, "mlp_ratio"); }},
        int_field("embed_dim", "joint embedding dimension", &ModelConfig::embed_dim),
        {"activation", "gelu or quick_gelu", [](const ModelConfig& c) { return std::string(activation_name(c.activation)); },
         [](ModelConfig& c, const std::string& t) { c.activation = parse_activation(trim_ini(t)); }},
        {"loss", "softmax (CLIP) or sigmoid (SigLIP)",
         [](const ModelConfig& c) { return std::string(c.sigmoid_loss ? "sigmoid" : "softmax"); },
         [](ModelConfig& c, const std::string& t) {
             const std::string l = trim_ini(t);
             CC_REQUIRE(l == "softmax" || l == "sigmoid", "model.loss: '", t, "' is not one of softmax, sigmoid");
             c.sigmoid_loss = l == "sigmoid";
         }},
        int_field("flexi_patch",
                  "FlexiViT low-resolution patch size (divides image_size; 0 = off): multi-resolution training and "
                  "scoring",
                  &ModelConfig::flexi_patch),
        {"flexi_fraction", "share of each batch trained at model.flexi_patch (default 0.5)",
         [](const ModelConfig& c) { return double_text(c.flexi_fraction); },
         [](ModelConfig& c, const std::string& t) { c.flexi_fraction = parse_double(t, "flexi_fraction"); }},
    };
    return fields;
}

ModelConfig model_config_from_values(const std::string& preset, const std::map<std::string, std::string>& values,
                                     const std::string& where) {
    ModelConfig c = preset.empty() ? ModelConfig{} : ModelConfig::preset(preset);
    for (const auto& [key, text] : values) {
        const auto& fields = model_fields();
        auto it = std::find_if(fields.begin(), fields.end(), [&](const ModelField& f) { return key == f.key; });
        CC_REQUIRE(it != fields.end(), where, ": unknown model option '", key, "'");
        it->set(c, text);
    }
    c.validate();
    return c;
}

std::string model_config_to_ini(const ModelConfig& c) {
    std::string out = "[model]\n";
    for (const ModelField& f : model_fields()) out += std::string(f.key) + " = " + f.get(c) + "\n";
    return out;
}

ModelConfig model_config_from_ini(const std::string& ini, const std::string& where) {
    // The [model] section as model_config_to_ini writes it (core/ini_text.h); other
    // sections are not the model's.
    std::map<std::string, std::string> values;
    std::string preset;
    for (const auto& [key, value] : ini_values(ini)) {
        if (key.rfind("model.", 0) != 0) continue;
        if (key == "model.preset") preset = value;
        else values[key.substr(6)] = value;
    }
    return model_config_from_values(preset, values, where);
}

std::vector<std::string> hidden_shape_differences(const ModelConfig& a, const std::string& what_a,
                                                  const ModelConfig& b, const std::string& what_b) {
    std::vector<std::string> out;
    if (a.activation != b.activation)
        out.push_back(std::string("model.activation: ") + what_a + " has " + activation_name(a.activation) + ", " +
                      what_b + " " + activation_name(b.activation));
    if (a.vision.heads != b.vision.heads)
        out.push_back("model.vision_heads: " + what_a + " has " + std::to_string(a.vision.heads) + ", " + what_b + " " +
                      std::to_string(b.vision.heads));
    if (a.text.heads != b.text.heads)
        out.push_back("model.text_heads: " + what_a + " has " + std::to_string(a.text.heads) + ", " + what_b + " " +
                      std::to_string(b.text.heads));
    return out;
}

}  // namespace curaclip
