#include "interop/weights_file.h"

#include "core/check.h"
#include "interop/open_clip_weights.h"

namespace curaclip {

CheckpointState load_weights(const std::string& path, ParameterSet& params, bool with_optimizer) {
    if (!is_safetensors_path(path)) return load_checkpoint(path, params, with_optimizer);
    CC_REQUIRE(!with_optimizer, path, " holds weights only (safetensors), no optimizer state to resume from; "
               "start a run from it with train.init_from");
    interop::load_state_dict(interop::read_open_clip_state_dict(path), params, path);
    CheckpointState s;
    s.model_config = model_config_to_ini(interop::safetensors_model_config(path));
    return s;
}

ModelConfig weights_model_config(const std::string& path) {
    if (!is_safetensors_path(path)) return checkpoint_model_config(path);
    return interop::safetensors_model_config(path);
}

std::vector<float> weights_parameter(const std::string& path, const std::string& name) {
    if (!is_safetensors_path(path)) return checkpoint_parameter(path, name);
    const interop::StateDict sd = interop::read_open_clip_state_dict(path);
    auto it = sd.find(name);
    return it == sd.end() ? std::vector<float>{} : it->second.values;
}

}  // namespace curaclip
