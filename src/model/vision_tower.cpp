#include "model/vision_tower.h"

#include <vector>

namespace curaclip {

void VisionTower::declare(ParameterSet& ps, const ModelConfig& cfg) {
    cfg_ = cfg;
    const int64_t C = cfg.vision.width, p = cfg.patch_size;
    conv1_ = ps.declare("visual.conv1.weight", {C, cfg.channels, p, p}, true);
    cls_ = ps.declare("visual.class_embedding", {C}, false);
    pos_ = ps.declare("visual.positional_embedding", {cfg.vision_tokens(), C}, false);
    ln_pre_w_ = ps.declare("visual.ln_pre.weight", {C}, false);
    ln_pre_b_ = ps.declare("visual.ln_pre.bias", {C}, false);
    stack_.declare(ps, "visual.transformer", cfg.vision);
    head_.declare(ps, "visual.ln_post", "visual.proj", C, cfg.embed_dim);
}

void VisionTower::layout(Arena& arena, DType dt, int64_t B) {
    batch_ = B;
    const int64_t C = cfg_.vision.width, P = cfg_.num_patches(), T = cfg_.vision_tokens();
    const int64_t pp = int64_t(cfg_.channels) * cfg_.patch_size * cfg_.patch_size;
    const DType stat = dt == DType::f64 ? DType::f64 : DType::f32;
    images_ = arena.alloc({B, cfg_.image_size, cfg_.image_size, cfg_.channels}, DType::u8);
    patches_ = arena.alloc({B * P, pp}, dt);
    patch_emb_ = arena.alloc({B * P, C}, dt);
    x0_ = arena.alloc({B, T, C}, dt);
    x_pre_ = arena.alloc({B, T, C}, dt);
    ln_pre_mean_ = arena.alloc({B * T}, stat);
    ln_pre_rstd_ = arena.alloc({B * T}, stat);
    cls_idx_ = arena.alloc({B}, DType::i32);
    stack_.layout(arena, dt, B, T);
    head_.layout(arena, dt, B);
    dresid_ = arena.alloc({B * T, C}, dt);
    dx0_ = arena.alloc({B * T, C}, dt);
    dpatch_emb_ = arena.alloc({B * P, C}, dt);
}

void VisionTower::set_images(Backend& be, const uint8_t* images) { be.upload_raw(images_, images); }

void VisionTower::forward(Backend& be, ParameterSet& ps) {
    const int64_t C = cfg_.vision.width, T = cfg_.vision_tokens();
    if (!cls_idx_.empty()) {  // class token pooling: index 0 of every row
        const std::vector<int32_t> zeros(size_t(batch_), 0);
        be.upload_raw(cls_idx_, zeros.data());
    }
    be.patchify(patches_, images_, cfg_.patch_size, cfg_.image_mean.data(), cfg_.image_std.data());
    const Tensor conv = ps[conv1_].value.view({C, patches_.shape[1]});
    be.linear_forward(patch_emb_, patches_, conv, Tensor{});
    be.vit_embed_forward(x0_, patch_emb_, ps[cls_].value, ps[pos_].value);
    be.layernorm_forward(x_pre_.view({batch_ * T, C}), ln_pre_mean_, ln_pre_rstd_, x0_.view({batch_ * T, C}),
                         ps[ln_pre_w_].value, ps[ln_pre_b_].value);
    stack_.forward(be, ps, x_pre_, cfg_.activation, /*causal=*/false);
    head_.forward(be, ps, stack_.output(x_pre_).view({batch_, T, C}), cls_idx_);
}

void VisionTower::backward(Backend& be, ParameterSet& ps) {
    const int64_t C = cfg_.vision.width, T = cfg_.vision_tokens();
    be.fill(dresid_, 0.0f);
    head_.backward(be, ps, dresid_.view({batch_, T, C}), cls_idx_);
    stack_.backward(be, ps, x_pre_, dresid_, cfg_.activation, /*causal=*/false);
    be.fill(dx0_, 0.0f);
    be.layernorm_backward(dx0_, ps[ln_pre_w_].grad, ps[ln_pre_b_].grad, dresid_, x0_.view({batch_ * T, C}),
                          ps[ln_pre_w_].value, ln_pre_mean_, ln_pre_rstd_);
    be.fill(dpatch_emb_, 0.0f);
    be.vit_embed_backward(dpatch_emb_, ps[cls_].grad, ps[pos_].grad, dx0_.view({batch_, T, C}));
    const Tensor conv = ps[conv1_].value.view({C, patches_.shape[1]});
    const Tensor dconv = ps[conv1_].grad.view({C, patches_.shape[1]});
    be.linear_backward(Tensor{}, dconv, Tensor{}, dpatch_emb_, patches_, conv);
}

}  // namespace curaclip
