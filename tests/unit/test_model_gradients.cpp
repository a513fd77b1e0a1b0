// Whole-model finite-difference gradient checks in float64: the loss of a small
// CLIP (both towers, both losses) against central differences with respect to
// sampled entries of EVERY parameter tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/registry.h"
#include "core/philox.h"
#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "train/train_step.h"
#include "model_fixtures.h"

namespace curaclip {
namespace {

using testing::Batch;
using testing::random_batch;

ModelConfig small_config(bool sigmoid, int channels) { return testing::small_model_config(8, 4, channels, sigmoid); }


void check_model_gradients(bool sigmoid, int channels, Activation act) {
    auto be = make_backend("cpu-f64");
    ModelConfig cfg = small_config(sigmoid, channels);
    cfg.activation = act;
    const int64_t B = 3;
    ClipModel model(*be, cfg, B);
    model.init_weights(7);
    // Perturb gains and biases away from 1/0 so their gradients are generic.
    Philox jitter(99, RngPurpose::test);
    for (auto& p : model.params().all()) {
        std::vector<double> v(size_t(p.shape.numel()));
        be->download(v.data(), p.value);
        for (double& x : v) x += 0.1 * jitter.normal();
        be->upload(p.value, v.data());
    }
    auto coll = make_single_process_collectives(*be);
    ContrastiveLoss loss(*be, sigmoid ? LossKind::sigmoid : LossKind::softmax, B, cfg.embed_dim, *coll);
    TrainStep step(model, loss, *coll);
    const Batch batch = random_batch(cfg, B, 3);

    step.compute_gradients(batch.images.data(), batch.tokens.data());
    std::vector<std::vector<double>> grads;
    for (size_t i = 0; i < model.params().size(); ++i) grads.push_back(model.params().grads_to_host(i));

    auto loss_at = [&]() {
        model.set_inputs(batch.images.data(), batch.tokens.data());
        model.forward();
        Parameter* bias = model.logit_bias();
        loss.forward(model.image_embeddings(), model.text_embeddings(), model.logit_scale().value,
                     bias ? bias->value : Tensor{});
        return loss.loss();
    };

    const double h = 1e-5;
    Philox pick(5, RngPurpose::test);
    int checked = 0;
    for (size_t i = 0; i < model.params().size(); ++i) {
        Parameter& p = model.params()[i];
        std::vector<double> value = model.params().values_to_host(i);
        const int samples = std::min<int64_t>(3, p.shape.numel());
        for (int s = 0; s < samples; ++s) {
            const size_t k = size_t(pick.below(uint64_t(p.shape.numel())));
            const double orig = value[k];
            value[k] = orig + h;
            be->upload(p.value, value.data());
            const double up = loss_at();
            value[k] = orig - h;
            be->upload(p.value, value.data());
            const double down = loss_at();
            value[k] = orig;
            be->upload(p.value, value.data());
            const double fd = (up - down) / (2 * h);
            const double an = grads[i][k];
            EXPECT_NEAR(an, fd, 1e-6 * std::max(std::abs(fd), std::abs(an)) + 1e-9)
                << p.name << "[" << k << "] (" << (sigmoid ? "sigmoid" : "softmax") << ")";
            ++checked;
        }
    }
    EXPECT_GT(checked, 3 * 30);  // every tensor of both towers took part
}

TEST(ModelGradients, SoftmaxLossAllParametersGelu) { check_model_gradients(false, 3, Activation::gelu); }
TEST(ModelGradients, SigmoidLossAllParametersQuickGelu) { check_model_gradients(true, 1, Activation::quick_gelu); }

TEST(Model, ParameterNamesFollowOpenClip) {
    auto be = make_backend("cpu");
    ClipModel model(*be, ModelConfig::preset("tiny"), 2);
    for (const char* name : {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                             "visual.ln_pre.weight", "visual.transformer.resblocks.1.attn.in_proj_weight",
                             "visual.transformer.resblocks.0.mlp.c_fc.bias", "visual.ln_post.bias", "visual.proj",
                             "token_embedding.weight", "positional_embedding",
                             "transformer.resblocks.1.attn.out_proj.weight", "transformer.resblocks.0.ln_2.weight",
                             "ln_final.weight", "text_projection", "logit_scale"})
        EXPECT_NE(model.params().find(name), nullptr) << name;
    EXPECT_EQ(model.params().find("logit_bias"), nullptr);  // softmax model has no bias
    EXPECT_EQ(model.params().get("visual.conv1.weight").shape, (Shape{64, 1, 7, 7}));
    EXPECT_EQ(model.params().get("visual.proj").shape, (Shape{64, 64}));
}

TEST(Model, BadConfigIsRejectedWithTheOffendingKey) {
    ModelConfig c = ModelConfig::preset("tiny");
    c.patch_size = 5;  // 28 is not a multiple of 5
    try {
        c.validate();
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model.image_size"), std::string::npos) << e.what();
    }
    c = ModelConfig::preset("tiny");
    c.vision.heads = 3;  // 64 % 3 != 0
    EXPECT_THROW(c.validate(), Error);
    EXPECT_THROW(ModelConfig::preset("vit_h99"), Error);
}

TEST(Model, SmallerBatchReusesTheArenaAndGivesTheSameEmbeddings) {
    auto be = make_backend("cpu-f64");
    ModelConfig cfg = small_config(false, 1);
    ClipModel model(*be, cfg, 4);
    model.init_weights(1);
    const Batch batch = random_batch(cfg, 4, 11);
    model.set_inputs(batch.images.data(), batch.tokens.data());
    model.forward();
    std::vector<double> full(size_t(4 * cfg.embed_dim));
    be->download(full.data(), model.image_embeddings());
    model.set_batch(2);
    model.set_inputs(batch.images.data(), batch.tokens.data());  // first two examples
    model.forward();
    std::vector<double> half(size_t(2 * cfg.embed_dim));
    be->download(half.data(), model.image_embeddings());
    for (size_t i = 0; i < half.size(); ++i) EXPECT_NEAR(half[i], full[i], 1e-12);
    EXPECT_THROW(model.set_batch(5), Error);
}

}  // namespace
}  // namespace curaclip
