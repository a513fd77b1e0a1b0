// Command-line and config-file options of every `curaclip <command>`.
//
// Every option can come from an INI file (`--config FILE`, Boost.Program_options
// syntax: `[section]` then `key = value`, giving `section.key`) and be
// overridden on the command line (`--section.key value`). Unknown keys in
// either place are errors, so a typo never silently trains the wrong model.
#pragma once

#include <optional>
#include <string>

#include <boost/program_options.hpp>

namespace curaclip {

namespace po = boost::program_options;

struct ParsedOptions {
    po::variables_map vm;
    bool help = false;  // --help was given: the usage has been printed
    std::string config_text;  // every option in effect, as INI, for run records
};

// Parses argv (argv[0] is the command name) against `desc` (to which --help and
// --config are added). The command line takes precedence over the config file.
// Throws an Error naming the bad option or file.
// `positional`: names the option that takes bare arguments (e.g. prep's inputs).
ParsedOptions parse_options(int argc, char** argv, const po::options_description& desc,
                            const std::string& usage, const po::positional_options_description* positional = nullptr);

}  // namespace curaclip
