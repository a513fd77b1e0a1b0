#include "train/checkpointer.h"

#include <cstdio>
#include <filesystem>

#include "model/checkpoint.h"
#include "train/preemption.h"
#include "train/run_inputs.h"

namespace curaclip {

Checkpointer::Checkpointer(const TrainOptions& opt, const ModelConfig& model_cfg, ClipModel& model,
                           const io::Loader& loader, std::string tokenizer_id, std::string train_fingerprint,
                           const Communicator& comm, std::string last, int64_t adam_step_offset)
    : opt_(opt),
      model_ini_(model_config_to_ini(model_cfg)),
      model_(model),
      loader_(loader),
      tokenizer_id_(std::move(tokenizer_id)),
      train_fingerprint_(std::move(train_fingerprint)),
      comm_(comm),
      last_(std::move(last)),
      adam_step_offset_(adam_step_offset) {}

bool Checkpointer::save(int64_t done, bool check_finite) {
    const WatchdogPause pause;
    const bool root = comm_.rank() == 0;
    int64_t bad = 0;
    if (check_finite && !parameters_finite(model_.params())) bad = 1;
    comm_.allreduce_max(&bad, 1);
    if (bad) {
        if (root)
            std::printf("step %lld: parameters are not finite: no checkpoint written (the last good one: %s)\n",
                        (long long)done, last_or("none").c_str());
        return false;
    }
    if (root) {
        const io::LoaderPosition pos = loader_.position();
        CheckpointState state;
        state.step = done;
        state.adam_step_offset = adam_step_offset_;
        state.loader_epoch = pos.epoch;
        state.loader_step = pos.step;
        state.seed = opt_.seed;
        state.config = opt_.config_text;
        state.model_config = model_ini_;
        state.tokenizer_id = tokenizer_id_;
        state.train_rows = loader_.dataset_size();
        state.train_fingerprint = train_fingerprint_;
        save_checkpoint(opt_.out_dir, checkpoint_name(done), model_.params(), state);
    }
    comm_.barrier();
    last_ = (std::filesystem::path(opt_.out_dir) / checkpoint_name(done)).string();
    return true;
}

}  // namespace curaclip
