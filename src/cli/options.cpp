#include "cli/options.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "core/check.h"

namespace curaclip {

namespace {
// One option value as text, for the record of the run's configuration.
std::string value_text(const po::variable_value& v) {
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
}  // namespace

ParsedOptions parse_options(int argc, char** argv, const po::options_description& desc, const std::string& usage,
                            const po::positional_options_description* positional) {
    po::options_description all;
    po::options_description general("General");
    general.add_options()("help,h", "print this help")("config", po::value<std::string>(),
                                                       "INI config file; command-line options override it");
    all.add(general).add(desc);

    ParsedOptions out;
    try {
        po::command_line_parser parser(argc, argv);
        parser.options(all);
        if (positional) parser.positional(*positional);
        po::store(parser.run(), out.vm);
    } catch (const po::error& e) {
        CC_FAIL("bad command line: ", e.what(), " (see --help)");
    }
    if (out.vm.count("help")) {
        std::ostringstream os;
        os << all;
        std::printf("%s\n\n%s\n", usage.c_str(), os.str().c_str());
        out.help = true;
        return out;
    }
    if (out.vm.count("config")) {
        const std::string path = out.vm["config"].as<std::string>();
        std::ifstream f(path);
        CC_CHECK(f.good(), "config file not found or unreadable: ", path);
        try {
            // Stored second: values already set on the command line win.
            po::store(po::parse_config_file(f, all, /*allow_unregistered=*/false), out.vm);
        } catch (const po::error& e) {
            CC_FAIL("config file ", path, ": ", e.what());
        }
    }
    try {
        po::notify(out.vm);
    } catch (const po::error& e) {
        CC_FAIL("bad options: ", e.what(), " (see --help)");
    }
    // Record every option in effect, grouped by section, as INI.
    std::map<std::string, std::map<std::string, std::string>> sections;
    for (const auto& [key, value] : out.vm) {
        if (key == "help" || key == "config" || value.empty()) continue;
        const auto dot = key.find('.');
        if (dot == std::string::npos) sections[""][key] = value_text(value);
        else sections[key.substr(0, dot)][key.substr(dot + 1)] = value_text(value);
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
