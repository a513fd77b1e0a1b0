// AdamW over a ParameterSet, with global gradient-norm clipping, the cosine
// learning-rate schedule and the logit-scale clamp: one call per training step.
//
// The gradients must already be the global ones (all-reduced across ranks, see
// src/loss/contrastive_loss.h), so every rank computes the same norm and the
// same update and the replicas stay identical.
//
// Per step (k = steps_done(), 0-based):
//   norm  = sqrt(sum over all parameters of sum(g^2))   (device scalar, one host read)
//   if norm is not finite: nothing is updated, the step is skipped (the caller
//                          reports it; skipped() tells), steps_done() unchanged
//   clip  = min(1, grad_clip_norm / (norm + 1e-6))       (torch clip_grad_norm_; 1 when off)
//   lr    = CosineSchedule(k)
//   every parameter: Backend::adamw_step with g * clip, step k + 1 + moment_step_offset()
//                    for the bias correction, weight decay only where Parameter::weight_decay
//   logit_scale (if the set has one) clamped to [0, ln 100]
// The update is torch.optim.AdamW's (decoupled decay p -= lr*wd*p).
#pragma once

#include <cstdint>

#include "backend/arena.h"
#include "model/parameters.h"
#include "optim/lr_schedule.h"

namespace curaclip {

struct OptimizerConfig {
    double lr = 5e-4;            // peak (base) learning rate
    double beta1 = 0.9;
    double beta2 = 0.98;
    double eps = 1e-6;
    double weight_decay = 0.2;   // applied to parameters with weight_decay == true only
    int64_t warmup_steps = 0;
    int64_t total_steps = 1;
    double grad_clip_norm = 0.0; // 0 = no clipping
    double min_lr = 0.0;         // floor of the cosine decay

    // Throws an Error naming the first bad value.
    void validate() const;
};

class AdamW {
public:
    // Name of the parameter clamped to [0, kMaxLogitScale] after each step.
    static constexpr const char* kLogitScaleName = "logit_scale";
    static constexpr double kMaxLogitScale = 4.605170185988092;  // ln 100

    // params must be finalized and outlive the optimizer.
    AdamW(ParameterSet& params, const OptimizerConfig& config);

    // One optimizer step over every parameter (collective-free; identical on
    // every rank given identical gradients). Returns the global gradient norm
    // before clipping, for logging.
    double step();

    // Completed steps: the state to save in and restore from checkpoints (the
    // moments live in the ParameterSet's adam_m / adam_v tensors).
    int64_t steps_done() const { return steps_; }
    void set_steps_done(int64_t steps);

    // AdamW steps the moments had taken before this run's step 0: 0, or the
    // train.init_from checkpoint's when train.init_optimizer carries its moments over
    // (the bias correction 1 - beta^t continues from there; the learning-rate
    // schedule is this run's own). Saved in every checkpoint, restored on resume.
    int64_t moment_step_offset() const { return moment_offset_; }
    void set_moment_step_offset(int64_t steps);

    double lr_at(int64_t step) const { return schedule_.lr(step); }
    double last_lr() const { return last_lr_; }
    double last_clip_scale() const { return last_clip_; }
    bool skipped() const { return skipped_; }  // the last step() found a non-finite norm
    const OptimizerConfig& config() const { return cfg_; }

    // The global gradient norm sqrt(sum g^2) over every parameter (one host read).
    double grad_norm();

private:
    ParameterSet& params_;
    OptimizerConfig cfg_;
    CosineSchedule schedule_;
    Arena scratch_;
    Tensor norm_sq_;  // [1] device accumulator
    int64_t steps_ = 0;
    int64_t moment_offset_ = 0;
    double last_lr_ = 0.0, last_clip_ = 1.0;
    bool skipped_ = false;
};

}  // namespace curaclip
