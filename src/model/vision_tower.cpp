#include "model/vision_tower.h"

#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "model/flexi_resize.h"

namespace curaclip {

namespace {
// Host resize matrices are pure functions of their sizes; JEST alternates plans every
// step (re-layout), so keep them instead of recomputing an SVD each time.
const std::vector<double>& cached(std::map<std::pair<int, int>, std::vector<double>>& cache, int a, int b,
                                  std::vector<double> (*make)(int, int)) {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find({a, b});
    if (it == cache.end()) it = cache.emplace(std::make_pair(a, b), make(a, b)).first;
    return it->second;
}
const std::vector<double>& pi_resize(int p, int q) {
    static std::map<std::pair<int, int>, std::vector<double>> cache;
    return cached(cache, p, q, &pi_resize_matrix);
}
const std::vector<double>& grid_resize(int g, int h) {
    static std::map<std::pair<int, int>, std::vector<double>> cache;
    return cached(cache, g, h, &bilinear_resize_matrix);
}
}  // namespace

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

void VisionTower::layout(Arena& arena, DType dt, const std::vector<VisionPassSpec>& plan) {
    passes_.clear();
    batch_ = 0;
    for (const VisionPassSpec& s : plan) {
        CC_CHECK(s.rows >= 0, "vision pass of ", s.rows, " rows");
        CC_CHECK(s.patch > 0 && cfg_.image_size % s.patch == 0, "vision pass at patch size ", s.patch,
                 ": it must divide model.image_size (", cfg_.image_size, ")");
        if (s.rows == 0) continue;
        if (!passes_.empty() && passes_.back().patch == s.patch) {
            passes_.back().rows += s.rows;
        } else {
            Pass p;
            p.patch = s.patch;
            p.rows = s.rows;
            p.offset = batch_;
            passes_.push_back(std::move(p));
        }
        batch_ += s.rows;
    }
    CC_CHECK(batch_ > 0, "vision plan without rows");
    images_ = arena.alloc({batch_, cfg_.image_size, cfg_.image_size, cfg_.channels}, DType::u8);
    for (Pass& p : passes_) layout_pass(arena, dt, p);
    emb_ = demb_ = Tensor{};
    if (passes_.size() > 1) {
        emb_ = arena.alloc({batch_, cfg_.embed_dim}, dt);
        demb_ = arena.alloc({batch_, cfg_.embed_dim}, dt);
    }
}

void VisionTower::layout_pass(Arena& arena, DType dt, Pass& p) {
    const int64_t C = cfg_.vision.width, Cin = cfg_.channels, B = p.rows;
    p.grid = cfg_.image_size / p.patch;
    const int64_t P = int64_t(p.grid) * p.grid, T = P + 1, pp = Cin * p.patch * p.patch;
    p.tokens = T;
    p.resized = p.patch != cfg_.patch_size;
    const DType stat = dt == DType::f64 ? DType::f64 : DType::f32;
    if (p.resized) {
        const int64_t q = cfg_.patch_size, g = cfg_.grid();
        p.resize_conv = arena.alloc({int64_t(p.patch) * p.patch, q * q}, dt);
        p.resize_pos = arena.alloc({P, g * g}, dt);
        p.conv = arena.alloc({C, pp}, dt);
        p.pos = arena.alloc({T, C}, dt);
        p.constants_ready = false;  // R and M are uploaded by the first forward
    }
    p.patches = arena.alloc({B * P, pp}, dt);
    p.patch_emb = arena.alloc({B * P, C}, dt);
    p.x0 = arena.alloc({B, T, C}, dt);
    p.x_pre = arena.alloc({B, T, C}, dt);
    p.ln_pre_mean = arena.alloc({B * T}, stat);
    p.ln_pre_rstd = arena.alloc({B * T}, stat);
    p.cls_idx = arena.alloc({B}, DType::i32);
    p.stack = stack_;
    p.stack.layout(arena, dt, B, T);
    p.head = head_;
    p.head.layout(arena, dt, B);
    p.dresid = arena.alloc({B * T, C}, dt);
    p.dx0 = arena.alloc({B * T, C}, dt);
    p.dpatch_emb = arena.alloc({B * P, C}, dt);
    if (p.resized) {
        p.dconv = arena.alloc({C, pp}, dt);
        p.dpos = arena.alloc({T, C}, dt);
    }
}

void VisionTower::set_images(Backend& be, const uint8_t* images) { be.upload_raw(images_, images); }

Tensor VisionTower::embeddings() const { return passes_.size() == 1 ? passes_[0].head.embeddings() : emb_; }
Tensor VisionTower::d_embeddings() const { return passes_.size() == 1 ? passes_[0].head.d_embeddings() : demb_; }

std::vector<VisionPassSpec> VisionTower::plan() const {
    std::vector<VisionPassSpec> out;
    for (const Pass& p : passes_) out.push_back({p.patch, p.rows});
    return out;
}

void VisionTower::forward(Backend& be, ParameterSet& ps) {
    for (Pass& p : passes_) forward_pass(be, ps, p);
}

void VisionTower::backward(Backend& be, ParameterSet& ps, const GradsReady& ready) {
    // Every pass adds to the same gradients: only the last one (i == 0) finalizes them.
    for (size_t i = passes_.size(); i-- > 0;) backward_pass(be, ps, passes_[i], i == 0 ? ready : GradsReady{});
    // conv1, class embedding, positional embedding, ln_pre: declared one after the other.
    if (ready) ready(conv1_, ln_pre_b_ - conv1_ + 1);
}

void VisionTower::forward_pass(Backend& be, ParameterSet& ps, Pass& p) {
    const int64_t C = cfg_.vision.width, T = p.tokens, B = p.rows, Cin = cfg_.channels;
    if (!p.cls_idx.empty()) {  // class token pooling: index 0 of every row
        const std::vector<int32_t> zeros(size_t(B), 0);
        be.upload_raw(p.cls_idx, zeros.data());
    }
    be.patchify(p.patches, images_.slice_rows(p.offset, B), p.patch, cfg_.image_mean.data(), cfg_.image_std.data());
    Tensor conv = p.conv, pos = p.pos;
    if (!p.resized) {
        conv = ps[conv1_].value.view({C, p.patches.shape[1]});
        pos = ps[pos_].value;
    } else {
        if (!p.constants_ready) {
            be.upload(p.resize_conv, pi_resize(cfg_.patch_size, p.patch).data());
            be.upload(p.resize_pos, grid_resize(cfg_.grid(), p.grid).data());
            p.constants_ready = true;
        }
        // Derived weights: conv' = conv Rᵀ per (out, in) channel; pos' = [pos[0]; M pos[1:]].
        const int64_t q2 = int64_t(cfg_.patch_size) * cfg_.patch_size, g2 = int64_t(cfg_.grid()) * cfg_.grid();
        be.matmul(p.conv.view({C * Cin, int64_t(p.patch) * p.patch}), ps[conv1_].value.view({C * Cin, q2}),
                  p.resize_conv, false, true);
        be.copy(p.pos.slice_rows(0, 1), ps[pos_].value.slice_rows(0, 1));
        be.matmul(p.pos.slice_rows(1, T - 1), p.resize_pos, ps[pos_].value.slice_rows(1, g2), false, false);
    }
    be.linear_forward(p.patch_emb, p.patches, conv, Tensor{});
    be.vit_embed_forward(p.x0, p.patch_emb, ps[cls_].value, pos);
    be.layernorm_forward(p.x_pre.view({B * T, C}), p.ln_pre_mean, p.ln_pre_rstd, p.x0.view({B * T, C}),
                         ps[ln_pre_w_].value, ps[ln_pre_b_].value);
    p.stack.forward(be, ps, p.x_pre, cfg_.activation, /*causal=*/false);
    p.head.forward(be, ps, p.stack.output(p.x_pre).view({B, T, C}), p.cls_idx);
    if (passes_.size() > 1) be.copy(emb_.slice_rows(p.offset, B), p.head.embeddings());
}

void VisionTower::backward_pass(Backend& be, ParameterSet& ps, Pass& p, const GradsReady& ready) {
    const int64_t C = cfg_.vision.width, T = p.tokens, B = p.rows, Cin = cfg_.channels;
    if (passes_.size() > 1) be.copy(p.head.d_embeddings(), demb_.slice_rows(p.offset, B));
    be.fill(p.dresid, 0.0f);
    p.head.backward(be, ps, p.dresid.view({B, T, C}), p.cls_idx);
    if (ready) ready(head_.first_param(), PooledHead::kParamCount);
    p.stack.backward(be, ps, p.x_pre, p.dresid, cfg_.activation, /*causal=*/false, ready);
    be.fill(p.dx0, 0.0f);
    be.layernorm_backward(p.dx0, ps[ln_pre_w_].grad, ps[ln_pre_b_].grad, p.dresid, p.x0.view({B * T, C}),
                          ps[ln_pre_w_].value, p.ln_pre_mean, p.ln_pre_rstd);
    be.fill(p.dpatch_emb, 0.0f);
    if (!p.resized) {
        be.vit_embed_backward(p.dpatch_emb, ps[cls_].grad, ps[pos_].grad, p.dx0.view({B, T, C}));
        const Tensor conv = ps[conv1_].value.view({C, p.patches.shape[1]});
        const Tensor dconv = ps[conv1_].grad.view({C, p.patches.shape[1]});
        be.linear_backward(Tensor{}, dconv, Tensor{}, p.dpatch_emb, p.patches, conv);
        return;
    }
    // Through the derived weights: dconv += dconv' R; dpos[0] += dpos'[0]; dpos[1:] += Mᵀ dpos'[1:].
    be.fill(p.dpos, 0.0f);
    be.vit_embed_backward(p.dpatch_emb, ps[cls_].grad, p.dpos, p.dx0.view({B, T, C}));
    be.fill(p.dconv, 0.0f);
    be.linear_backward(Tensor{}, p.dconv, Tensor{}, p.dpatch_emb, p.patches, p.conv);
    const int64_t q2 = int64_t(cfg_.patch_size) * cfg_.patch_size, g2 = int64_t(cfg_.grid()) * cfg_.grid();
    be.matmul(ps[conv1_].grad.view({C * Cin, q2}), p.dconv.view({C * Cin, int64_t(p.patch) * p.patch}),
              p.resize_conv, false, false, 1.0f, 1.0f);
    be.accumulate(ps[pos_].grad.slice_rows(0, 1), p.dpos.slice_rows(0, 1));
    be.matmul(ps[pos_].grad.slice_rows(1, g2), p.resize_pos, p.dpos.slice_rows(1, T - 1), true, false, 1.0f, 1.0f);
}

}  // namespace curaclip
