// The [model] field table (src/model/model_config.h, model_fields()): the INI the
// checkpoints store, its reading back, and the command-line schema built from it
// (src/cli/model_options.h) all come from one list, so a field cannot be missing
// from one of them.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "cli/model_options.h"
#include "core/check.h"
#include "model/model_config.h"

namespace curaclip {
namespace {

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// The exact text checkpoints hold for the tiny preset: a change of the writer would
// make new checkpoints differ from old ones.
TEST(ModelFields, TinyIniIsTheStoredFormat) {
    EXPECT_EQ(model_config_to_ini(ModelConfig::preset("tiny")),
              "[model]\nimage_size = 28\npatch_size = 7\nchannels = 1\nimage_mean = 0.286000013\n"
              "image_std = 0.352999985\nvision_width = 64\nvision_layers = 2\nvision_heads = 2\n"
              "context_length = 16\nvocab_size = 1024\ntext_width = 64\ntext_layers = 2\ntext_heads = 2\n"
              "mlp_ratio = 4\nembed_dim = 64\nactivation = gelu\nloss = softmax\nflexi_patch = 0\n"
              "flexi_fraction = 0.5\n");
}

TEST(ModelFields, EveryShapeSurvivesTheIni) {
    std::vector<ModelConfig> shapes;
    for (const std::string& name : ModelConfig::preset_names()) shapes.push_back(ModelConfig::preset(name));
    ModelConfig odd = ModelConfig::preset("vit_b16");
    odd.activation = Activation::quick_gelu;
    odd.sigmoid_loss = true;
    odd.flexi_patch = 32;
    odd.flexi_fraction = 0.3;
    odd.vision.mlp_ratio = odd.text.mlp_ratio = 2;
    odd.image_mean = {0.1f, 0.2f, 0.30000001f};
    shapes.push_back(odd);
    for (const ModelConfig& c : shapes) {
        const ModelConfig back = model_config_from_ini(model_config_to_ini(c), "test");
        EXPECT_EQ(model_config_to_ini(back), model_config_to_ini(c));
        EXPECT_EQ(back.image_mean, c.image_mean);
        EXPECT_EQ(back.flexi_fraction, c.flexi_fraction);
        EXPECT_EQ(back.activation, c.activation);
        EXPECT_EQ(back.sigmoid_loss, c.sigmoid_loss);
        EXPECT_EQ(back.text.mlp_ratio, c.text.mlp_ratio);
    }
}

TEST(ModelFields, TheCommandLineSchemaHasEveryField) {
    const auto desc = model_options();
    std::set<std::string> keys;
    for (const auto& o : desc.options()) keys.insert(o->long_name());
    EXPECT_TRUE(keys.count("model.preset"));
    for (const ModelField& f : model_fields()) EXPECT_TRUE(keys.count(std::string("model.") + f.key)) << f.key;
    EXPECT_EQ(keys.size(), model_fields().size() + 1);
}

TEST(ModelFields, BadTextNamesTheOption) {
    EXPECT_EQ(error_of([] { model_config_from_ini("[model]\nimage_size = 28px\n", "ckpt.h5"); }),
              "model.image_size: '28px' is not a whole number");
    EXPECT_EQ(error_of([] { model_config_from_ini("[model]\nflexi_fraction = nan\n", "ckpt.h5"); }),
              "option model.flexi_fraction = nan is not a finite number");
    EXPECT_EQ(error_of([] { model_config_from_ini("[model]\nwidth = 3\n", "ckpt.h5"); }),
              "ckpt.h5: unknown model option 'width'");
    EXPECT_EQ(error_of([] { model_config_from_ini("[model]\nloss = hinge\n", "ckpt.h5"); }),
              "model.loss: 'hinge' is not one of softmax, sigmoid");
    // Other sections and comments are not the model's.
    EXPECT_EQ(model_config_from_ini("# run\n[train]\nsteps = 5\n[model]\npreset = small\n", "x").embed_dim, 256);
}

}  // namespace
}  // namespace curaclip
