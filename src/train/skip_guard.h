// Steps whose loss or gradient norm was not finite change nothing (AdamW skips them;
// train_step.h). SkipGuard counts them: in a row (while any are being skipped, no
// checkpoint is written and `latest` stays the last good state) and in all, and stops
// the run with a user-facing error after train.max_skipped_steps in a row (0: never),
// naming the steps, the last good checkpoint and the usual causes.
#pragma once

#include <cstdint>
#include <string>

#include "train/train_step.h"

namespace curaclip {

class SkipGuard {
public:
    SkipGuard(int64_t max_in_a_row, bool root) : max_(max_in_a_row), root_(root) {}

    // Step `done` (1-based) ended with r: counts it, prints a line on root when skipped.
    // (The loss and the gradient norm are global: every rank sees the same skip.)
    void note(const StepResult& r, int64_t done);
    int64_t in_a_row() const { return streak_; }
    int64_t total() const { return total_; }
    bool stalled() const { return max_ > 0 && streak_ >= max_; }
    // Throws the Error that ends a stalled run (call when stalled()).
    [[noreturn]] void fail(int64_t done, const std::string& last_checkpoint) const;

private:
    int64_t max_;
    bool root_;
    int64_t streak_ = 0, total_ = 0;
};

}  // namespace curaclip
