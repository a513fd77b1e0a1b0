// open_clip / OpenAI CLIP weights in safetensors files, both ways (docs/interop.md).
//
// NAMES. curaclip's parameter names ARE open_clip's state_dict keys for its standard
// ViT CLIP (open_clip.model.CLIP, 3.3.0): visual.conv1.weight, visual.class_embedding,
// visual.positional_embedding, visual.ln_pre.*, visual.transformer.resblocks.N.
// {ln_1,attn.in_proj_weight,attn.in_proj_bias,attn.out_proj,ln_2,mlp.c_fc,mlp.c_proj}.*,
// visual.ln_post.*, visual.proj, token_embedding.weight, positional_embedding,
// transformer.resblocks.N.*, ln_final.*, text_projection, logit_scale (0-d), logit_bias
// (0-d, SigLIP). OpenAI's state dicts use the same names. Reading also accepts, and
// brings to those names:
//   * a "module." prefix (a checkpoint saved from DistributedDataParallel);
//   * open_clip's CustomTextCLIP layout ("text." + the text tower's names; its
//     text_projection as an nn.Linear "text.text_projection.weight" [embed, width],
//     transposed to [width, embed]);
//   * attention as separate projections (attn.q_proj / k_proj / v_proj .weight/.bias),
//     packed into in_proj_weight / in_proj_bias in q, k, v order (nn.MultiheadAttention's
//     layout, which both open_clip and OpenAI use);
//   * bookkeeping that is not a weight, dropped: OpenAI's "input_resolution",
//     "context_length", "vocab_size", and "attn_mask" / "text.transformer.embeddings.position_ids"
//     buffers of older open_clip versions.
// Tensors may be F32, F16 or BF16 (widened exactly to float32).
//
// SHAPE. The tensors tell widths, depths, MLP ratio, patch size, channels, image size
// (positional-embedding grid x patch), context length, vocabulary, embedding size and
// SigLIP (logit_bias present); they do not tell the attention heads, the MLP activation
// (QuickGELU for OpenAI's weights, GELU for most of open_clip's) or the image mean/std.
// Those come from the recipe (convert --model), from the file's own description
// (curaclip.model_config in its __metadata__, or open_clip_config.json beside it, the
// layout of open_clip's local-dir: and Hugging Face repos), or else open_clip's defaults
// (64-wide heads, GELU, OpenAI's mean/std for 3 channels).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "model/parameters.h"

namespace curaclip::interop {

struct HostTensor {
    std::vector<int64_t> shape;  // [] for a 0-d scalar
    std::vector<float> values;   // row-major
};
using StateDict = std::map<std::string, HostTensor>;

// Reads a safetensors file and brings its names and layouts to open_clip's (above).
// Errors name the file and the tensor (a dtype that is not F32/F16/BF16, a q/k/v set
// with a projection missing).
StateDict read_open_clip_state_dict(const std::string& path);

// Whether the file describes its model beyond the tensors (curaclip.model_config in its
// __metadata__, or open_clip_config.json beside it), or is one of OpenAI's releases
// (its bookkeeping entries input_resolution / context_length / vocab_size: QuickGELU,
// 64-wide heads): then safetensors_model_config's heads and activation are the file's
// own, not open_clip's defaults.
bool safetensors_describes_model(const std::string& path);

// The model shape the tensors imply. Heads, activation, mean/std, flexi settings come
// from `base` (heads where the width agrees with base's, else width/64 as open_clip's
// head_width default and OpenAI's build_model); mean/std become OpenAI's when the
// channels differ from base's. A tensor the shape is read from that is absent or of an
// impossible shape is an Error naming it and the file.
ModelConfig model_config_from_state_dict(const StateDict& sd, const ModelConfig& base, const std::string& path);

// Every field of `file` (the shape the tensors imply) that differs from `recipe`, as
// "model.vision_width: the file has 768, the recipe 64". The image size may differ (the
// positional embedding is resized) as long as the patch size agrees.
std::vector<std::string> shape_mismatches(const ModelConfig& file, const ModelConfig& recipe);

// The model config of a safetensors file used directly as a checkpoint (train.init_from,
// jest.reference, eval/embed --checkpoint): its curaclip.model_config metadata, else
// open_clip_config.json in the same folder, else the tensors with open_clip's defaults
// (ModelConfig::preset("vit_b32")'s context/mean/std and GELU); checked against the
// tensors in every case (mismatches listed all at once).
ModelConfig safetensors_model_config(const std::string& path);

// Reads `sd` into params. Every parameter must have its tensor with its shape, except
// that logit_scale/logit_bias may be 0-d or [1] and visual.positional_embedding of
// another square grid is resized to the model's (resize_pos_embed, bicubic; antialias
// as open_clip's load_checkpoint). Missing tensors, extra tensors (no parameter of the
// model takes them), shapes that differ and non-finite values are ONE Error naming the
// file and every tensor concerned. Returns a note of what was adapted ("" if nothing).
std::string load_state_dict(const StateDict& sd, ParameterSet& params, const std::string& path,
                            bool antialias = true);

// The model's parameters under open_clip's names and shapes (logit_scale/logit_bias 0-d).
StateDict state_dict_of(ParameterSet& params);

// open_clip_config.json for `cfg`: {"model_cfg": {...}, "preprocess_cfg": {...}}, what
// open_clip.create_model("local-dir:FOLDER") reads (the model_cfg alone is what
// open_clip.CLIP(**model_cfg) / add_model_config take). Error for what open_clip's CLIP
// cannot express: one channel (its conv1 takes RGB), different MLP ratios per tower.
std::string open_clip_config_json(const ModelConfig& cfg);

// Writes params as an open_clip safetensors file (F32; metadata "format": "pt" and
// "curaclip.model_config": the INI of cfg), durably.
void write_open_clip_safetensors(const std::string& path, ParameterSet& params, const ModelConfig& cfg);

}  // namespace curaclip::interop
