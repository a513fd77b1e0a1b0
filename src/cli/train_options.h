// The [data], [train], [mode] and [jest] options of `curaclip train` and
// `curaclip train-experts`: the schema (names, defaults, help) and its reading into
// TrainOptions (src/train/trainer.h), which then validates them.
#pragma once

#include <boost/program_options.hpp>

#include "train/trainer.h"

namespace curaclip {

boost::program_options::options_description train_options();
// Reads every option into TrainOptions and validates it (validate_train_options):
// an Error names the first option out of range.
TrainOptions train_options_from(const boost::program_options::variables_map& vm);

}  // namespace curaclip
