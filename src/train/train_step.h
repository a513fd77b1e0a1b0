// One data-parallel training step of a CLIP model (DESIGN §2):
//   forward both towers -> distributed contrastive loss -> backward ->
//   all-reduce (SUM) of parameter gradients -> AdamW.
// The loss already averages over the global batch (src/loss/contrastive_loss.h),
// so the summed gradients are the global gradient on every rank.
#pragma once

#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "mpi/collectives.h"
#include "optim/adamw.h"

namespace curaclip {

struct StepResult {
    double loss = 0.0;       // global loss (same on every rank)
    double grad_norm = 0.0;  // before clipping; 0 when no optimizer ran
    bool skipped = false;    // non-finite gradients: no update was made
};

class TrainStep {
public:
    // The model's batch is this rank's local batch; the loss must match it.
    TrainStep(ClipModel& model, ContrastiveLoss& loss, Collectives& coll);

    // Forward, loss and backward: parameter gradients of the global loss
    // (zeroed first, all-reduced across ranks). images u8 [B,H,W,C], tokens i32 [B,ctx].
    double compute_gradients(const uint8_t* images, const int32_t* tokens);
    // compute_gradients, then one optimizer step.
    StepResult run(const uint8_t* images, const int32_t* tokens, AdamW& opt);

private:
    ClipModel& model_;
    ContrastiveLoss& loss_;
    Collectives& coll_;
};

}  // namespace curaclip
