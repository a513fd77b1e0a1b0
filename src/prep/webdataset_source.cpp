#include "prep/webdataset_source.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "prep/input_paths.h"

namespace curaclip::prep {
namespace {

struct ArchiveFree {
    void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
};

std::string archive_message(archive* a) {
    const char* s = archive_error_string(a);
    return s != nullptr ? s : "unknown libarchive error";
}

bool is_image_ext(const std::string& ext) { return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "webp"; }

// The members of one sample as they are read (only those we use keep data).
struct Group {
    std::string key;
    std::string first_member;
    bool seen_before = false;           // key appeared earlier in this shard
    std::string repeated;               // a member whose extension this sample already had
    std::unordered_set<std::string> exts;
    std::optional<std::string> image_member;
    std::vector<uint8_t> image;
    std::optional<std::string> txt, json, cls;
    std::string json_member, cls_member;
};

RawSample finish(Group&& g, const SourceOptions& options) {
    RawSample s;
    s.key = std::move(g.key);
    s.image_name = g.image_member ? *g.image_member : g.first_member;
    s.image_bytes = std::move(g.image);
    auto reject = [&](RejectReason r, std::string detail) {
        s.reject = r;
        s.detail = std::move(detail);
        return std::move(s);
    };
    if (g.seen_before)
        return reject(RejectReason::duplicate_key, "key '" + s.key + "' appears earlier in this shard");
    if (!g.repeated.empty())
        return reject(RejectReason::duplicate_key, "member '" + g.repeated + "' repeats an extension of key '" +
                                                       s.key + "'");
    if (!g.image_member)
        return reject(RejectReason::missing_image, "no .jpg/.jpeg/.png/.webp member for key '" + s.key + "'");
    if (g.txt) {
        s.caption = std::move(*g.txt);
    } else if (g.json) {
        const auto j = nlohmann::json::parse(*g.json, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) return reject(RejectReason::bad_record, g.json_member + " is not valid JSON");
        const auto it = j.is_object() ? j.find(options.caption_key) : j.end();
        if (it == j.end())
            return reject(RejectReason::missing_caption, "no .txt member, and " + g.json_member + " has no field '" +
                                                             options.caption_key + "' (--caption-key)");
        if (!it->is_string())
            return reject(RejectReason::missing_caption, g.json_member + ": field '" + options.caption_key +
                                                             "' is " + it->type_name() + ", not a string");
        s.caption = it->get<std::string>();
    } else {
        return reject(RejectReason::missing_caption, "no .txt or .json member for key '" + s.key + "'");
    }
    if (g.cls) {
        std::string why;
        const auto label = parse_label(*g.cls, &why);
        if (!label) return reject(RejectReason::bad_label, g.cls_member + ": " + why);
        s.label = *label;
    }
    return s;
}

// Reads the current member's data straight into `out` (sized from the header,
// grown if the member is longer); false (and `err`) when libarchive fails.
bool read_member(archive* a, archive_entry* e, std::vector<uint8_t>& out, std::string& err) {
    const la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    out.resize(size_t(std::max<la_int64_t>(size, 0)) + 1);  // +1: room for the read that returns 0
    size_t have = 0;
    for (;;) {
        if (have == out.size()) out.resize(out.size() + (size_t(1) << 16));
        const la_ssize_t n = archive_read_data(a, out.data() + have, out.size() - have);
        if (n == 0) break;
        if (n < 0) {
            err = archive_message(a);
            return false;
        }
        have += size_t(n);
    }
    out.resize(have);
    return true;
}

}  // namespace

std::optional<WebDatasetName> split_webdataset_name(std::string_view member) {
    const size_t slash = member.rfind('/');
    const size_t base = slash == std::string_view::npos ? 0 : slash + 1;
    const std::string_view basename = member.substr(base);
    if (basename.empty() || basename.front() == '.' || basename.front() == '_') return std::nullopt;
    const size_t dot = basename.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    WebDatasetName n;
    n.key = std::string(member.substr(0, base + dot));
    n.ext = std::string(basename.substr(dot + 1));
    for (auto& c : n.ext)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return n;
}

WebDatasetSource::WebDatasetSource(std::vector<std::string> inputs, const SourceOptions& options)
    : inputs_(std::move(inputs)), options_(options) {
    CC_REQUIRE(!inputs_.empty(), "webdataset: no tar shards given (paths, globs, DIR/{00000..00099}.tar or a folder)");
    ShardList list = expand_shard_inputs(inputs_);
    if (!list.missing.empty()) {
        std::string names;
        const size_t shown = std::min<size_t>(list.missing.size(), 10);
        for (size_t i = 0; i < shown; ++i) names += (i ? ", " : "") + list.missing[i];
        if (list.missing.size() > shown) names += ", ... and " + std::to_string(list.missing.size() - shown) + " more";
        const size_t total = list.missing.size() + list.paths.size();
        if (!options_.allow_missing_shards)
            CC_USER_FAIL("webdataset: ", list.missing.size(), " of ", total, " tar shards not found: ", names,
                    " (--allow-missing-shards skips them)");
        if (options_.warn)
            std::fprintf(stderr, "curaclip prep: warning: skipping %zu of %zu tar shards that do not exist: %s\n",
                         list.missing.size(), total, names.c_str());
    }
    if (list.paths.empty()) {
        std::string in;
        for (const auto& s : inputs_) in += (in.empty() ? "'" : " '") + s + "'";
        CC_USER_FAIL("webdataset: no tar shards match ", in,
                " (folders and globs select files named *.tar, *.tar.gz or *.tgz)");
    }
    shards_ = std::move(list.paths);
    if (!options_.classnames_file.empty()) classnames_ = read_classnames_file(options_.classnames_file);
}

std::string WebDatasetSource::describe() const {
    // The inputs as given (a shell-expanded list can be thousands of paths).
    std::string in;
    for (size_t i = 0; i < inputs_.size() && i < 3; ++i) in += " " + inputs_[i];
    if (inputs_.size() > 3) in += " ... (" + std::to_string(inputs_.size()) + " inputs)";
    return "webdataset: " + std::to_string(shards_.size()) + " tar shard" + (shards_.size() == 1 ? "" : "s") +
           " (" + in.substr(1) + ")";
}

std::string WebDatasetSource::unit_name(size_t u) const {
    CC_REQUIRE(u < shards_.size(), "unit ", u, " of ", shards_.size());
    return shards_[u];
}

void WebDatasetSource::read_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only) const {
    CC_REQUIRE(u < shards_.size(), "unit ", u, " of ", shards_.size());
    const std::string& path = shards_[u];
    // Opened here so that "cannot open" (errno) and "not a tar" are told apart:
    // libarchive reads the first header while opening to recognize the format,
    // and a file it does not recognize (empty, text, a .parquet) is not a tar.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) CC_USER_FAIL("webdataset: cannot open tar shard '", path, "': ", std::strerror(errno));
    const FdCloser fd_closer{fd};
    ArchivePtr a(archive_read_new());
    CC_REQUIRE(a != nullptr, "archive_read_new failed");
    archive_read_support_format_tar(a.get());  // ustar, pax, GNU tar
    archive_read_support_filter_gzip(a.get());
    archive_read_support_filter_bzip2(a.get());
    archive_read_support_filter_xz(a.get());
    archive_read_support_filter_zstd(a.get());
    if (archive_read_open_fd(a.get(), fd, size_t(1) << 20) != ARCHIVE_OK)
        CC_USER_FAIL("webdataset: '", path, "' is not a tar archive (", archive_message(a.get()), ")");

    std::unordered_set<std::string> seen;
    std::optional<Group> cur;
    bool first_header = true;
    std::vector<uint8_t> data;
    std::string err;

    // The shard breaks off inside `cur` (or before any sample): that sample is
    // emitted as truncated_input and the shard ends there.
    auto truncated = [&](const std::string& msg) {
        RawSample s;
        if (cur) {
            Group g = std::move(*cur);
            s = finish(std::move(g), options_);
            s.image_bytes.clear();
        } else {
            s.image_name = path;
        }
        s.reject = RejectReason::truncated_input;
        s.detail = path + ": " + msg;
        emit(std::move(s));
    };

    for (;;) {
        archive_entry* e = nullptr;
        const int r = archive_read_next_header(a.get(), &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            if (first_header) CC_USER_FAIL("webdataset: '", path, "' is not a tar archive (", archive_message(a.get()), ")");
            return truncated(archive_message(a.get()));
        }
        first_header = false;
        // UTF-8 first: pax names are UTF-8, and in the C locale libarchive cannot
        // give them as "multibyte" strings; ustar names come as stored.
        const char* name_c = archive_entry_pathname_utf8(e);
        if (name_c == nullptr) name_c = archive_entry_pathname(e);
        std::optional<WebDatasetName> name;
        if (name_c != nullptr && archive_entry_filetype(e) == AE_IFREG && archive_entry_hardlink(e) == nullptr)
            name = split_webdataset_name(name_c);
        if (!name) {
            if (archive_read_data_skip(a.get()) != ARCHIVE_OK) return truncated(archive_message(a.get()));
            continue;
        }
        if (!cur || cur->key != name->key) {
            if (cur) emit(finish(std::move(*cur), options_));
            cur.emplace();
            cur->key = name->key;
            cur->first_member = name_c;
            cur->seen_before = !seen.insert(name->key).second;
        }
        Group& g = *cur;
        // Which of this member's bytes we need; everything else is skipped.
        enum class Role { none, image, txt, json, cls } role = Role::none;
        if (!g.exts.insert(name->ext).second) {
            if (g.repeated.empty()) g.repeated = name_c;
        } else if (is_image_ext(name->ext) && !g.image_member) {
            g.image_member = name_c;
            role = captions_only ? Role::none : Role::image;
        } else if (name->ext == "txt") {
            role = Role::txt;
        } else if (name->ext == "json") {
            role = Role::json;
            g.json_member = name_c;
        } else if (name->ext == "cls") {
            role = Role::cls;
            g.cls_member = name_c;
        }
        if (role == Role::none) {
            if (archive_read_data_skip(a.get()) != ARCHIVE_OK) return truncated(archive_message(a.get()));
            continue;
        }
        if (!read_member(a.get(), e, data, err)) return truncated(err);
        switch (role) {
            case Role::image: g.image.swap(data); break;
            case Role::txt: g.txt.emplace(data.begin(), data.end()); break;
            case Role::json: g.json.emplace(data.begin(), data.end()); break;
            case Role::cls: g.cls.emplace(data.begin(), data.end()); break;
            case Role::none: break;
        }
    }
    if (cur) emit(finish(std::move(*cur), options_));
}

}  // namespace curaclip::prep
