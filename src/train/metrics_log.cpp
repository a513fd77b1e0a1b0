#include "train/metrics_log.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/check.h"

namespace curaclip {

std::string json_number(double v, const char* fmt) {
    if (!std::isfinite(v)) return "null";
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    return buf;
}

namespace {
bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }

// Length of a non-finite number token at s[i] (0: none): [-+]?(nan|inf|infinity), case-insensitive,
// not part of a longer word.
size_t non_finite_token(const std::string& s, size_t i) {
    if (i > 0 && word_char(s[i - 1])) return 0;
    size_t j = i;
    if (j < s.size() && (s[j] == '-' || s[j] == '+')) ++j;
    auto match = [&](const char* w) {
        const size_t n = std::strlen(w);
        if (s.size() - j < n) return false;
        for (size_t k = 0; k < n; ++k)
            if (std::tolower(static_cast<unsigned char>(s[j + k])) != w[k]) return false;
        return j + n == s.size() || !word_char(s[j + n]);
    };
    for (const char* w : {"infinity", "inf", "nan"})
        if (match(w)) return j + std::strlen(w) - i;
    return 0;
}
}  // namespace

std::string json_null_non_finite(const std::string& json) {
    std::string out;
    out.reserve(json.size());
    bool in_string = false;
    for (size_t i = 0; i < json.size();) {
        const char c = json[i];
        if (in_string) {
            out.push_back(c);
            if (c == '\\' && i + 1 < json.size()) out.push_back(json[++i]);
            else if (c == '"') in_string = false;
            ++i;
            continue;
        }
        if (c == '"') {
            in_string = true;
            out.push_back(c);
            ++i;
            continue;
        }
        if (const size_t n = non_finite_token(json, i)) {
            out += "null";
            i += n;
            continue;
        }
        out.push_back(c);
        ++i;
    }
    return out;
}

void MetricsLog::open(const std::string& path) {
    path_ = path;
    errno = 0;
    out_.open(path, std::ios::app);
    CC_REQUIRE(out_.is_open(), "cannot open ", path, " for appending (", std::strerror(errno), ")");
}

void MetricsLog::write(const std::string& object) {
    if (!out_.is_open()) return;
    errno = 0;
    out_ << json_null_non_finite(object) << '\n';
    out_.flush();
    CC_REQUIRE(out_.good(), "writing ", path_, " failed (", errno ? std::strerror(errno) : "stream error", ")");
}

void MetricsLog::write_row(const nlohmann::ordered_json& row) {
    std::string line = "{";
    for (auto it = row.begin(); it != row.end(); ++it)
        line += (line.size() > 1 ? ", " : "") + nlohmann::json(it.key()).dump() + ": " + it.value().dump();
    write(line + "}");
}

}  // namespace curaclip
