// <run>/metrics.jsonl: one JSON object per line (training windows, evaluations),
// appended by rank 0 and read by bench/plot_metrics.py and users' json.loads.
//
// JSON has no NaN or infinity: printf and iostreams write them as nan, -nan, inf,
// which no JSON parser takes, so one NaN loss used to make the whole file
// unreadable. Every number written here that is not finite becomes null.
#pragma once

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace curaclip {

// v in the printf format fmt (one floating conversion, e.g. "%.6f"), or null when
// v is NaN or infinite.
std::string json_number(double v, const char* fmt = "%.17g");

// `json` with every bare number token nan, -nan, inf, -inf, infinity (any case, as
// printf, iostreams or Python write them) outside string literals replaced by null.
// Anything else is left as it is.
std::string json_null_non_finite(const std::string& json);

class MetricsLog {
public:
    MetricsLog() = default;  // closed: write() does nothing (ranks other than 0)
    // Appends to path; throws an Error naming it when it cannot be opened.
    void open(const std::string& path);
    bool is_open() const { return out_.is_open(); }
    // One JSON object (without the newline): non-finite numbers become null, then the
    // line is written and flushed. Throws an Error naming the file when that fails
    // (e.g. a full disk).
    void write(const std::string& object);
    // One row built with the JSON library, written as {"key": value, ...} (the
    // spacing Python's json.dumps uses, which readers that scan the text, like
    // metrics_has_eval, expect); NaN and infinities become null.
    void write_row(const nlohmann::ordered_json& row);

private:
    std::ofstream out_;
    std::string path_;
};

}  // namespace curaclip
