// Checkpoints: one HDF5 file per checkpoint holding
//   /params/<open_clip name>        fp32 parameters (0-d scalars for logit_scale/bias),
//                                   readable into PyTorch with h5py; a bf16 model's are
//                                   its fp32 masters (ParameterSet::values_to_host), and
//                                   loading writes both value and master (set_value)
//   /optimizer/adam_m/<name>, /optimizer/adam_v/<name>   AdamW moments (fp32)
//   attributes on "/": format_version, step, loader_epoch, loader_step, seed,
//                      config (the INI text of every option in effect), model_config
//                      (the model's whole shape, enough to rebuild it)
// and a `latest` pointer in the run folder: a one-line text file naming the newest
// checkpoint ("step_00001000.h5\n").
//
// NOTHING LOST. A crash, a kill or a full disk at any moment leaves the previous
// checkpoint and `latest` as they were:
//  1. stale temporaries of an earlier, killed write are removed (only the names
//     this writer owns: step_<digits>.h5.tmp and latest.tmp);
//  2. the checkpoint is built in memory (H5File::Mode::in_memory) and written to
//     <name>.tmp with checked write(2)/fsync(2)/close(2) (space reserved first);
//  3. latest.tmp is written and synced the same way;
//  4. only then, with every byte on disk, <name>.tmp is renamed to <name> and
//     latest.tmp to latest (renames need no space), and the folder is synced.
// Any failure removes both temporaries and throws an Error naming the file, the
// system's reason ("No space left on device (disk full)") and what `latest` still
// names. A model holding NaN/Inf is refused before anything is written (it could not
// be loaded again).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
    // What the weights were trained on, so that a model is never used with token ids of
    // another vocabulary and a resume never continues on another file at the same path:
    std::string tokenizer_id;  // BpeTokenizer::id_hex() of data.tokenizer ("" = unknown: not written)
    int64_t train_rows = -1;   // rows of data.train (-1 = unknown: not written)
    std::string train_fingerprint;  // io::dataset_fingerprint of data.train ("" = unknown: not written)
    // AdamW steps of the moments before this run's step 0 (AdamW::moment_step_offset;
    // attribute adam_step_offset, written when > 0; absent = 0).
    int64_t adam_step_offset = 0;
};

// Writes <dir>/<name> and points <dir>/latest at it, as above. `name` is a file
// name (no '/'). Call on one rank.
void save_checkpoint(const std::string& dir, const std::string& name, ParameterSet& params,
                     const CheckpointState& state);

// A path ending in ".safetensors" is an open_clip / OpenAI weights file, not a
// checkpoint: src/interop/weights_file.h reads both kinds (what users name with
// train.init_from, jest.reference, eval/embed --checkpoint). This file knows only
// curaclip's own HDF5 checkpoints.
bool is_safetensors_path(const std::string& path);

// Reads a checkpoint into params (every parameter must be present with its
// shape; extra or missing ones are errors that name them). with_optimizer also
// restores the AdamW moments. A checkpoint holding NaN or Inf in a parameter (or,
// with_optimizer, in a moment) is refused, naming the file and the tensors (the
// first 10, then a count), before the caller can use it; params are then partly
// overwritten and must not be used.
CheckpointState load_checkpoint(const std::string& path, ParameterSet& params, bool with_optimizer);

// The tokenizer_id / train_rows attributes (empty / -1 for a checkpoint that has none:
// written before they were recorded, by a converter, or a safetensors file, which
// records none).
CheckpointState checkpoint_provenance(const std::string& path);

// The checkpoint's text tower was trained on the ids of one tokenizer: a dataset
// tokenized by another gives it other words, and every figure would be silently
// wrong. An Error naming both files and both tokenizer ids, with the fix, when the
// checkpoint records a tokenizer and it differs; nothing when it records none.
// `what` names the option ("--checkpoint", "train.init_from").
void require_checkpoint_tokenizer(const std::string& checkpoint, const std::string& what,
                                  const std::string& data_path, const std::string& data_tokenizer_id);

// The model shape stored in a checkpoint (its model_config attribute).
ModelConfig checkpoint_model_config(const std::string& path);

// One parameter's values (row-major, fp32) from a checkpoint; empty if the file has no
// such parameter.
std::vector<float> checkpoint_parameter(const std::string& path, const std::string& name);

// Writes ONE checkpoint file at `path` (same layout as save_checkpoint, optimizer moments
// as the params hold them) without any `latest` pointer, durably, never replacing an
// existing file (an Error naming it). For converters (curaclip convert).
void write_checkpoint_file(const std::string& path, ParameterSet& params, const CheckpointState& state);

// "latest" inside a run directory resolves through the pointer file, which must
// hold one line naming an existing file in run_dir (a NUL byte, control characters,
// a '/', several lines or an empty file are errors that name the pointer and show
// what it holds, escaped); any other value is a checkpoint path, returned as is if
// it exists.
std::string resolve_checkpoint(const std::string& run_dir, const std::string& which);

// Name of the checkpoint of a step: "step_00001000.h5".
std::string checkpoint_name(int64_t step);

}  // namespace curaclip
