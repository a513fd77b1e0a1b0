#include "prep/input_paths.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace curaclip::prep {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxExpansion = 10'000'000;

std::vector<std::string> expand_pattern(std::string_view p, const std::string& whole);

// One integer of a range: -?[0-9]+ at the front of `e`, consumed; "" if none.
std::string take_int(std::string_view& e) {
    size_t n = (!e.empty() && e[0] == '-') ? 1 : 0;
    const size_t digits_at = n;
    while (n < e.size() && e[n] >= '0' && e[n] <= '9') ++n;
    if (n == digits_at) return {};
    std::string out(e.substr(0, n));
    e.remove_prefix(n);
    return out;
}

// An integer range "a..b[..step]" as braceexpand's make_int_range (regex
// ^(-?\d+)\.\.(-?\d+)(?:\.\.-?(\d+))?$; the step's sign is ignored), or nullopt.
std::optional<std::vector<std::string>> expand_int_range(std::string_view e, const std::string& whole) {
    const std::string_view expr = e;
    const std::string left = take_int(e);
    if (left.empty() || !e.starts_with("..")) return std::nullopt;
    e.remove_prefix(2);
    const std::string right = take_int(e);
    if (right.empty()) return std::nullopt;
    std::string incr;
    if (!e.empty()) {
        if (!e.starts_with("..")) return std::nullopt;
        e.remove_prefix(2);
        incr = take_int(e);
        if (incr.empty() || !e.empty()) return std::nullopt;
        if (incr[0] == '-') incr.erase(0, 1);
    }
    auto padded = [](const std::string& s) {
        return s != "0" && s != "-0" && (s.starts_with("0") || s.starts_with("-0"));
    };
    const int width = (padded(left) || padded(right)) ? int(std::max(left.size(), right.size())) : 0;
    long long start = 0, end = 0, step = 1;
    try {
        start = std::stoll(left);
        end = std::stoll(right);
        if (!incr.empty()) step = std::stoll(incr);
    } catch (const std::exception&) {
        CC_USER_FAIL("brace range {", std::string(expr), "} in '", whole, "': number out of range");
    }
    if (step == 0) step = 1;
    using ull = unsigned long long;
    const ull span = start <= end ? ull(end) - ull(start) : ull(start) - ull(end);
    const ull count = span / ull(step) + 1;
    CC_REQUIRE(count <= kMaxExpansion, "brace range {", std::string(expr), "} in '", whole, "' gives more than ",
             kMaxExpansion, " names");
    std::vector<std::string> out;
    out.reserve(count);
    char buf[64];
    for (ull i = 0; i < count; ++i) {
        const ull delta = i * ull(step);
        const long long v = start <= end ? (long long)(ull(start) + delta) : (long long)(ull(start) - delta);
        std::snprintf(buf, sizeof buf, "%0*lld", width, v);
        out.emplace_back(buf);
    }
    return out;
}

// The inside of a brace pair: a range, a comma list (each item a pattern
// itself), or nullopt when it is neither (then the braces are literal).
std::optional<std::vector<std::string>> expand_expression(std::string_view e, const std::string& whole) {
    if (auto r = expand_int_range(e, whole)) return r;
    std::vector<std::string_view> items;
    int depth = 0;
    size_t start = 0;
    for (size_t i = 0; i < e.size(); ++i) {
        if (e[i] == '{') ++depth;
        else if (e[i] == '}') --depth;
        else if (e[i] == ',' && depth == 0) {
            items.push_back(e.substr(start, i - start));
            start = i + 1;
        }
    }
    if (items.empty()) return std::nullopt;
    items.push_back(e.substr(start));
    std::vector<std::string> out;
    for (auto item : items) {
        auto sub = expand_pattern(item, whole);
        out.insert(out.end(), std::make_move_iterator(sub.begin()), std::make_move_iterator(sub.end()));
    }
    return out;
}

// A pattern is a product of literal pieces and brace expressions.
std::vector<std::string> expand_pattern(std::string_view p, const std::string& whole) {
    std::vector<std::string> acc{""};
    auto product = [&](const std::vector<std::string>& alts) {
        CC_REQUIRE(acc.size() * alts.size() <= kMaxExpansion, "brace pattern '", whole, "' gives more than ",
                 kMaxExpansion, " names");
        std::vector<std::string> next;
        next.reserve(acc.size() * alts.size());
        for (const auto& a : acc)
            for (const auto& b : alts) next.push_back(a + b);
        acc = std::move(next);
    };
    size_t start = 0;
    int depth = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] == '{') {
            if (depth == 0 && i > start) {
                product({std::string(p.substr(start, i - start))});
                start = i;
            }
            ++depth;
        } else if (p[i] == '}') {
            CC_REQUIRE(depth > 0, "unbalanced braces in '", whole, "'");
            if (--depth == 0) {
                const std::string_view expr = p.substr(start + 1, i - start - 1);
                if (auto alts = expand_expression(expr, whole)) {
                    product(*alts);
                } else {
                    std::vector<std::string> inner = expand_pattern(expr, whole);
                    for (auto& s : inner) s = "{" + s + "}";
                    product(inner);
                }
                start = i + 1;
            }
        }
    }
    CC_REQUIRE(depth == 0, "unbalanced braces in '", whole, "'");
    if (start < p.size()) product({std::string(p.substr(start))});
    return acc;
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

bool is_regular_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string normalized(const std::string& path) {
    std::string s = fs::path(path).lexically_normal().string();
    return s.empty() ? path : s;
}

}  // namespace

std::vector<std::string> expand_braces(const std::string& pattern) { return expand_pattern(pattern, pattern); }

bool is_tar_name(std::string_view name) {
    return name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz");
}

ShardList expand_shard_inputs(const std::vector<std::string>& inputs) {
    ShardList out;
    for (const auto& input : inputs) {
        for (const auto& candidate : expand_braces(input)) {
            if (has_glob_chars(candidate)) {
                glob_t g{};
                const int rc = ::glob(candidate.c_str(), 0, nullptr, &g);
                if (rc == 0) {
                    for (size_t i = 0; i < g.gl_pathc; ++i) {
                        const std::string path = g.gl_pathv[i];
                        if (is_tar_name(path) && is_regular_file(path)) out.paths.push_back(normalized(path));
                    }
                }
                ::globfree(&g);
                CC_REQUIRE(rc == 0 || rc == GLOB_NOMATCH, "cannot expand '", candidate, "': glob(3) failed (",
                         rc == GLOB_NOSPACE ? "out of memory" : "read error", ")");
                continue;
            }
            std::error_code ec;
            const fs::file_status st = fs::status(candidate, ec);
            if (fs::is_directory(st)) {
                for (const auto& entry : fs::directory_iterator(candidate, ec)) {
                    const std::string path = entry.path().string();
                    if (is_tar_name(entry.path().filename().string()) && is_regular_file(path))
                        out.paths.push_back(normalized(path));
                }
                CC_REQUIRE(!ec, "cannot list directory '", candidate, "': ", ec.message());
            } else if (fs::exists(st)) {
                out.paths.push_back(normalized(candidate));
            } else {
                out.missing.push_back(candidate);
            }
        }
    }
    std::sort(out.paths.begin(), out.paths.end());
    out.paths.erase(std::unique(out.paths.begin(), out.paths.end()), out.paths.end());
    std::sort(out.missing.begin(), out.missing.end());
    out.missing.erase(std::unique(out.missing.begin(), out.missing.end()), out.missing.end());
    return out;
}

void read_image_file(const std::string& path, RawSample& sample) {
    sample.image_name = path;
    sample.image_bytes.clear();
    auto fail = [&](int err) {
        sample.reject = (err == ENOENT || err == ENOTDIR) ? RejectReason::missing_image : RejectReason::unreadable_image;
        sample.detail = path + ": " + std::strerror(err);
        sample.image_bytes.clear();
    };
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return fail(errno);
    // Size from fstat when it is a regular file (one read); otherwise read to EOF.
    struct stat st {};
    if (::fstat(::fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        std::fclose(f);
        return fail(EISDIR);
    }
    // One read of the whole file when its size is known, then to EOF in case it grew.
    size_t have = 0;
    sample.image_bytes.resize(S_ISREG(st.st_mode) && st.st_size > 0 ? size_t(st.st_size) + 1 : size_t(1) << 16);
    errno = 0;
    for (;;) {
        const size_t n = std::fread(sample.image_bytes.data() + have, 1, sample.image_bytes.size() - have, f);
        have += n;
        if (have < sample.image_bytes.size()) break;
        sample.image_bytes.resize(sample.image_bytes.size() * 2);
    }
    sample.image_bytes.resize(have);
    const bool bad = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (bad) fail(err != 0 ? err : EIO);
}

std::optional<int32_t> parse_label(std::string_view text, std::string* why) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    std::string_view t = text;
    while (!t.empty() && space(t.front())) t.remove_prefix(1);
    while (!t.empty() && space(t.back())) t.remove_suffix(1);
    auto refuse = [&](const char* what) -> std::optional<int32_t> {
        if (why != nullptr) {
            std::string shown(t.substr(0, 40));
            for (auto& c : shown)
                if (static_cast<unsigned char>(c) < 0x20) c = '?';
            *why = "label '" + shown + (t.size() > 40 ? "...'" : "'") + " " + what;
        }
        return std::nullopt;
    };
    if (t.empty()) return refuse("is empty");
    if (t.front() == '-') return refuse("is negative (labels are integers in [0, 2^31))");
    int64_t v = 0;
    for (char c : t) {
        if (c < '0' || c > '9') return refuse("is not an integer");
        v = v * 10 + (c - '0');
        if (v > INT32_MAX) return refuse("is >= 2^31");
    }
    return int32_t(v);
}

std::vector<std::string> read_classnames_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    CC_REQUIRE(in.good(), "cannot read classnames file '", path, "': ", std::strerror(errno));
    std::vector<std::string> names;
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
        if (first && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // UTF-8 BOM
        first = false;
        const size_t b = line.find_first_not_of(" \t\r\f\v");
        if (b == std::string::npos) continue;
        const size_t e = line.find_last_not_of(" \t\r\f\v");
        names.push_back(line.substr(b, e - b + 1));
    }
    CC_REQUIRE(!in.bad(), "error reading classnames file '", path, "'");
    CC_REQUIRE(!names.empty(), "classnames file '", path, "' names no class (expected one name per line)");
    return names;
}

}  // namespace curaclip::prep
