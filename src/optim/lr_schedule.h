// Learning-rate schedule: linear warmup, then cosine decay (open_clip's cosine_lr).
//
// step is 0-based: the learning rate of the first optimizer step is lr(0).
//   step <  warmup:  base * (step + 1) / warmup
//   step >= warmup:  e = step - warmup, es = total - warmup,
//                    min_lr + 0.5 * (1 + cos(pi * e / es)) * (base - min_lr)
// With min_lr = 0 this is exactly open_clip's cosine_lr. Two differences where
// open_clip's formula misbehaves: steps at or beyond total stay at min_lr
// (open_clip's cosine would rise again), and warmup == total (no decay phase)
// gives min_lr after the warmup instead of dividing by zero.
#pragma once

#include <cstdint>

namespace curaclip {

class CosineSchedule {
public:
    // Throws an Error on a bad configuration: base_lr or min_lr negative or not
    // finite, min_lr > base_lr, warmup < 0, total < 1, warmup > total.
    CosineSchedule(double base_lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);

    double lr(int64_t step) const;

    double base_lr() const { return base_; }
    double min_lr() const { return min_; }
    int64_t warmup_steps() const { return warmup_; }
    int64_t total_steps() const { return total_; }

private:
    double base_, min_;
    int64_t warmup_, total_;
};

}  // namespace curaclip
