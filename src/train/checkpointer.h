// The checkpoints of one run: what each records besides the parameters (the step,
// the loader position, the options, the model shape, the tokenizer and the training
// data's fingerprint), and the rule that a non-finite state never becomes `latest`.
// Rank 0 writes (model/checkpoint.h: built in memory, synced, renamed); every rank
// agrees on the outcome and waits for the write. While a checkpoint is written the
// progress watchdog is paused (a slow disk is not a stuck rank).
#pragma once

#include <cstdint>
#include <string>

#include "io/loader.h"
#include "model/clip_model.h"
#include "mpi/communicator.h"
#include "train/trainer.h"

namespace curaclip {

class Checkpointer {
public:
    // last: the newest checkpoint of this run folder known so far ("" = none; a
    // resume's checkpoint). tokenizer_id, train_fingerprint and adam_step_offset
    // (AdamW::moment_step_offset) go into every checkpoint.
    Checkpointer(const TrainOptions& opt, const ModelConfig& model_cfg, ClipModel& model, const io::Loader& loader,
                 std::string tokenizer_id, std::string train_fingerprint, const Communicator& comm, std::string last,
                 int64_t adam_step_offset);

    // Writes <train.out>/step_<done>.h5 and points `latest` at it. check_finite: steps
    // were skipped since the last write, so the parameters are checked first (on every
    // rank); if any is NaN/Inf nothing is written, root says so, and false is returned.
    // Collective.
    bool save(int64_t done, bool check_finite);

    // The newest checkpoint written or resumed from ("" = none).
    const std::string& last() const { return last_; }
    // last(), or "none" / the given text when there is none (for messages).
    std::string last_or(const std::string& none) const { return last_.empty() ? none : last_; }

private:
    const TrainOptions& opt_;
    std::string model_ini_;
    ClipModel& model_;
    const io::Loader& loader_;
    std::string tokenizer_id_, train_fingerprint_;
    const Communicator& comm_;
    std::string last_;
    int64_t adam_step_offset_;
};

}  // namespace curaclip
