// ModelConfig: the shape of a CLIP model (DESIGN §4). Recipes in configs/*.ini
// set these under a [model] section; presets() gives the named shapes.
#pragma once

#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "backend/backend.h"

namespace curaclip {

struct TowerConfig {
    int width = 64;
    int layers = 2;
    int heads = 2;
    int mlp_ratio = 4;
};

struct ModelConfig {
    // vision
    int image_size = 28;
    int patch_size = 7;
    int channels = 1;
    TowerConfig vision{64, 2, 2, 4};
    std::vector<float> image_mean{0.2860f};  // per channel, applied to u8/255
    std::vector<float> image_std{0.3530f};
    // text
    int context_length = 16;
    int vocab_size = 1024;
    TowerConfig text{64, 2, 2, 4};
    // joint
    int embed_dim = 64;
    Activation activation = Activation::gelu;
    bool sigmoid_loss = false;  // declares logit_bias and SigLIP's init of logit_scale

    int grid() const { return image_size / patch_size; }
    int num_patches() const { return grid() * grid(); }
    int vision_tokens() const { return num_patches() + 1; }
    // Throws an Error naming the first impossible value.
    void validate() const;
    std::string summary() const;
    // Forward FLOPs of one image-text pair (matmuls and attention, 2 per MAC).
    double forward_flops_per_pair() const;

    static ModelConfig preset(const std::string& name);  // tiny, small, vit_b32, vit_b16, vit_l14
    static std::vector<std::string> preset_names();
};

// "[model]" options of the config file / command line (model.image_size, ...).
boost::program_options::options_description model_options();
// Starts from model.preset (if given) and applies every explicitly set model.* option.
ModelConfig model_config_from(const boost::program_options::variables_map& vm);

Activation parse_activation(const std::string& s);
const char* activation_name(Activation a);

}  // namespace curaclip
