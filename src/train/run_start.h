// How a run starts: fresh, resumed from a checkpoint of its run folder, or not at
// all (a finished run). A resume continues the run it resumes (resume_check.h): the
// options that would make it another run are refused, naming each; a resume from an
// earlier checkpoint that would write over later ones, or to fewer steps, is refused;
// the data at data.train must be the data it trained on. docs/training.md §Resume
// continues the run it resumes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mpi/communicator.h"
#include "optim/adamw.h"
#include "train/resume_check.h"
#include "train/trainer.h"

namespace curaclip {

struct RunStart {
    // Exit 0 without training: the run folder holds a finished run (its marker), or
    // a resume at the last step whose final evaluation is logged already.
    bool nothing_to_do = false;
    std::string resume_path;              // the checkpoint resumed; "" for a fresh run
    int64_t resume_step = 0;              // its step
    std::vector<OptionChange> changes;    // options the resume changes (allowed ones), reported
};

// Collective (decided on rank 0 where files are read, agreed by all). Throws an Error
// for a run folder that holds a run without train.resume / train.overwrite, and for a
// resume that would continue as another run.
RunStart plan_run_start(const TrainOptions& opt, const ModelConfig& model_cfg, const Communicator& comm);

// Collective: a resume continues only on the data it was trained on (as far as its
// checkpoint recorded it: tokenizer, row count, dataset fingerprint; the fingerprint
// is only known on rank 0). Nothing for a fresh run.
void require_resumed_data(const RunStart& start, const TrainOptions& opt, const std::string& tokenizer_id,
                          int64_t train_rows, const std::string& root_fingerprint, const Communicator& comm);

// Rank 0: config.ini for a fresh run; for a resume, config_resume_step_<N>.ini headed
// by what it changed (config.ini stays the record of how the run began), and the
// changes printed.
void write_run_record(const RunStart& start, const TrainOptions& opt, int64_t start_step, const AdamW& adamw);

}  // namespace curaclip
