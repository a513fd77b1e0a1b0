#include "prep/index_file_source.h"

#include <csv.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/check.h"
#include "prep/input_paths.h"

namespace curaclip::prep {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kBom = "\xEF\xBB\xBF";

// Reads a file from a byte offset one line at a time ('\n' kept), through a
// 1 MiB buffer that grows for longer lines.
class LineReader {
public:
    LineReader(const std::string& path, uint64_t offset) : path_(path), pos_(offset) {
        f_ = std::fopen(path.c_str(), "rb");
        CC_REQUIRE(f_ != nullptr, "cannot read index file '", path, "': ", std::strerror(errno));
        CC_REQUIRE(::fseeko(f_, off_t(offset), SEEK_SET) == 0, "cannot seek in index file '", path, "' to byte ",
                 offset, ": ", std::strerror(errno));
        buf_.resize(size_t(1) << 20);
    }
    ~LineReader() { std::fclose(f_); }
    LineReader(const LineReader&) = delete;
    LineReader& operator=(const LineReader&) = delete;

    // The next line (with its '\n' when it has one); false at end of file.
    // `offset` = where the line starts in the file.
    bool next(std::string_view& line, uint64_t& offset) {
        for (;;) {
            const char* b = buf_.data() + begin_;
            if (const void* nl = std::memchr(b, '\n', end_ - begin_)) {
                const size_t n = size_t(static_cast<const char*>(nl) - b) + 1;
                return take(n, line, offset);
            }
            if (eof_) return end_ > begin_ ? take(end_ - begin_, line, offset) : false;
            // Keep the partial line, make room, read more.
            if (begin_ > 0) {
                std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
                end_ -= begin_;
                begin_ = 0;
            }
            if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
            const size_t got = std::fread(buf_.data() + end_, 1, buf_.size() - end_, f_);
            CC_REQUIRE(!std::ferror(f_), "error reading index file '", path_, "': ", std::strerror(errno));
            if (got == 0) eof_ = true;
            end_ += got;
        }
    }

private:
    bool take(size_t n, std::string_view& line, uint64_t& offset) {
        line = std::string_view(buf_.data() + begin_, n);
        offset = pos_;
        pos_ += n;
        begin_ += n;
        return true;
    }

    std::string path_;
    std::FILE* f_ = nullptr;
    std::vector<char> buf_;
    size_t begin_ = 0, end_ = 0;
    uint64_t pos_;  // file offset of buf_[begin_]
    bool eof_ = false;
};

// Where a CSV record lies in the file.
struct RecordPos {
    int64_t start_line;   // 1-based line of the record's first byte
    uint64_t end_offset;  // just after its terminator (or end of file)
    int64_t line_after;   // line number at end_offset
};

// libcsv, fed one line piece at a time (each piece ends at the first CR or LF),
// so that a record can only end at the end of a piece: that gives every
// record's byte boundaries without a parser of our own.
class CsvScanner {
public:
    explicit CsvScanner(char delim) {
        CC_REQUIRE(csv_init(&p_, 0) == 0, "csv_init failed");
        csv_set_delim(&p_, static_cast<unsigned char>(delim));
        // No trimming: pandas keeps the spaces around unquoted fields, so do we.
        csv_set_space_func(&p_, [](unsigned char) { return 0; });
    }
    ~CsvScanner() { csv_free(&p_); }
    CsvScanner(const CsvScanner&) = delete;
    CsvScanner& operator=(const CsvScanner&) = delete;

    bool want_fields = true;  // false: only count records (construction)

    // Calls on_record(fields, pos) for each record from `offset` (at `line`);
    // stops early when it returns false.
    template <typename F>
    void scan(const std::string& path, uint64_t offset, int64_t line, F&& on_record) {
        LineReader reader(path, offset);
        std::string_view text;
        uint64_t at = 0;
        bool in_record = false;
        int64_t start_line = line;
        uint64_t pos = offset;
        while (reader.next(text, at)) {
            while (!text.empty()) {
                // One piece: up to and including the first CR (a line's text ends at
                // '\n', so an LF can only be last).
                size_t n = text.size();
                if (const void* cr = std::memchr(text.data(), '\r', text.size()))
                    n = size_t(static_cast<const char*>(cr) - text.data()) + 1;
                const std::string_view piece = text.substr(0, n);
                text.remove_prefix(n);
                const bool terminated = piece.back() == '\n' || piece.back() == '\r';
                if (!in_record && piece.size() > (terminated ? 1u : 0u)) {
                    in_record = true;
                    start_line = line;
                }
                if (csv_parse(&p_, piece.data(), piece.size(), on_field, on_row, this) != piece.size())
                    CC_USER_FAIL("index file '", path, "' line ", line, ": ", csv_strerror(csv_error(&p_)));
                pos += piece.size();
                if (piece.back() == '\n') ++line;
                if (ready_) {
                    ready_ = false;
                    in_record = false;
                    const bool go = on_record(fields_, RecordPos{start_line, pos, line});
                    fields_.clear();
                    if (!go) return;
                }
            }
        }
        csv_fini(&p_, on_field, on_row, this);  // a last record without a line end
        if (ready_) {
            ready_ = false;
            on_record(fields_, RecordPos{start_line, pos, line});
            fields_.clear();
        }
    }

private:
    static void on_field(void* s, size_t len, void* data) {
        auto* self = static_cast<CsvScanner*>(data);
        if (self->want_fields) self->fields_.emplace_back(s != nullptr ? static_cast<const char*>(s) : "", len);
    }
    static void on_row(int, void* data) { static_cast<CsvScanner*>(data)->ready_ = true; }

    csv_parser p_{};
    std::vector<std::string> fields_;
    bool ready_ = false;
};

bool is_blank(std::string_view s) {
    for (char c : s)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\f' && c != '\v') return false;
    return true;
}

std::string_view strip_eol(std::string_view s) {
    if (!s.empty() && s.back() == '\n') s.remove_suffix(1);
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    return s;
}

std::string join(const std::vector<std::string>& v, size_t max_items = 20) {
    std::string out;
    for (size_t i = 0; i < v.size() && i < max_items; ++i) out += (i ? ", " : "") + v[i];
    if (v.size() > max_items) out += ", ... (" + std::to_string(v.size()) + " in all)";
    return out;
}

const char* format_name(IndexFormat f) {
    switch (f) {
        case IndexFormat::csv: return "csv";
        case IndexFormat::tsv: return "tsv";
        case IndexFormat::jsonl: return "jsonl";
    }
    return "?";
}

}  // namespace

IndexFileSource::IndexFileSource(IndexFormat format, std::string path, const SourceOptions& options)
    : format_(format), path_(std::move(path)), options_(options) {
    CC_REQUIRE(options_.rows_per_unit >= 1, "rows per unit must be >= 1, got ", options_.rows_per_unit);
    struct stat st {};
    CC_REQUIRE(::stat(path_.c_str(), &st) == 0, "cannot read index file '", path_, "': ", std::strerror(errno));
    CC_REQUIRE(!S_ISDIR(st.st_mode), "index file '", path_, "' is a directory (", format_name(format_),
             " takes one index file; `prep folder` reads class folders)");
    name_ = fs::path(path_).filename().string();
    if (!options_.root.empty()) {
        root_ = options_.root;
    } else {
        root_ = fs::path(path_).parent_path().string();
        if (root_.empty()) root_ = ".";
    }
    if (format_ == IndexFormat::jsonl) index_jsonl();
    else index_csv();
    if (!options_.classnames_file.empty()) classnames_ = read_classnames_file(options_.classnames_file);
}

int IndexFileSource::column_index(const std::string& name, const char* option) const {
    for (size_t i = 0; i < columns_.size(); ++i)
        if (columns_[i] == name) return int(i);
    CC_USER_FAIL(path_, ": no column '", name, "' (columns: ", join(columns_), "); set ", option);
}

void IndexFileSource::index_csv() {
    uint64_t start = 0;
    {
        std::FILE* f = std::fopen(path_.c_str(), "rb");
        CC_REQUIRE(f != nullptr, "cannot read index file '", path_, "': ", std::strerror(errno));
        char head[3] = {0, 0, 0};
        const size_t got = std::fread(head, 1, 3, f);
        std::fclose(f);
        if (got == 3 && std::string_view(head, 3) == kBom) start = 3;
    }
    CsvScanner scanner(format_ == IndexFormat::tsv ? '\t' : ',');
    int64_t records = 0;
    const int64_t rpu = options_.rows_per_unit;
    scanner.scan(path_, start, 1, [&](std::vector<std::string>& fields, const RecordPos& pos) {
        if (records == 0) {
            columns_ = fields;
            scanner.want_fields = false;
        }
        // Record k ends where data row k (0-based) begins: a unit boundary.
        if (records % rpu == 0) units_.push_back(UnitStart{pos.end_offset, pos.line_after});
        ++records;
        return true;
    });
    CC_REQUIRE(records > 0, path_, " is empty (expected a header row with the column names, then one row per image)");
    rows_ = records - 1;
    // When rows_ is a multiple of rpu the boundary after the last row starts no unit.
    units_.resize(size_t((rows_ + rpu - 1) / rpu));
    CC_REQUIRE(rows_ > 0, path_, " has a header (", join(columns_), ") but no data rows");
    img_col_ = column_index(options_.img_key, "--csv-img-key");
    caption_col_ = column_index(options_.caption_col, "--csv-caption-key");
    if (!options_.label_col.empty()) label_col_ = column_index(options_.label_col, "--csv-label-key");
}

void IndexFileSource::index_jsonl() {
    LineReader reader(path_, 0);
    std::string_view line;
    uint64_t offset = 0;
    int64_t line_no = 0;
    bool checked = false;
    const int64_t rpu = options_.rows_per_unit;
    while (reader.next(line, offset)) {
        ++line_no;
        if (line_no == 1 && line.starts_with(kBom)) {
            line.remove_prefix(kBom.size());
            offset += kBom.size();
        }
        if (is_blank(line)) continue;
        if (rows_ % rpu == 0) units_.push_back(UnitStart{offset, line_no});
        ++rows_;
        if (!checked) {
            // Only the first object is parsed here (parsing all would cost
            // more than the rest of the scan): it stands in for the header.
            const auto j = nlohmann::json::parse(strip_eol(line), nullptr, /*allow_exceptions=*/false);
            if (j.is_object()) {
                checked = true;
                for (const auto& item : j.items()) columns_.push_back(item.key());
            }
        }
    }
    CC_REQUIRE(rows_ > 0, path_, " is empty (expected one JSON object per line)");
    CC_REQUIRE(checked, path_, ": no line is a JSON object (expected one JSON object per line)");
    auto need = [&](const std::string& key, const char* option) {
        for (const auto& c : columns_)
            if (c == key) return;
        CC_USER_FAIL(path_, ": no key '", key, "' in the first JSON object (keys: ", join(columns_), "); set ", option);
    };
    need(options_.img_key, "--csv-img-key");
    need(options_.caption_col, "--csv-caption-key");
    if (!options_.label_col.empty()) need(options_.label_col, "--csv-label-key");
}

std::string IndexFileSource::kind() const { return format_name(format_); }

std::string IndexFileSource::describe() const {
    std::string d = std::string(format_name(format_)) + ": " + path_ + " (" + std::to_string(rows_) +
                    " rows, image column '" + options_.img_key + "', caption column '" + options_.caption_col + "'";
    if (!options_.label_col.empty()) d += ", label column '" + options_.label_col + "'";
    return d + ", images under " + root_ + ")";
}

std::string IndexFileSource::unit_name(size_t u) const {
    CC_REQUIRE(u < units_.size(), "unit ", u, " of ", units_.size());
    const int64_t first = int64_t(u) * options_.rows_per_unit;
    const int64_t last = std::min(rows_, first + options_.rows_per_unit) - 1;
    return name_ + " rows " + std::to_string(first) + "-" + std::to_string(last);
}

std::string IndexFileSource::resolve(const std::string& image_path) const {
    const fs::path p(image_path);
    return (p.is_absolute() ? p : fs::path(root_) / p).lexically_normal().string();
}

void IndexFileSource::read_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only) const {
    CC_REQUIRE(u < units_.size(), "unit ", u, " of ", units_.size());
    if (format_ == IndexFormat::jsonl) read_jsonl_unit(u, emit, captions_only);
    else read_csv_unit(u, emit, captions_only);
}

void IndexFileSource::read_csv_unit(size_t u, const std::function<void(RawSample&&)>& emit,
                                    bool captions_only) const {
    const int64_t first = int64_t(u) * options_.rows_per_unit;
    const int64_t count = std::min(rows_ - first, options_.rows_per_unit);
    int64_t done = 0;
    CsvScanner scanner(format_ == IndexFormat::tsv ? '\t' : ',');
    scanner.scan(path_, units_[u].offset, units_[u].line, [&](std::vector<std::string>& fields, const RecordPos& pos) {
        const int64_t row = first + done;
        RawSample s;
        const std::string where = path_ + " line " + std::to_string(pos.start_line) + " (row " + std::to_string(row) + ")";
        auto finish = [&](std::optional<RejectReason> r, std::string detail) {
            if (r) {
                s.reject = r;
                s.detail = std::move(detail);
            }
            emit(std::move(s));
            return ++done < count;
        };
        if (fields.size() != columns_.size()) {
            if (size_t(img_col_) < fields.size()) s.key = fields[size_t(img_col_)];
            s.image_name = path_;
            return finish(RejectReason::bad_record, where + ": " + std::to_string(fields.size()) + " field" +
                                                        (fields.size() == 1 ? "" : "s") + ", the header has " +
                                                        std::to_string(columns_.size()));
        }
        s.key = std::move(fields[size_t(img_col_)]);
        s.caption = std::move(fields[size_t(caption_col_)]);
        if (s.key.empty()) {
            s.image_name = path_;
            return finish(RejectReason::missing_image, where + ": empty '" + options_.img_key + "'");
        }
        s.group = resolve(s.key);
        s.image_name = s.group;
        if (label_col_ >= 0) {
            std::string why;
            const auto label = parse_label(fields[size_t(label_col_)], &why);
            if (!label) return finish(RejectReason::bad_label, where + ": " + why);
            s.label = *label;
        }
        if (!captions_only) read_image_file(s.image_name, s);
        return finish(std::nullopt, {});
    });
    CC_REQUIRE(done == count, path_, " changed after it was indexed: unit ", u, " ended after ", done, " of ", count,
             " rows");
}

void IndexFileSource::read_jsonl_unit(size_t u, const std::function<void(RawSample&&)>& emit,
                                      bool captions_only) const {
    const int64_t first = int64_t(u) * options_.rows_per_unit;
    const int64_t count = std::min(rows_ - first, options_.rows_per_unit);
    int64_t done = 0;
    int64_t line_no = units_[u].line - 1;
    LineReader reader(path_, units_[u].offset);
    std::string_view line;
    uint64_t offset = 0;
    while (done < count && reader.next(line, offset)) {
        ++line_no;
        if (is_blank(line)) continue;
        const int64_t row = first + done;
        ++done;
        RawSample s;
        s.image_name = path_;
        const std::string where = path_ + " line " + std::to_string(line_no) + " (row " + std::to_string(row) + ")";
        auto reject = [&](RejectReason r, std::string detail) {
            s.reject = r;
            s.detail = std::move(detail);
            emit(std::move(s));
        };
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(strip_eol(line));
        } catch (const nlohmann::json::exception& e) {
            reject(RejectReason::bad_record, where + ": not JSON (" + e.what() + ")");
            continue;
        }
        if (!j.is_object()) {
            reject(RejectReason::bad_record, where + ": a JSON " + j.type_name() + ", not an object");
            continue;
        }
        const auto img = j.find(options_.img_key);
        if (img != j.end() && !img->is_null() && !img->is_string()) {
            reject(RejectReason::bad_record,
                   where + ": '" + options_.img_key + "' is a " + img->type_name() + ", not a string");
            continue;
        }
        if (img != j.end() && img->is_string()) s.key = img->get<std::string>();
        if (s.key.empty()) {
            reject(RejectReason::missing_image, where + ": no '" + options_.img_key + "'");
            continue;
        }
        s.group = resolve(s.key);
        s.image_name = s.group;
        const auto cap = j.find(options_.caption_col);
        if (cap == j.end() || !cap->is_string()) {
            reject(RejectReason::missing_caption,
                   where + ": '" + options_.caption_col + "' is " +
                       (cap == j.end() ? std::string("absent") : std::string("a ") + cap->type_name() + ", not a string"));
            continue;
        }
        s.caption = cap->get<std::string>();
        if (!options_.label_col.empty()) {
            const auto lab = j.find(options_.label_col);
            std::optional<int32_t> label;
            std::string why = "'" + options_.label_col + "' is absent";
            if (lab != j.end() && lab->is_number_integer()) {
                const int64_t v = lab->get<int64_t>();
                if (v >= 0 && v <= INT32_MAX) label = int32_t(v);
                else why = "label " + std::to_string(v) + " is outside [0, 2^31)";
            } else if (lab != j.end() && lab->is_string()) {
                label = parse_label(lab->get_ref<const std::string&>(), &why);
            } else if (lab != j.end()) {
                why = "'" + options_.label_col + "' is a " + std::string(lab->type_name()) + ", not an integer";
            }
            if (!label) {
                reject(RejectReason::bad_label, where + ": " + why);
                continue;
            }
            s.label = *label;
        }
        if (!captions_only) read_image_file(s.image_name, s);
        emit(std::move(s));
    }
    CC_REQUIRE(done == count, path_, " changed after it was indexed: unit ", u, " ended after ", done, " of ", count,
             " rows");
}

}  // namespace curaclip::prep
