// `curaclip prep csv|tsv|jsonl INDEX`: an index file listing image paths and
// captions, as open_clip's CsvDataset reads it (pandas.read_csv(sep=...) with
// --csv-img-key / --csv-caption-key; the defaults `filepath` and `title` are
// open_clip's). One input unit = options.rows_per_unit consecutive data rows.
//
// Formats:
//   csv    RFC 4180 through libcsv, comma-separated, first record = column
//          names. Quoted fields may hold commas, "" quotes and newlines; CR LF
//          and LF both end records; blank lines are skipped (as pandas does).
//          Fields are kept exactly (no space trimming: pandas does none either).
//   tsv    the same with tab as separator (quotes still work, as in pandas).
//   jsonl  one JSON object per line, the columns are its keys; blank lines are
//          skipped; every other line is one row.
// A UTF-8 BOM at the start of the file is skipped.
//
// Per row (RawSample): key = the image path as written; image_name and group =
// the resolved path (options.root, default the index file's folder, joined with
// a relative path; absolute paths kept; lexically normalized), so rows naming
// one image share a group (COCO-style several captions per image); caption =
// the caption field's bytes; label = the label column (options.label_col) when
// set. The image file is read into image_bytes unless captions_only.
// Rejects (first that applies): bad_record (a CSV row whose field count differs
// from the header's; a JSON line that is not an object, or whose image path is
// not a string; detail names the file, line and row), missing_image (empty or
// absent path; file not found), missing_caption (JSONL: key absent, null or not
// a string), bad_label (not an integer in [0, 2^31)), unreadable_image (the
// file exists but reading it failed; detail = strerror).
//
// Construction reads the file once (libcsv finds record boundaries, so quoted
// newlines are handled) and keeps only the row count and, per unit, the byte
// offset and line where its first row starts: read_unit(u) seeks there and
// parses just that unit's rows. Errors (curaclip::Error): the file missing or
// unreadable, empty, no data rows, a column that is not in the header (the
// message lists the columns found and the option to set), rows_per_unit < 1.
// JSONL has no header: the first line that is a JSON object is checked instead.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prep/source.h"

namespace curaclip::prep {

enum class IndexFormat : uint8_t { csv, tsv, jsonl };

class IndexFileSource final : public Source {
public:
    IndexFileSource(IndexFormat format, std::string path, const SourceOptions& options);

    std::string kind() const override;
    std::string describe() const override;
    size_t num_units() const override { return units_.size(); }
    // "<file name> rows 0-9999" (data rows, 0-based, inclusive).
    std::string unit_name(size_t u) const override;
    void read_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only = false) const override;
    std::vector<std::string> classnames() const override { return classnames_; }

    int64_t num_rows() const { return rows_; }
    // CSV/TSV: the header's column names (JSONL: the first object's keys).
    const std::vector<std::string>& columns() const { return columns_; }

private:
    struct UnitStart {
        uint64_t offset;  // byte offset just after the previous record
        int64_t line;     // 1-based line number at that offset
    };

    void index_csv();
    void index_jsonl();
    int column_index(const std::string& name, const char* option) const;
    std::string resolve(const std::string& image_path) const;
    void read_csv_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only) const;
    void read_jsonl_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only) const;

    IndexFormat format_;
    std::string path_;
    std::string name_;  // the file name, for unit names
    std::string root_;
    SourceOptions options_;
    std::vector<std::string> columns_;
    int img_col_ = -1, caption_col_ = -1, label_col_ = -1;  // CSV/TSV column indices
    int64_t rows_ = 0;
    std::vector<UnitStart> units_;
    std::vector<std::string> classnames_;  // from options.classnames_file, if given
};

}  // namespace curaclip::prep
