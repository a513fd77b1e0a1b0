// The ViT image tower of OpenAI CLIP / open_clip (`model.visual`):
// conv patch embedding (no bias) -> [class token; patches] + positional
// embedding -> ln_pre -> transformer -> ln_post(class token) -> @ proj -> L2 norm.
#pragma once

#include "model/model_config.h"
#include "model/pooled_head.h"
#include "model/transformer.h"

namespace curaclip {

class VisionTower {
public:
    void declare(ParameterSet& ps, const ModelConfig& cfg);
    void layout(Arena& arena, DType dt, int64_t B);
    // Uploads B images (u8 [B,H,W,C], HWC) into the tower's input buffer.
    void set_images(Backend& be, const uint8_t* images);
    Tensor images() const { return images_; }
    void forward(Backend& be, ParameterSet& ps);
    void backward(Backend& be, ParameterSet& ps);  // from head().d_embeddings()
    PooledHead& head() { return head_; }

private:
    ModelConfig cfg_;
    size_t conv1_ = 0, cls_ = 0, pos_ = 0, ln_pre_w_ = 0, ln_pre_b_ = 0;
    TransformerStack stack_;
    PooledHead head_;
    int64_t batch_ = 0;
    Tensor images_, patches_, patch_emb_, x0_, x_pre_, ln_pre_mean_, ln_pre_rstd_, cls_idx_;
    Tensor dresid_, dx0_, dpatch_emb_;
};

}  // namespace curaclip
