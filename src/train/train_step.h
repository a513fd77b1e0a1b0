// One data-parallel training step of a CLIP model (docs/architecture.md §Data flow of one training step):
//   forward both towers -> distributed contrastive loss -> backward ->
//   all-reduce (SUM) of parameter gradients -> AdamW.
// With more than one rank the all-reduce runs in gradient buckets started during the
// backward pass as their gradients become final (grad_buckets.h; on the GPU over NCCL
// on its own stream, overlapping the backward); bucket_bytes = 0 instead all-reduces
// every parameter after the backward (the reference the buckets are tested against).
// Multi-resolution models (ModelConfig::flexi(), FlexiViT) train the first
// config.flexi_rows(B) rows of every local batch at flexi_patch and the rest at
// patch_size (ClipModel::Resolution::multires); the loss is unchanged.
// The loss already averages over the global batch (src/loss/contrastive_loss.h),
// so the summed gradients are the global gradient on every rank.
#pragma once

#include <memory>

#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "mpi/collectives.h"
#include "optim/adamw.h"
#include "train/grad_buckets.h"

namespace curaclip {

struct StepResult {
    double loss = 0.0;       // global loss (same on every rank)
    double grad_norm = 0.0;  // before clipping; 0 when no optimizer ran
    bool skipped = false;    // non-finite loss or gradients: no update was made (grad_norm NaN
                             // when the loss already was)
};

class TrainStep {
public:
    // The model's batch is this rank's local batch; the loss must match it.
    TrainStep(ClipModel& model, ContrastiveLoss& loss, Collectives& coll,
              size_t bucket_bytes = kDefaultGradBucketBytes);

    // Forward, loss and backward: parameter gradients of the global loss
    // (zeroed first, all-reduced across ranks). images u8 [B,H,W,C], tokens i32 [B,ctx].
    double compute_gradients(const uint8_t* images, const int32_t* tokens);
    // compute_gradients, then one optimizer step, unless the loss or the gradient
    // norm is not finite (then nothing is updated and the result says skipped).
    StepResult run(const uint8_t* images, const int32_t* tokens, AdamW& opt);

    // Multi-resolution training on (default for a flexi model) or off (all rows at full resolution).
    void set_multires(bool on);
    bool multires() const { return multires_; }
    // Training FLOPs of one pair as this step runs it (docs/jest.md §Compute accounting: 3F, or 3F((1-k/B) + (k/B) A)).
    double train_flops_per_pair() const;
    // The gradient buckets (null with one rank or bucket_bytes = 0).
    const GradReducer* grad_reducer() const { return reducer_.get(); }

private:
    ClipModel& model_;
    ContrastiveLoss& loss_;
    Collectives& coll_;
    int64_t batch_;
    bool multires_;
    std::unique_ptr<GradReducer> reducer_;
};

}  // namespace curaclip
