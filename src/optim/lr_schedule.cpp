#include "optim/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "core/check.h"

namespace curaclip {

CosineSchedule::CosineSchedule(double base_lr, int64_t warmup_steps, int64_t total_steps,
                               double min_lr)
    : base_(base_lr), min_(min_lr), warmup_(warmup_steps), total_(total_steps) {
    CC_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, "learning rate must be >= 0, got ", base_lr);
    CC_CHECK(std::isfinite(min_lr) && min_lr >= 0.0, "min_lr must be >= 0, got ", min_lr);
    CC_CHECK(min_lr <= base_lr, "min_lr (", min_lr, ") must not exceed the learning rate (", base_lr,
             ")");
    CC_CHECK(total_steps >= 1, "total_steps must be >= 1, got ", total_steps);
    CC_CHECK(warmup_steps >= 0, "warmup_steps must be >= 0, got ", warmup_steps);
    CC_CHECK(warmup_steps <= total_steps, "warmup_steps (", warmup_steps,
             ") must not exceed total_steps (", total_steps, ")");
}

double CosineSchedule::lr(int64_t step) const {
    CC_CHECK(step >= 0, "learning-rate schedule: negative step ", step);
    if (step < warmup_) return base_ * double(step + 1) / double(warmup_);
    const int64_t es = total_ - warmup_;
    const int64_t e = step - warmup_;
    if (es <= 0 || e >= es) return min_;
    const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * double(e) / double(es)));
    return min_ + cosine * (base_ - min_);
}

}  // namespace curaclip
