// Contrastive losses over the global batch, distributed across ranks (docs/architecture.md §Losses).
//
// P ranks each hold Bl image and Bl text embeddings (L2-normalized, [Bl, D]);
// the global batch has Bg = P * Bl pairs, rank r owning global rows
// [r*Bl, (r+1)*Bl). Let t = logit_scale[0] (the logit is exp(t) * x·y) and
// b = logit_bias[0].
//
//  softmax (CLIP; open_clip ClipLoss with local_loss=True, gather_with_grad=True):
//    all-gather images and texts; rank r scores its image rows against all
//    texts and its text rows against all images, the positive of local row i
//    being global column r*Bl + i;
//      L = (1/Bg) sum_{i in global batch} (CE_img(i) + CE_txt(i)) / 2.
//  sigmoid (SigLIP):
//    all-gather texts; rank r scores its image rows against all texts;
//      L = -(1/Bg) sum_i sum_j log sigmoid(z_ij (exp(t) x_i·y_j + b)),
//      z_ii = +1, z_ij = -1 otherwise.
//
// GRADIENT CONVENTION (what each output receives; all of them ACCUMULATE, +=,
// as every backward op of the Backend):
//  * dimg, dtxt: the gradient of the GLOBAL loss L w.r.t. this rank's own
//    embeddings. The gradients of the gathered (other ranks') features are
//    reduce-scattered back to their owners inside forward_backward, so no
//    further reduction of embedding gradients is needed and the model backward
//    continues locally.
//  * dscale, dbias: this rank's PARTIAL share of dL/dt, dL/db (the terms of
//    the logits this rank computed). Summed over ranks they give the global
//    gradient, so the ordinary all-reduce-SUM of all parameter gradients
//    (which also sums the per-rank weight gradients of the towers, each of
//    which is the partial of L through that rank's embeddings) gives exactly
//    dL/dθ. No averaging over ranks anywhere: L is already a global mean.
//  This differs from open_clip + DDP (which averages per-rank losses whose
//  gradients w.r.t. gathered features are not reduced back) only in
//  bookkeeping; the resulting parameter gradient is the same dL/dθ.
//
// LOGIT-SCALE CAP (openai/CLIP: "clipped to prevent scaling the logits by more
// than 100"): the losses use t' = min(t, ln 100) in the forward, and dL/dt is
// that of t', i.e. 0 where t > ln 100 (torch.clamp's gradient; at t == ln 100 it
// passes). So a checkpoint whose logit_scale holds, say, 100 (exp = 2.7e43, inf in
// fp32) trains normally instead of producing non-finite losses; AdamW's clamp after
// each step (src/optim/adamw.h) then brings t itself back to ln 100. The cap is
// ln 100 rounded to fp32, the value AdamW's clamp writes. Costs one host read of t
// per forward_backward.
//
// Memory: a workspace arena owned by the object, sized at construction:
// gathered embeddings [Bg, D] (texts; images too for softmax), dots and ddots
// [Bl, Bg], gathered-feature gradients [Bg, D] (two) and [Bl, D] scratch.
#pragma once

#include <string>

#include "backend/backend.h"
#include "backend/arena.h"
#include "mpi/collectives.h"

namespace curaclip {

enum class LossKind { softmax, sigmoid };

// "softmax" (alias "clip") or "sigmoid" (alias "siglip"); anything else throws
// an Error listing the choices.
LossKind parse_loss_kind(const std::string& s);
const char* loss_kind_name(LossKind k);

// ln 100, the largest logit scale t a loss or a JEST score uses (exp(t) <= 100),
// rounded to fp32 as AdamW's clamp writes it.
inline constexpr double kMaxLogitScale = double(float(4.605170185988092));

// The logit scale a forward should use: `logit_scale` ([1], device) itself when
// t <= kMaxLogitScale (or t is not a number: it must stay visible), otherwise
// `scratch` ([1], same dtype) filled with kMaxLogitScale. One host read of t.
// *capped (optional) tells which.
Tensor capped_logit_scale(Backend& be, Tensor logit_scale, Tensor scratch, bool* capped = nullptr);

class ContrastiveLoss {
public:
    // local_batch Bl >= 1 rows per rank, embed_dim D >= 1. backend and coll
    // must outlive the object.
    ContrastiveLoss(Backend& backend, LossKind kind, int64_t local_batch, int64_t embed_dim,
                    Collectives& coll);

    // img, txt [Bl, D] in the backend's dtype; logit_scale [1]; logit_bias [1]
    // (sigmoid only; may be empty for softmax). Gradient outputs accumulate and
    // may be empty: dimg = dtxt = empty means no embedding gradients (forward
    // only, e.g. evaluation); dscale, dbias empty means not needed; dbias is
    // ignored for softmax. Collective: every rank calls it, with the same
    // pattern of empty/non-empty gradient arguments.
    void forward_backward(Tensor img, Tensor txt, Tensor logit_scale, Tensor logit_bias,
                          Tensor dimg, Tensor dtxt, Tensor dscale, Tensor dbias);
    void forward(Tensor img, Tensor txt, Tensor logit_scale, Tensor logit_bias) {
        forward_backward(img, txt, logit_scale, logit_bias, {}, {}, {}, {});
    }

    // The global loss L of the last forward_backward, the same on every rank.
    // Reads the device scalar (a host round trip); not collective.
    double loss();
    // The same value as a device scalar [1] (f64 on f64 backends, f32 otherwise).
    Tensor loss_tensor() const { return loss_; }

    LossKind kind() const { return kind_; }
    int64_t local_batch() const { return Bl_; }
    int64_t global_batch() const { return Bg_; }
    int64_t embed_dim() const { return D_; }
    size_t workspace_bytes() const { return arena_.capacity(); }

private:
    void layout(Arena& a);
    void softmax(Tensor img, Tensor txt, Tensor scale, Tensor dimg, Tensor dtxt, Tensor dscale);
    void sigmoid(Tensor img, Tensor txt, Tensor scale, Tensor bias, Tensor dimg, Tensor dtxt,
                 Tensor dscale, Tensor dbias);

    Backend& be_;
    Collectives& coll_;
    LossKind kind_;
    int64_t Bl_, Bg_, D_;
    Arena arena_;
    Tensor img_all_, txt_all_;    // [Bg, D] gathered embeddings (img_all_: softmax only)
    Tensor dots_, ddots_;         // [Bl, Bg]
    Tensor dimg_all_, dtxt_all_;  // [Bg, D] gradients w.r.t. the gathered embeddings
    Tensor scratch_;              // [Bl, D] this rank's reduced share
    Tensor dummy_;                // [2] sink for unwanted dscale/dbias (sigmoid)
    Tensor scale_cap_;            // [1] ln 100, used instead of a logit_scale above it
    Tensor dscale_sink_;          // [1] where the (discarded) gradient of a capped scale goes
    Tensor loss_;                 // [1]
};

}  // namespace curaclip
