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
        "train.init_from",      "train.init_optimizer", "data.eval",         "jest.reference_cache"};
    return kAllowed.count(key) > 0;
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
