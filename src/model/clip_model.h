// ClipModel: image tower + text tower + logit scale (and SigLIP bias), with
// every parameter in one ParameterSet (open_clip names) and every activation
// of a batch in one arena sized before the first step.
#pragma once

#include <memory>
#include <string>

#include "model/model_config.h"
#include "model/text_tower.h"
#include "model/vision_tower.h"

namespace curaclip {

class ClipModel {
public:
    // Lays out parameters and the activations of up to max_batch pairs.
    ClipModel(Backend& be, const ModelConfig& cfg, int64_t max_batch);

    // open_clip-style initialization from a counter-based RNG (same seed, same weights).
    void init_weights(uint64_t seed);

    // Re-lays out the activations for a batch of b <= max_batch pairs (e.g. JEST scoring).
    void set_batch(int64_t b);
    int64_t batch() const { return batch_; }
    int64_t max_batch() const { return max_batch_; }

    // images u8 [B,H,W,C], tokens i32 [B,context], B = batch(); either may be null.
    void set_inputs(const uint8_t* images, const int32_t* tokens);
    void forward_image();
    void forward_text();
    void forward() { forward_image(); forward_text(); }
    // Zeroes d_image_embeddings()/d_text_embeddings() (the loss accumulates into them).
    void zero_embedding_grads();
    // From the embedding gradients to every parameter gradient (accumulated).
    void backward();

    Tensor image_embeddings() { return vision_.head().embeddings(); }
    Tensor text_embeddings() { return text_.head().embeddings(); }
    Tensor d_image_embeddings() { return vision_.head().d_embeddings(); }
    Tensor d_text_embeddings() { return text_.head().d_embeddings(); }
    Parameter& logit_scale() { return params_[logit_scale_]; }
    Parameter* logit_bias() { return config_.sigmoid_loss ? &params_[logit_bias_] : nullptr; }

    ParameterSet& params() { return params_; }
    const ModelConfig& config() const { return config_; }
    Backend& backend() { return *be_; }
    size_t activation_bytes() const { return activations_.capacity(); }
    // Parameter count and the size of every arena, for the start-of-run printout.
    std::string memory_report() const;

private:
    void layout(Arena& arena, int64_t b);

    Backend* be_;
    ModelConfig config_;
    ParameterSet params_;
    VisionTower vision_;
    TextTower text_;
    size_t logit_scale_ = 0, logit_bias_ = 0;
    int64_t max_batch_ = 0, batch_ = 0;
    Arena activations_;
};

// Fills every parameter as open_clip initializes CLIP (see weight_init.cpp).
void init_clip_weights(ParameterSet& ps, const ModelConfig& cfg, uint64_t seed);

}  // namespace curaclip
