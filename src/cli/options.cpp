#include "cli/options.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/check.h"

namespace curaclip {

std::string option_value_text(const po::variable_value& v) {
    const auto& a = v.value();
    if (auto p = boost::any_cast<std::string>(&a)) return *p;
    if (auto p = boost::any_cast<int>(&a)) return std::to_string(*p);
    if (auto p = boost::any_cast<int64_t>(&a)) return std::to_string(*p);
    if (auto p = boost::any_cast<double>(&a)) {
        std::ostringstream os;
        os.precision(17);
        os << *p;
        return os.str();
    }
    if (auto p = boost::any_cast<float>(&a)) {
        std::ostringstream os;
        os.precision(9);
        os << *p;
        return os.str();
    }
    if (auto p = boost::any_cast<bool>(&a)) return *p ? "true" : "false";
    if (auto p = boost::any_cast<std::vector<std::string>>(&a)) {
        std::string s;
        for (const auto& x : *p) s += (s.empty() ? "" : " ") + x;
        return s;
    }
    return "?";
}

namespace {

po::options_description with_general(const po::options_description& desc) {
    po::options_description all;
    po::options_description general("General");
    general.add_options()("help,h", "print this help")("config", po::value<std::string>(),
                                                       "INI config file; command-line options override it");
    all.add(general).add(desc);
    return all;
}

// The command line, parsed (not stored). Errors name the bad option.
po::parsed_options parse_command_line(int argc, char** argv, const po::options_description& all,
                                      const po::positional_options_description* positional) {
    try {
        po::command_line_parser parser(argc, argv);
        parser.options(all);
        if (positional) parser.positional(*positional);
        return parser.run();
    } catch (const po::error& e) {
        CC_USER_FAIL("bad command line: ", e.what(), " (see --help)");
    }
}

// The --config file, parsed (not stored). A folder, a missing or unreadable file and
// a read error are refused naming the path (an ifstream opens a folder "fine" and
// reads nothing, which used to train with the built-in defaults).
po::parsed_options parse_config(const std::string& path, const po::options_description& all) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const auto st = fs::status(path, ec);
    CC_REQUIRE(!ec && fs::exists(st), "--config ", path, ": config file not found");
    CC_REQUIRE(!fs::is_directory(st), "--config ", path, " is a folder, not an INI config file");
    std::ifstream f(path);
    CC_REQUIRE(f.is_open(), "--config ", path, ": config file unreadable (", std::strerror(errno), ")");
    try {
        po::parsed_options parsed = po::parse_config_file(f, all, /*allow_unregistered=*/false);
        CC_REQUIRE(!f.bad(), "--config ", path, ": read error (", std::strerror(errno), ")");
        return parsed;
    } catch (const po::error& e) {
        CC_USER_FAIL("config file ", path, ": ", e.what());
    }
}

}  // namespace

std::optional<std::string> peek_option(int argc, char** argv, const po::options_description& desc,
                                       const std::string& key) {
    const po::options_description all = with_general(desc);
    po::variables_map vm;
    try {
        po::store(parse_command_line(argc, argv, all, nullptr), vm);
    } catch (const po::error& e) {
        CC_USER_FAIL("bad command line: ", e.what(), " (see --help)");
    }
    if (vm.count("help")) return std::nullopt;
    if (vm.count("config")) {
        const std::string path = vm["config"].as<std::string>();
        try {
            po::store(parse_config(path, all), vm);
        } catch (const po::error& e) {
            CC_USER_FAIL("config file ", path, ": ", e.what());
        }
    }
    if (!vm.count(key) || vm[key].defaulted()) return std::nullopt;
    return option_value_text(vm[key]);
}

ParsedOptions parse_options(int argc, char** argv, const po::options_description& desc, const std::string& usage,
                            const po::positional_options_description* positional, const RunDefaults* run) {
    const po::options_description all = with_general(desc);
    ParsedOptions out;
    const po::parsed_options cmd = parse_command_line(argc, argv, all, positional);
    for (const auto& o : cmd.options) out.on_command_line.insert(o.string_key);
    try {
        po::store(cmd, out.vm);
    } catch (const po::error& e) {
        CC_USER_FAIL("bad command line: ", e.what(), " (see --help)");
    }
    if (out.vm.count("help")) {
        std::ostringstream os;
        os << all;
        std::printf("%s\n\n%s\n", usage.c_str(), os.str().c_str());
        out.help = true;
        return out;
    }
    if (run) {
        // Stored after the command line, before the config file: command-line values
        // win over the run's, the run's over the file's (po::store never replaces a
        // value an earlier store set). Keys this binary no longer knows are skipped.
        std::istringstream in(run->ini);
        try {
            po::store(po::parse_config_file(in, all, /*allow_unregistered=*/true), out.vm);
        } catch (const po::error& e) {
            CC_USER_FAIL("the stored options of ", run->origin, " do not parse: ", e.what());
        }
    }
    if (out.vm.count("config")) {
        const std::string path = out.vm["config"].as<std::string>();
        const po::parsed_options file = parse_config(path, all);
        try {
            po::store(file, out.vm);
            if (run) {
                po::variables_map from_file;
                po::store(file, from_file);
                std::string kept;
                for (const auto& [key, value] : from_file) {
                    if (out.on_command_line.count(key) || !out.vm.count(key)) continue;
                    const std::string f = option_value_text(value), k = option_value_text(out.vm[key]);
                    if (f != k) kept += (kept.empty() ? "" : ", ") + key + " = " + k + " (file: " + f + ")";
                }
                if (!kept.empty())
                    out.notes.push_back("the run's own options (" + run->origin + ") take precedence over " + path +
                                        ": " + kept + "; an option on the command line changes one where a resume "
                                        "allows it");
            }
        } catch (const po::error& e) {
            CC_USER_FAIL("config file ", path, ": ", e.what());
        }
    }
    try {
        po::notify(out.vm);
    } catch (const po::error& e) {
        CC_USER_FAIL("bad options: ", e.what(), " (see --help)");
    }
    // Numbers that are no numbers: `--train.lr nan` parses as a double, and a NaN
    // passes every `x < lo || x > hi` range check downstream.
    for (const auto& [key, value] : out.vm) {
        if (value.empty()) continue;
        const auto& a = value.value();
        double x = 0.0;
        if (auto p = boost::any_cast<double>(&a)) x = *p;
        else if (auto q = boost::any_cast<float>(&a)) x = double(*q);
        CC_REQUIRE(std::isfinite(x), "option ", key, " = ", option_value_text(value),
                   " is not a finite number");
    }
    // Record every option in effect, grouped by section, as INI.
    std::map<std::string, std::map<std::string, std::string>> sections;
    for (const auto& [key, value] : out.vm) {
        if (key == "help" || key == "config" || value.empty()) continue;
        const auto dot = key.find('.');
        if (dot == std::string::npos) sections[""][key] = option_value_text(value);
        else sections[key.substr(0, dot)][key.substr(dot + 1)] = option_value_text(value);
    }
    std::ostringstream ini;
    for (const auto& [section, keys] : sections) {
        if (!section.empty()) ini << "[" << section << "]\n";
        for (const auto& [k, v] : keys) ini << k << " = " << v << "\n";
    }
    out.config_text = ini.str();
    return out;
}

}  // namespace curaclip
