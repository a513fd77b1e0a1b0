// Sources of image-text samples for `curaclip prep <source>` (docs/data.md §Your own data "Sources
// users bring"): what every converter hands to the shard writer (src/prep/prep_job.h).
//
// A Source is a deterministic list of INPUT UNITS (a webdataset tar shard, a block
// of index-file rows, a block of class-folder files). Every rank builds the same
// list from the same options, so unit u is converted by rank u % P into output
// shard u, and the prepared bytes do not depend on the number of ranks. Reading a
// unit yields RawSamples in a fixed order: encoded image bytes and raw caption
// bytes, still undecoded (decoding, resizing and tokenizing happen in the job, so
// every source shares them).
//
// Errors: a problem with ONE sample (no image member, unreadable image file, ...)
// is not an Error: the sample comes out with `reject` set and is counted and
// listed by the job. A problem with the whole source (index file missing, tar
// shard missing or not a tar, a column that does not exist) throws
// curaclip::Error naming the file and what was expected.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace curaclip::prep {

// Why a sample was skipped. Names (reject_reason_name) are what the rejects file
// and the progress line print; keep them stable, tests and users grep for them.
enum class RejectReason : uint8_t {
    missing_image,       // no image member / no image column value / image file not found
    unreadable_image,    // the image file exists but could not be read (I/O error, permissions)
    undecodable_image,   // the codec refused the bytes (corrupt, truncated, unknown format)
    image_too_large,     // more pixels than --max-pixels (decompression bomb)
    missing_caption,     // no .txt/.json caption member, no caption column, JSON field absent
    empty_caption,       // caption is empty after Unicode normalization and whitespace trimming
    invalid_utf8,        // caption bytes are not UTF-8
    duplicate_key,       // a key seen before in the same input unit
    bad_label,           // .cls / label column not an integer in [0, 2^31)
    bad_record,          // an index-file row or JSON line that cannot be parsed
    truncated_input,     // the tar shard ends inside this member (partial download)
};
inline constexpr int kNumRejectReasons = 11;
const char* reject_reason_name(RejectReason r);

// One sample as a source gives it.
struct RawSample {
    std::string key;                   // webdataset key, index-file row's image path, or folder file path
    std::vector<uint8_t> image_bytes;  // the encoded image (JPEG, PNG, WebP, ...)
    std::string image_name;            // member or file the bytes came from (for messages)
    std::string caption;               // raw caption bytes (validated and normalized by the job)
    int32_t label = -1;                // class id, -1 when the source has none
    // Samples with the same non-empty group show the same image (an index file
    // listing one image path with several captions, as COCO and Flickr do).
    std::string group;
    std::optional<RejectReason> reject;  // set: the source already knows this sample is bad
    std::string detail;                  // what exactly was wrong, for the rejects file
};

// Options every source understands (the rest are in each source's own struct).
struct SourceOptions {
    std::string caption_key = "caption";  // webdataset: field of the .json member used when there is no .txt
    std::string img_key = "filepath";     // csv/tsv/jsonl: open_clip's --csv-img-key
    std::string caption_col = "title";    // csv/tsv/jsonl: open_clip's --csv-caption-key
    std::string label_col;                // csv/tsv/jsonl: optional integer label column
    std::string root;                     // csv/tsv/jsonl: image paths are relative to this (default: the index file's folder)
    std::string classnames_file;          // folder: one readable class name per line, in folder-sorted order
    std::string caption_template = "a photo of a {}.";  // folder: caption of each image ({} = class name)
    int64_t rows_per_unit = 10000;        // csv/tsv/jsonl/folder: samples per input unit (= output shard)
    bool allow_missing_shards = false;    // webdataset: skip listed tar shards that do not exist (warned)
    bool warn = true;                     // print warnings (under MPI only rank 0 does)
};

class Source {
public:
    virtual ~Source() = default;
    // "webdataset", "csv", "tsv", "jsonl", "folder".
    virtual std::string kind() const = 0;
    // A one-line description for the dataset's `source` attribute and `info`.
    virtual std::string describe() const = 0;
    virtual size_t num_units() const = 0;
    // A short stable name of unit u ("shards/00017.tar", "index.csv rows 20000-29999").
    virtual std::string unit_name(size_t u) const = 0;
    // Reads unit u and calls `emit` once per sample, in the unit's order. With
    // captions_only, image bytes may be left empty (used to train a tokenizer).
    // Throws Error when the unit cannot be read at all (missing or not a tar).
    virtual void read_unit(size_t u, const std::function<void(RawSample&&)>& emit,
                           bool captions_only = false) const = 0;
    // Class names, in label order (folder source, or --classnames FILE); empty when
    // the samples carry no labels.
    virtual std::vector<std::string> classnames() const { return {}; }
};

// kind: webdataset | csv | tsv | jsonl | folder. `inputs` are the positional
// arguments: tar shards (paths, globs, DIR/{00000..00099}.tar brace ranges, or a
// folder holding *.tar), one index file, or one class folder.
std::unique_ptr<Source> make_source(const std::string& kind, const std::vector<std::string>& inputs,
                                    const SourceOptions& options);

// The source kinds make_source knows, for messages.
const std::vector<std::string>& source_kinds();

}  // namespace curaclip::prep
