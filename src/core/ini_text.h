// INI text as curaclip writes it (a run's config_text, model_config_to_ini, the
// checkpoints' config and model_config attributes): "[section]" lines, then
// "key = value" lines. Read back as a map "section.key" -> value, values trimmed;
// blank lines and '#' / ';' comments skipped, lines without '=' ignored, a later
// key replacing an earlier one. Options given by users are parsed by the cli
// (Boost.Program_options), not by this.
#pragma once

#include <map>
#include <sstream>
#include <string>

namespace curaclip {

inline std::string trim_ini(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return "";
    const auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

inline std::map<std::string, std::string> ini_values(const std::string& ini) {
    std::map<std::string, std::string> out;
    std::istringstream in(ini);
    std::string line, section;
    while (std::getline(in, line)) {
        const std::string t = trim_ini(line);
        if (t.empty() || t[0] == '#' || t[0] == ';') continue;
        if (t.front() == '[' && t.back() == ']') {
            section = trim_ini(t.substr(1, t.size() - 2));
            continue;
        }
        const auto eq = t.find('=');
        if (eq == std::string::npos) continue;
        const std::string key = trim_ini(t.substr(0, eq));
        out[section.empty() ? key : section + "." + key] = trim_ini(t.substr(eq + 1));
    }
    return out;
}

}  // namespace curaclip
