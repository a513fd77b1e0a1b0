// The [model] options of the command line and config files, built from the one
// field table of src/model/model_config.h (model_fields()): model.preset picks the
// starting shape, every model.<key> given replaces that field.
#pragma once

#include <boost/program_options.hpp>

#include "model/model_config.h"

namespace curaclip {

boost::program_options::options_description model_options();
// Starts from model.preset (if given) and applies every explicitly set model.* option;
// an Error names the option whose text is not a value of its kind.
ModelConfig model_config_from(const boost::program_options::variables_map& vm);

}  // namespace curaclip
