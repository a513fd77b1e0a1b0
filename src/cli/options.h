// Command-line and config-file options of every `curaclip <command>`.
//
// Every option can come from an INI file (`--config FILE`, Boost.Program_options
// syntax: `[section]` then `key = value`, giving `section.key`) and be
// overridden on the command line (`--section.key value`). Unknown keys in
// either place are errors, so a typo never silently trains the wrong model.
// A floating-point option that is not a finite number (`nan`, `inf`) is an error
// naming the option, whichever command takes it.
//
// Resuming a run (`curaclip train --train.resume latest`) adds a third layer, the
// run's own stored options (RunDefaults), between the command line and the config
// file: precedence command line > the run's options > config file > built-in
// defaults. So the recipe file a run was started with can be named again without
// undoing what the first command line changed (e.g. its --train.steps).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace curaclip {

namespace po = boost::program_options;

// The stored options of a run being resumed: INI text as ParsedOptions::config_text
// writes it, and where it came from (for messages).
struct RunDefaults {
    std::string ini;
    std::string origin;
};

struct ParsedOptions {
    po::variables_map vm;
    bool help = false;  // --help was given: the usage has been printed
    std::string config_text;  // every option in effect, as INI, for run records
    std::set<std::string> on_command_line;  // keys given on the command line
    // With RunDefaults: a line naming every config-file value that the run's stored
    // value replaced ("... take precedence over configs/tiny.ini: train.steps = 20
    // (file: 4000), ...").
    std::vector<std::string> notes;
};

// Parses argv (argv[0] is the command name) against `desc` (to which --help and
// --config are added). The command line takes precedence over the config file.
// Throws an Error naming the bad option or file (a --config that is a folder, or
// unreadable, is one).
// `positional`: names the option that takes bare arguments (e.g. prep's inputs).
// `run`: a resumed run's stored options, layered between command line and config file.
ParsedOptions parse_options(int argc, char** argv, const po::options_description& desc,
                            const std::string& usage, const po::positional_options_description* positional = nullptr,
                            const RunDefaults* run = nullptr);

// The value of one option as the command line and config file give it (command
// line first), before the full parse and without checking required options; empty
// when neither gives it. For what decides how to parse (train.resume, train.out).
std::optional<std::string> peek_option(int argc, char** argv, const po::options_description& desc,
                                       const std::string& key);

// One option value as text, as config_text records it (doubles with 17 digits).
std::string option_value_text(const po::variable_value& v);

}  // namespace curaclip
