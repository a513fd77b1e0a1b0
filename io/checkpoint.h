// Checkpoints (DESIGN §9): one HDF5 file per checkpoint holding
//   /params/<open_clip name>        fp32 parameters (0-d scalars for logit_scale/bias),
//                                   readable into PyTorch with h5py
//   /optimizer/adam_m/<name>, /optimizer/adam_v/<name>   AdamW moments (fp32)
//   attributes on "/": format_version, step, loader_epoch, loader_step, seed,
//                      config (the INI text of every option in effect), model_config
//                      (the model's whole shape, enough to rebuild it)
// Written to a temporary name, fsynced, renamed, the directory fsynced; then the
// `latest` pointer (a one-line text file naming the checkpoint) is replaced the
// same way, last. A crash at any moment leaves the previous checkpoint intact.
#pragma once

#include <cstdint>
#include <string>

#include "model/model_config.h"
#include "model/parameters.h"

namespace curaclip {

struct CheckpointState {
    int64_t step = 0;          // optimizer steps completed
    int64_t loader_epoch = 0;  // data-loader position after those steps
    int64_t loader_step = 0;
    uint64_t seed = 0;
    std::string config;        // INI text of every option of the run
    std::string model_config;  // the model's shape as a [model] INI section (model_config_to_ini)
};

// Writes <dir>/<name> and points <dir>/latest at it. Call on one rank.
void save_checkpoint(const std::string& dir, const std::string& name, ParameterSet& params,
                     const CheckpointState& state);

// Reads a checkpoint into params (every parameter must be present with its
// shape; extra or missing ones are errors that name them). with_optimizer also
// restores the AdamW moments.
CheckpointState load_checkpoint(const std::string& path, ParameterSet& params, bool with_optimizer);

// The model shape stored in a checkpoint (its model_config attribute).
ModelConfig checkpoint_model_config(const std::string& path);

// "latest" inside a run directory resolves through the pointer file; a file
// path is returned as is. Errors name what is missing.
std::string resolve_checkpoint(const std::string& run_dir, const std::string& which);

// Name of the checkpoint of a step: "step_00001000.h5".
std::string checkpoint_name(int64_t step);

}  // namespace curaclip
