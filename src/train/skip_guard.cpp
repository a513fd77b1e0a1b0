#include "train/skip_guard.h"

#include <cmath>
#include <cstdio>

#include "core/check.h"

namespace curaclip {

void SkipGuard::note(const StepResult& r, int64_t done) {
    if (!r.skipped && std::isfinite(r.loss)) {
        streak_ = 0;
        return;
    }
    ++total_;
    ++streak_;
    if (root_) std::printf("step %lld: non-finite loss or gradients, update skipped\n", (long long)done);
}

void SkipGuard::fail(int64_t done, const std::string& last_checkpoint) const {
    CC_USER_FAIL("train: ", streak_, " steps in a row (", done - streak_ + 1, "..", done,
                 ") had a non-finite loss or gradient norm and changed nothing (train.max_skipped_steps = ", max_,
                 "); stopped without writing a checkpoint. The last good checkpoint: ",
                 last_checkpoint.empty() ? std::string("none (this run wrote none)") : last_checkpoint,
                 ". Look for the cause in the inputs and options (a too large train.lr, bad "
                 "model.image_mean / image_std, a damaged init_from or data file); train.max_skipped_steps 0 "
                 "never stops");
}

}  // namespace curaclip
