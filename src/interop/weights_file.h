// Weights files as users name them (train.init_from, jest.reference, eval/embed
// --checkpoint, --routing-checkpoint, export): a curaclip checkpoint (HDF5,
// src/model/checkpoint.h) or an open_clip / OpenAI safetensors file (a path ending in
// ".safetensors"; names and layouts as src/interop/open_clip_weights.h, the
// positional embedding resized to the model's grid; docs/interop.md). These are the
// only entry points that read both: model/ knows only its own checkpoints, and this
// dispatch sits above both (docs/architecture.md §Layers).
#pragma once

#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/model_config.h"
#include "model/parameters.h"

namespace curaclip {

// Reads the weights into params. A checkpoint: as load_checkpoint (with_optimizer
// also restores the AdamW moments). A safetensors file: missing, extra and
// mis-shaped tensors are listed all at once; with_optimizer is an Error (such a file
// has no optimizer state to resume); the returned state holds only model_config.
CheckpointState load_weights(const std::string& path, ParameterSet& params, bool with_optimizer);

// The model shape the file describes (checkpoint_model_config / safetensors_model_config).
ModelConfig weights_model_config(const std::string& path);

// One parameter's values (row-major, fp32); empty if the file has no such parameter.
std::vector<float> weights_parameter(const std::string& path, const std::string& name);

}  // namespace curaclip
