// ModelConfig: the shape of a CLIP model (docs/architecture.md §Model). Recipes in
// configs/*.ini set these under a [model] section; preset() gives the named shapes.
// Every [model] option is one row of model_fields(): the command-line schema
// (src/cli/model_options.cpp), the INI writer and reader below and the copy stored in
// each checkpoint all iterate that table, so a field is spelled once.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

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
    // multi-resolution (FlexiViT, docs/architecture.md §Model): the same vision weights also run at patch
    // size flexi_patch (PI-resized kernel, interpolated positional embedding); training
    // then runs the first round(flexi_fraction * B) rows of every local batch at that
    // patch size and the rest at patch_size, and JEST can score at it. 0 = off.
    int flexi_patch = 0;
    double flexi_fraction = 0.5;

    bool flexi() const { return flexi_patch > 0; }
    int grid() const { return image_size / patch_size; }
    int num_patches() const { return grid() * grid(); }
    int vision_tokens() const { return num_patches() + 1; }
    // The same at another patch size (0 = patch_size).
    int grid_at(int patch) const { return image_size / (patch > 0 ? patch : patch_size); }
    int vision_tokens_at(int patch) const { return grid_at(patch) * grid_at(patch) + 1; }
    // Rows of a local batch of b that multi-resolution training runs at flexi_patch.
    int64_t flexi_rows(int64_t b) const;
    // Throws an Error naming the first impossible value.
    void validate() const;
    std::string summary() const;
    // Forward FLOPs of one image-text pair (matmuls and attention, 2 per MAC), with the
    // image tower at patch size `patch` (0 = patch_size).
    double forward_flops_per_pair(int patch = 0) const;
    double image_forward_flops(int patch = 0) const;  // the image tower alone
    double text_forward_flops() const;                // the text tower alone
    // Compute accounting (docs/jest.md §Compute accounting): A = forward FLOPs of a pair with the image tower at
    // flexi_patch over those at patch_size (1 when flexi is off).
    double flexi_flop_ratio() const;
    // The same for the image tower alone (what the low-resolution pass saves).
    double flexi_image_flop_ratio() const;
    // Training FLOPs of one pair (3 forwards) as the multi-resolution step runs it for a
    // local batch of b: 3F((1-k/b) + (k/b) A), k = flexi_rows(b); 3F when flexi is off.
    double train_flops_per_pair(int64_t b) const;

    static ModelConfig preset(const std::string& name);  // tiny, small, vit_b32, vit_b16, vit_l14
    static std::vector<std::string> preset_names();
};

// One [model] option: `key` is the INI key and, prefixed by "model.", the option.
// `get` writes the value as the INI holds it; `set` parses text into the config,
// throwing an Error that names model.<key> and the text when it is not a value of
// the field's kind (a whole integer, a finite number, a comma-separated list of
// numbers, one of the listed words).
struct ModelField {
    const char* key;
    const char* help;
    std::function<std::string(const ModelConfig&)> get;
    std::function<void(ModelConfig&, const std::string&)> set;
};
// Every field of the shape, in the order the INI lists them. (model.preset is not a
// field: it only picks the starting shape.)
const std::vector<ModelField>& model_fields();

// Starts from `preset` ("" = tiny) and applies each key -> text of `values` (keys as
// model_fields() spells them, without "model."); an unknown key is an Error naming
// `where`. The result is validated.
ModelConfig model_config_from_values(const std::string& preset, const std::map<std::string, std::string>& values,
                                     const std::string& where);
// The whole shape as a "[model]" INI section (every key, stored in checkpoints), and back.
std::string model_config_to_ini(const ModelConfig& c);
ModelConfig model_config_from_ini(const std::string& ini, const std::string& where);

// What the parameter shapes do not show but the computation depends on: the MLP
// activation and the attention heads of each tower. One line per difference,
// "model.activation: <what_a> has quick_gelu, <what_b> gelu" ("" = none). A model
// loaded into a recipe that differs in these computes other embeddings from the same
// weights, silently (init_from, convert --model).
std::vector<std::string> hidden_shape_differences(const ModelConfig& a, const std::string& what_a,
                                                  const ModelConfig& b, const std::string& what_b);

Activation parse_activation(const std::string& s);
const char* activation_name(Activation a);

}  // namespace curaclip
