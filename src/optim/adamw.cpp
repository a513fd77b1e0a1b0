#include "optim/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace curaclip {

void OptimizerConfig::validate() const {
    CC_CHECK(std::isfinite(lr) && lr >= 0.0, "optimizer: lr must be >= 0, got ", lr);
    CC_CHECK(beta1 >= 0.0 && beta1 < 1.0, "optimizer: beta1 must be in [0, 1), got ", beta1);
    CC_CHECK(beta2 >= 0.0 && beta2 < 1.0, "optimizer: beta2 must be in [0, 1), got ", beta2);
    CC_CHECK(std::isfinite(eps) && eps > 0.0, "optimizer: eps must be > 0, got ", eps);
    CC_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0,
             "optimizer: weight_decay must be >= 0, got ", weight_decay);
    CC_CHECK(std::isfinite(grad_clip_norm) && grad_clip_norm >= 0.0,
             "optimizer: grad_clip_norm must be >= 0 (0 = off), got ", grad_clip_norm);
    CosineSchedule(lr, warmup_steps, total_steps, min_lr);  // checks the schedule's values
}

AdamW::AdamW(ParameterSet& params, const OptimizerConfig& config)
    : params_(params),
      cfg_((config.validate(), config)),
      schedule_(config.lr, config.warmup_steps, config.total_steps, config.min_lr) {
    CC_CHECK(params.finalized(), "AdamW over a ParameterSet that is not finalized");
    Backend& be = params_.backend();
    const DType acc = be.dtype() == DType::f64 ? DType::f64 : DType::f32;
    scratch_ = Arena(be, Arena::kAlign, "optimizer scratch");
    norm_sq_ = scratch_.alloc({1}, acc);
}

void AdamW::set_steps_done(int64_t steps) {
    CC_CHECK(steps >= 0, "optimizer: negative step count ", steps);
    steps_ = steps;
}

void AdamW::set_moment_step_offset(int64_t steps) {
    CC_CHECK(steps >= 0, "optimizer: negative moment step offset ", steps);
    moment_offset_ = steps;
}

double AdamW::grad_norm() {
    Backend& be = params_.backend();
    be.fill(norm_sq_, 0.0f);
    for (auto& p : params_.all()) be.sum_squares(norm_sq_, p.grad);
    double sq = 0.0;
    be.download(&sq, norm_sq_);
    return std::sqrt(sq);
}

double AdamW::step() {
    Backend& be = params_.backend();
    const double norm = grad_norm();
    skipped_ = !std::isfinite(norm);
    if (skipped_) return norm;

    last_clip_ = 1.0;
    if (cfg_.grad_clip_norm > 0.0) last_clip_ = std::min(1.0, cfg_.grad_clip_norm / (norm + 1e-6));
    last_lr_ = schedule_.lr(steps_);

    AdamWParams hp;
    hp.lr = float(last_lr_);
    hp.beta1 = float(cfg_.beta1);
    hp.beta2 = float(cfg_.beta2);
    hp.eps = float(cfg_.eps);
    hp.step = moment_offset_ + steps_ + 1;
    for (auto& p : params_.all()) {
        hp.weight_decay = p.weight_decay ? float(cfg_.weight_decay) : 0.0f;
        be.adamw_step(p.value, p.grad, p.adam_m, p.adam_v, p.master, hp, float(last_clip_));
    }
    for (auto& p : params_.all())
        if (p.name == kLogitScaleName) {
            be.clamp(p.value, 0.0f, float(kMaxLogitScale));
            if (!p.master.empty()) be.clamp(p.master, 0.0f, float(kMaxLogitScale));  // keeps them in agreement
        }
    ++steps_;
    return norm;
}

}  // namespace curaclip
