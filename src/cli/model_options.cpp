#include "cli/model_options.h"

#include <map>
#include <string>

namespace curaclip {

namespace po = boost::program_options;

po::options_description model_options() {
    po::options_description d("Model ([model] section)");
    d.add_options()("model.preset", po::value<std::string>(), "starting shape: tiny, small, vit_b32, vit_b16, vit_l14");
    // Values stay text here: model_fields() parses them, so a bad value gets the same
    // message from the command line, a config file and a checkpoint.
    for (const ModelField& f : model_fields())
        d.add_options()((std::string("model.") + f.key).c_str(), po::value<std::string>(), f.help);
    return d;
}

ModelConfig model_config_from(const po::variables_map& vm) {
    std::map<std::string, std::string> values;
    for (const ModelField& f : model_fields()) {
        const std::string key = std::string("model.") + f.key;
        if (vm.count(key)) values[f.key] = vm[key].as<std::string>();
    }
    const std::string preset = vm.count("model.preset") ? vm["model.preset"].as<std::string>() : "";
    if (vm.count("model.preset") && preset.empty()) (void)ModelConfig::preset(preset);  // names the known presets
    return model_config_from_values(preset, values, "the [model] options");
}

}  // namespace curaclip
