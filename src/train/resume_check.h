// What a resume may change (docs/training.md §Resume continues the run it resumes, issue 11 item 3): `--train.resume` continues
// the run it resumes. The run's stored options (the checkpoint's config and
// model_config attributes) are compared with those of the resuming invocation;
// a difference that would make the continuation another run than the one stopped
// (model shape, data, batch, seed, optimizer and schedule, JEST and MoDE
// selection) is refused, naming each option with both values. Allowed, and
// reported: train.steps when it grows (a longer cosine schedule from the next step on;
// a shorter one is refused: train.stop_at ends a segment early),
// where and how often to log, evaluate and checkpoint, threads, stop_at, the
// backend and gradient buckets (the same math), the evaluation set, the path of the
// run folder (a moved run), the reference-embedding cache (the same reference), the
// skip limit, and init_from (ignored when resuming).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/ini_text.h"

namespace curaclip {

struct OptionChange {
    std::string key;        // section.key, e.g. "train.batch_size"
    std::string run_value;  // as the run stored it
    std::string new_value;  // as the resuming invocation has it
    bool allowed = false;   // resume_may_change(key)
};

// True for the options a resume may change (see above).
bool resume_may_change(const std::string& key);

// ini_values (INI text -> "section.key" -> value): core/ini_text.h.

// The differences between the run's options and the resuming invocation's, sorted
// by key: run_config/new_config are full option records (model.* keys in them are
// ignored: the model is compared through run_model/new_model, model_config_to_ini
// texts of the whole shape). A key present on one side only is not compared (an
// option this build added or dropped, or a record without options, as a program
// calling run_training directly may pass).
std::vector<OptionChange> resume_changes(const std::string& run_config, const std::string& run_model,
                                         const std::string& new_config, const std::string& new_model);

}  // namespace curaclip
