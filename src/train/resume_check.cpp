#include "train/resume_check.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace curaclip {

bool resume_may_change(const std::string& key) {
    static const std::set<std::string> kAllowed = {
        "train.steps",          "train.log_every",   "train.eval_every",  "train.checkpoint_every",
        "train.stop_at",        "train.threads",     "train.resume",      "train.overwrite",
        "train.backend",        "train.grad_bucket_mb", "train.out",      "train.max_skipped_steps",
        "train.step_timeout",
        "train.init_from",      "data.eval",         "jest.reference_cache"};
    return kAllowed.count(key) > 0;
}

namespace {
std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return "";
    const auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}
}  // namespace

std::map<std::string, std::string> ini_values(const std::string& ini) {
    std::map<std::string, std::string> out;
    std::istringstream in(ini);
    std::string line, section;
    while (std::getline(in, line)) {
        const std::string t = trim(line);
        if (t.empty() || t[0] == '#' || t[0] == ';') continue;
        if (t.front() == '[' && t.back() == ']') {
            section = trim(t.substr(1, t.size() - 2));
            continue;
        }
        const auto eq = t.find('=');
        if (eq == std::string::npos) continue;
        const std::string key = trim(t.substr(0, eq));
        out[section.empty() ? key : section + "." + key] = trim(t.substr(eq + 1));
    }
    return out;
}

std::vector<OptionChange> resume_changes(const std::string& run_config, const std::string& run_model,
                                         const std::string& new_config, const std::string& new_model) {
    std::vector<OptionChange> out;
    auto compare = [&](const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b,
                       bool model) {
        for (const auto& [key, value] : a) {
            if ((key.rfind("model.", 0) == 0) != model) continue;
            const auto it = b.find(key);
            if (it == b.end() || it->second == value) continue;
            out.push_back({key, value, it->second, resume_may_change(key)});
        }
    };
    compare(ini_values(run_config), ini_values(new_config), false);
    compare(ini_values(run_model), ini_values(new_model), true);
    std::sort(out.begin(), out.end(), [](const OptionChange& x, const OptionChange& y) { return x.key < y.key; });
    return out;
}

}  // namespace curaclip
