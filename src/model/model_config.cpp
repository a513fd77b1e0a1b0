#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/check.h"

namespace po = boost::program_options;

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

po::options_description model_options() {
    po::options_description d("Model ([model] section)");
    d.add_options()
        ("model.preset", po::value<std::string>(), "starting shape: tiny, small, vit_b32, vit_b16, vit_l14")
        ("model.image_size", po::value<int>(), "image side in pixels")
        ("model.patch_size", po::value<int>(), "ViT patch side in pixels")
        ("model.channels", po::value<int>(), "image channels (1 or 3)")
        ("model.image_mean", po::value<std::string>(), "per-channel mean, comma separated")
        ("model.image_std", po::value<std::string>(), "per-channel std, comma separated")
        ("model.vision_width", po::value<int>(), "vision transformer width")
        ("model.vision_layers", po::value<int>(), "vision transformer layers")
        ("model.vision_heads", po::value<int>(), "vision attention heads")
        ("model.context_length", po::value<int>(), "text context length (tokens)")
        ("model.vocab_size", po::value<int>(), "text vocabulary size (must match the tokenizer)")
        ("model.text_width", po::value<int>(), "text transformer width")
        ("model.text_layers", po::value<int>(), "text transformer layers")
        ("model.text_heads", po::value<int>(), "text attention heads")
        ("model.mlp_ratio", po::value<int>(), "MLP hidden size / width (both towers)")
        ("model.embed_dim", po::value<int>(), "joint embedding dimension")
        ("model.activation", po::value<std::string>(), "gelu or quick_gelu")
        ("model.loss", po::value<std::string>(), "softmax (CLIP) or sigmoid (SigLIP)")
        ("model.flexi_patch", po::value<int>(),
         "FlexiViT low-resolution patch size (divides image_size; 0 = off): multi-resolution training and scoring")
        ("model.flexi_fraction", po::value<double>(), "share of each batch trained at model.flexi_patch (default 0.5)");
    return d;
}

ModelConfig model_config_from(const po::variables_map& vm) {
    ModelConfig c = vm.count("model.preset") ? ModelConfig::preset(vm["model.preset"].as<std::string>())
                                             : ModelConfig{};
    auto set = [&](const char* key, int& field) {
        if (vm.count(key)) field = vm[key].as<int>();
    };
    set("model.image_size", c.image_size);
    set("model.patch_size", c.patch_size);
    set("model.channels", c.channels);
    set("model.vision_width", c.vision.width);
    set("model.vision_layers", c.vision.layers);
    set("model.vision_heads", c.vision.heads);
    set("model.context_length", c.context_length);
    set("model.vocab_size", c.vocab_size);
    set("model.text_width", c.text.width);
    set("model.text_layers", c.text.layers);
    set("model.text_heads", c.text.heads);
    set("model.embed_dim", c.embed_dim);
    set("model.flexi_patch", c.flexi_patch);
    if (vm.count("model.flexi_fraction")) c.flexi_fraction = vm["model.flexi_fraction"].as<double>();
    if (vm.count("model.mlp_ratio")) c.vision.mlp_ratio = c.text.mlp_ratio = vm["model.mlp_ratio"].as<int>();
    if (vm.count("model.image_mean"))
        c.image_mean = parse_floats(vm["model.image_mean"].as<std::string>(), "image_mean");
    if (vm.count("model.image_std"))
        c.image_std = parse_floats(vm["model.image_std"].as<std::string>(), "image_std");
    if (vm.count("model.activation")) c.activation = parse_activation(vm["model.activation"].as<std::string>());
    if (vm.count("model.loss")) {
        const std::string l = vm["model.loss"].as<std::string>();
        CC_REQUIRE(l == "softmax" || l == "sigmoid", "model.loss: '", l, "' is not one of softmax, sigmoid");
        c.sigmoid_loss = l == "sigmoid";
    }
    c.validate();
    return c;
}

std::string model_config_to_ini(const ModelConfig& c) {
    auto floats = [](const std::vector<float>& v) {
        std::ostringstream os;
        os.precision(9);
        for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
        return os.str();
    };
    std::ostringstream os;
    os.precision(17);
    os << "[model]\n"
       << "image_size = " << c.image_size << "\npatch_size = " << c.patch_size << "\nchannels = " << c.channels
       << "\nimage_mean = " << floats(c.image_mean) << "\nimage_std = " << floats(c.image_std)
       << "\nvision_width = " << c.vision.width << "\nvision_layers = " << c.vision.layers
       << "\nvision_heads = " << c.vision.heads << "\ncontext_length = " << c.context_length
       << "\nvocab_size = " << c.vocab_size << "\ntext_width = " << c.text.width << "\ntext_layers = " << c.text.layers
       << "\ntext_heads = " << c.text.heads << "\nmlp_ratio = " << c.vision.mlp_ratio << "\nembed_dim = " << c.embed_dim
       << "\nactivation = " << activation_name(c.activation) << "\nloss = " << (c.sigmoid_loss ? "sigmoid" : "softmax")
       << "\nflexi_patch = " << c.flexi_patch << "\nflexi_fraction = " << c.flexi_fraction << "\n";
    return os.str();
}

ModelConfig model_config_from_ini(const std::string& ini, const std::string& where) {
    po::options_description desc;
    desc.add(model_options());
    po::variables_map vm;
    std::istringstream in(ini);
    try {
        po::store(po::parse_config_file(in, desc, /*allow_unregistered=*/true), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        CC_USER_FAIL(where, ": bad model configuration: ", e.what());
    }
    return model_config_from(vm);
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
