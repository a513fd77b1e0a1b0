// ClipModel: image tower + text tower + logit scale (and SigLIP bias), with
// every parameter in one ParameterSet (open_clip names) and every activation
// of a batch in one arena sized before the first step.
//
// Multi-resolution (FlexiViT, config.flexi_patch > 0): the image rows of a batch
// run at one of three resolutions (see VisionTower for the weight resizing):
//   full      every row at patch_size (the plain model; eval, IID training);
//   multires  rows [0, k) at flexi_patch and rows [k, B) at patch_size,
//             k = config.flexi_rows(B) (training; Flexi-JEST: docs/jest.md §One JEST step);
//   low       every row at flexi_patch (cheap JEST scoring; forward only in
//             practice, although backward works too).
// image_embeddings() always holds all B rows in batch order, so the loss does not
// care; backward() splits d_image_embeddings() the same way. The arena is sized at
// construction for the largest of the resolutions the config allows at max_batch.
#pragma once

#include <memory>
#include <string>
#include <vector>

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

    enum class Resolution { full, multires, low };

    // Re-lays out the activations for a batch of b <= max_batch pairs (e.g. JEST scoring)
    // at the given resolution (multires and low need config().flexi()). A no-op when
    // nothing changes.
    void set_batch(int64_t b, Resolution r = Resolution::full);
    int64_t batch() const { return batch_; }
    int64_t max_batch() const { return max_batch_; }
    Resolution resolution() const { return resolution_; }
    // Image rows [0, low_rows()) run at config().flexi_patch under the current layout.
    int64_t low_rows() const;
    // The vision passes (patch size, rows) of a batch of b at resolution r.
    std::vector<VisionPassSpec> vision_plan(int64_t b, Resolution r) const;
    // Activation bytes of a batch of b at resolution r (a measuring layout; no memory).
    size_t activation_bytes_for(int64_t b, Resolution r);

    // images u8 [B,H,W,C], tokens i32 [B,context], B = batch(); either may be null.
    void set_inputs(const uint8_t* images, const int32_t* tokens);
    void forward_image();
    void forward_text();
    void forward() { forward_image(); forward_text(); }
    // Zeroes d_image_embeddings()/d_text_embeddings() (the loss accumulates into them).
    void zero_embedding_grads();
    // From the embedding gradients to every parameter gradient (accumulated). ready
    // (optional) hears of every parameter once its gradient is final in this pass
    // (the logit scale/bias first: the loss has written them already).
    void backward(const GradsReady& ready = {});

    Tensor image_embeddings() { return vision_.embeddings(); }
    Tensor text_embeddings() { return text_.head().embeddings(); }
    Tensor d_image_embeddings() { return vision_.d_embeddings(); }
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
    void layout(Arena& arena, int64_t b, Resolution r);

    Backend* be_;
    ModelConfig config_;
    ParameterSet params_;
    VisionTower vision_;
    TextTower text_;
    size_t logit_scale_ = 0, logit_bias_ = 0;
    int64_t max_batch_ = 0, batch_ = 0;
    Resolution resolution_ = Resolution::full;
    size_t plan_bytes_[3] = {0, 0, 0};  // activation bytes at max_batch: full, multires, low
    Arena activations_;
};

// Fills every parameter as open_clip initializes CLIP (see weight_init.cpp).
void init_clip_weights(ParameterSet& ps, const ModelConfig& cfg, uint64_t seed);

const char* resolution_name(ClipModel::Resolution r);

}  // namespace curaclip
