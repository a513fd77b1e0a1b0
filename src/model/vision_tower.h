// The ViT image tower of OpenAI CLIP / open_clip (`model.visual`):
// conv patch embedding (no bias) -> [class token; patches] + positional
// embedding -> ln_pre -> transformer -> ln_post(class token) -> @ proj -> L2 norm.
//
// Multi-resolution (FlexiViT, docs/architecture.md §Model). One set of weights, stored at
// patch_size p (conv1 [C,Cin,p,p], positional embedding [g²+1, C]), runs at any
// patch size p' that divides the image. A batch is split into PASSES, each a
// contiguous block of rows at one patch size with its own activations (patches,
// embeddings, transformer, head), so a training step can run a low-resolution
// pass on rows [0,k) and a full-resolution pass on rows [k,B) and keep both
// activation sets for the backward. A pass with p' != p first derives its
// weights on the backend (in the activation arena, recomputed every forward):
//   conv'  [C·Cin, p'²] = conv [C·Cin, p²] · Rᵀ,   R = pinv(Bᵀ) (PI-resize)
//   pos'   = [pos[0]; M pos[1:]],                  M bilinear g×g -> g'×g'
// and the backward maps their gradients back: dconv += dconv' R, dpos[1:] += Mᵀ dpos'[1:],
// dpos[0] += dpos'[0]. R and M are built on the host in float64 (flexi_resize.h).
#pragma once

#include <vector>

#include "model/model_config.h"
#include "model/pooled_head.h"
#include "model/transformer.h"

namespace curaclip {

// One pass of a vision plan: `rows` consecutive images at patch size `patch`.
struct VisionPassSpec {
    int patch = 0;
    int64_t rows = 0;
};

class VisionTower {
public:
    void declare(ParameterSet& ps, const ModelConfig& cfg);
    // All B rows at the stored patch size (the plain ViT).
    void layout(Arena& arena, DType dt, int64_t B) { layout(arena, dt, {{cfg_.patch_size, B}}); }
    // Rows of the passes in order; passes of zero rows are dropped and neighbours at the
    // same patch size merged, so a plan that is all one patch size is the plain tower.
    void layout(Arena& arena, DType dt, const std::vector<VisionPassSpec>& plan);
    // Uploads B images (u8 [B,H,W,C], HWC) into the tower's input buffer.
    void set_images(Backend& be, const uint8_t* images);
    Tensor images() const { return images_; }
    void forward(Backend& be, ParameterSet& ps);
    void backward(Backend& be, ParameterSet& ps, const GradsReady& ready = {});  // from d_embeddings()

    // [B, D] unit rows of the whole batch (rows in plan order) and their gradient.
    Tensor embeddings() const;
    Tensor d_embeddings() const;
    // The plan in effect (after dropping/merging) and its batch.
    std::vector<VisionPassSpec> plan() const;
    int64_t batch() const { return batch_; }

private:
    struct Pass {
        int patch = 0, grid = 0;
        int64_t rows = 0, offset = 0, tokens = 0;
        bool resized = false;                  // patch != cfg_.patch_size: derived weights
        bool constants_ready = false;          // resize_conv / resize_pos uploaded
        Tensor resize_conv, resize_pos;         // R [p'², p²], M [g'², g²] (constants)
        Tensor conv, pos, dconv, dpos;          // derived weights [C, Cin·p'²], [T', C] and grads
        Tensor patches, patch_emb, x0, x_pre, ln_pre_mean, ln_pre_rstd, cls_idx;
        TransformerStack stack;
        PooledHead head;
        Tensor dresid, dx0, dpatch_emb;
    };
    void layout_pass(Arena& arena, DType dt, Pass& ps);
    void forward_pass(Backend& be, ParameterSet& ps, Pass& pass);
    void backward_pass(Backend& be, ParameterSet& ps, Pass& pass, const GradsReady& ready);

    ModelConfig cfg_;
    size_t conv1_ = 0, cls_ = 0, pos_ = 0, ln_pre_w_ = 0, ln_pre_b_ = 0;
    TransformerStack stack_;  // declared parameters; each pass holds a copy with its own activations
    PooledHead head_;
    int64_t batch_ = 0;
    std::vector<Pass> passes_;
    Tensor images_;
    Tensor emb_, demb_;  // [B, D] gathered over passes (only when there is more than one)
};

}  // namespace curaclip
