// `curaclip prep webdataset SHARDS...`: webdataset tar shards (img2dataset's
// output format), read with libarchive. One input unit = one tar shard.
//
// Members are grouped into samples exactly as webdataset's tariterators do
// (base_plus_ext + group_by_keys): a member's key is its path up to the first
// dot of the BASENAME (directories stay in the key: "a.b/c.jpg" -> key "a.b/c",
// extension "jpg"; "x.seg.jpg" -> key "x", extension "seg.jpg"), the extension
// is lower-cased for matching, and consecutive members with the same key form
// one sample. Skipped without ending the current sample (as webdataset skips
// members base_plus_ext cannot split): non-regular members (directories, links,
// hard links), basenames without a dot, and basenames starting with '.' or '_'
// (hidden files, webdataset's __key__-style metadata).
//
// Per sample:
//   image    the first member with extension jpg, jpeg, png or webp (only these:
//            "x.seg.jpg" has extension "seg.jpg" and is not an image, as in
//            webdataset's to_tuple("jpg;png"));
//   caption  the .txt member's bytes as they are, else the string field
//            options.caption_key of the .json member (img2dataset writes both);
//   label    the .cls member: an ASCII integer in [0, 2^31), whitespace trimmed.
// Rejects (first that applies): truncated_input (the shard ends inside this
// sample: libarchive's message; the samples before it are emitted normally and
// reading stops there, no Error), duplicate_key (the key appeared earlier in the
// same shard, or one extension twice in one sample, which webdataset refuses
// with "duplicate file name"), missing_image, missing_caption (no .txt and no
// .json, or the .json lacks a string field caption_key), bad_record (.json that
// does not parse, when it is needed), bad_label.
//
// A shard cut exactly between two members (at a 512-byte header boundary) looks
// like a complete tar without its end-of-archive blocks: libarchive, GNU tar and
// Python's tarfile all read it as ending there, and so do we (its last sample
// is emitted normally; the samples after the cut are simply absent).
//
// read_unit throws Error when the shard cannot be opened or its first header
// cannot be read (not a tar). With captions_only the image members' data is
// skipped (archive_read_data_skip), image_bytes stay empty.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "prep/source.h"

namespace curaclip::prep {

struct WebDatasetName {
    std::string key;
    std::string ext;  // lower-cased, without the leading dot; may contain dots ("seg.jpg")
};
// webdataset's base_plus_ext for a member name, plus our skip rules above;
// nullopt: the member is not part of any sample.
std::optional<WebDatasetName> split_webdataset_name(std::string_view member);

class WebDatasetSource final : public Source {
public:
    // Expands `inputs` (input_paths.h). Error: no shard at all ("no tar shards
    // match ..."), or shards named that do not exist unless
    // options.allow_missing_shards (then they are skipped with a warning on stderr).
    WebDatasetSource(std::vector<std::string> inputs, const SourceOptions& options);

    std::string kind() const override { return "webdataset"; }
    std::string describe() const override;
    size_t num_units() const override { return shards_.size(); }
    std::string unit_name(size_t u) const override;
    void read_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only = false) const override;
    std::vector<std::string> classnames() const override { return classnames_; }

    const std::vector<std::string>& shards() const { return shards_; }

private:
    std::vector<std::string> inputs_;
    std::vector<std::string> shards_;
    SourceOptions options_;
    std::vector<std::string> classnames_;  // from options.classnames_file, if given
};

}  // namespace curaclip::prep
