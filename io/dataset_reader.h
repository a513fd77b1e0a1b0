// Reading curaclip datasets (docs/data.md §Dataset files). One file holds
//   /images     u8  [N, H, W, C]  chunked along N     (H == W == attribute image_size)
//   /tokens     i32 [N, context]                       (context == attribute context_length)
//   /captions   variable-length UTF-8 strings [N]
//   /labels     i32 [N]          optional
//   /classnames strings [K]      optional
//   /corrupted  u8  [N]          1 where prep --noise replaced the caption (absent: all 0)
//   /image_ids  i64 [N]          optional: rows with the same id show the same image
//                                (an index file listing one image with several captions,
//                                COCO/Flickr style); retrieval counts an image found when
//                                any of its captions ranks it (src/eval/metrics.h)
// and root attributes format_version (1), image_size, channels, context_length,
// tokenizer_id, source, creation_command (and sot_id, eot_id where prep wrote them).
//
// A dataset joined from shards (io/dataset_join.h) reads the same way; its
// /shards/paths must all exist (checked at open: HDF5 would read zeros instead).
//
// TOKEN ROWS are checked as they are read when the end-of-text id is known
// (DatasetExpect::eot_id or the file's eot_id attribute): every row must hold the
// end-of-text id and no id above it, or the read fails naming the row. A row
// without it would make the text tower pool at the wrong position silently.
// Independently, with DatasetExpect::vocab_size (the model's vocabulary) every id
// must lie in [0, vocab_size), so that a file without an eot_id attribute cannot
// send an out-of-vocabulary id to an embedding lookup. first_bad_token_row()
// scans a range of rows up front (the loader, embed and eval do, before the first
// step or forward pass).
//
// STORED SHAPES. The constructor refuses a row dataset whose shape claims more
// than the file stores (check_stored_shape): a shape of 2^40 rows over a few
// kilobytes, or a chunked dataset some of whose chunks were never written (HDF5
// would return zeros for them). So N is bounded by the file's real contents
// before anyone allocates N of anything.
//
// The constructor validates all of that, and the caller's expectations (image
// size, channels, context length, tokenizer id), and refuses a mismatch with an
// Error naming the file, the dataset or attribute, what was expected and what
// was found. Truncated or corrupt files are Errors too, never crashes.
//
// Threads: every member takes io::hdf5_mutex() (io/hdf5_file.h), so one reader
// may be used from a prefetch thread while the main thread does other HDF5 work.
// The file is opened with HDF5's default (POSIX) driver; no MPI calls are made.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/hdf5_file.h"

namespace curaclip::io {

inline constexpr int64_t kDatasetFormatVersion = 1;

// What the consumer needs; unset fields (-1 / empty) are not checked.
struct DatasetExpect {
    int image_size = -1;
    int channels = -1;
    int context_length = -1;
    std::string tokenizer_id;
    // The tokenizer's end-of-text id (the highest id: the text tower pools at the
    // row's largest token). -1: taken from the file's eot_id attribute if it has one.
    int32_t eot_id = -1;
    // The model's vocabulary size: every token id must be in [0, vocab_size). -1: not checked.
    int64_t vocab_size = -1;
};

class DatasetReader {
public:
    explicit DatasetReader(const std::string& path, const DatasetExpect& expect = {});
    ~DatasetReader();
    DatasetReader(const DatasetReader&) = delete;
    DatasetReader& operator=(const DatasetReader&) = delete;

    const std::string& path() const { return path_; }
    int64_t size() const { return n_; }
    int image_size() const { return image_size_; }
    int channels() const { return channels_; }
    int context_length() const { return context_; }
    size_t image_bytes() const { return size_t(image_size_) * image_size_ * channels_; }
    const std::string& tokenizer_id() const { return tokenizer_id_; }
    int32_t eot_id() const { return eot_; }  // -1: unknown (not checked)
    int64_t vocab_size() const { return vocab_; }  // -1: not checked
    // Whether token rows are checked as they are read (an eot id or a vocabulary is known).
    bool checks_tokens() const { return eot_ >= 0 || vocab_ > 0; }
    // The first row in [begin, end) whose tokens break the rules above, or -1 (also
    // when nothing is checked). Reads the rows in chunks; read_range(row, 1, ...) of
    // the row returned throws the Error that names it.
    int64_t first_bad_token_row(int64_t begin, int64_t end) const;
    const std::string& source() const { return source_; }
    const std::string& creation_command() const { return creation_command_; }
    bool has_labels() const { return has_labels_; }
    bool has_corrupted() const { return has_corrupted_; }
    bool has_image_ids() const { return has_image_ids_; }
    const std::vector<std::string>& classnames() const { return classnames_; }
    // Any root attribute as a string ("" when absent) - e.g. caption_thresholds.
    std::string attribute(const std::string& name) const;

    // Rows idx[0..n) (any order, repeats allowed) into row-major outputs:
    // images [n, H, W, C], tokens [n, context], labels [n] (-1 without /labels),
    // corrupted [n]. Any output pointer may be null (that dataset is not read).
    void read_rows(const int64_t* idx, size_t n, uint8_t* images, int32_t* tokens, int32_t* labels,
                   uint8_t* corrupted) const;
    // Rows [start, start + count).
    void read_range(int64_t start, int64_t count, uint8_t* images, int32_t* tokens, int32_t* labels,
                    uint8_t* corrupted) const;
    std::vector<std::string> read_captions(int64_t start, int64_t count) const;
    std::vector<std::string> read_captions(const std::vector<int64_t>& idx) const;
    // /image_ids rows [start, start + count); without /image_ids each row is its own
    // image (id = row).
    std::vector<int64_t> read_image_ids(int64_t start, int64_t count) const;

private:
    void check_token_rows(const int64_t* idx, size_t n, const int32_t* tokens) const;
    bool token_row_ok(const int32_t* row) const;
    struct Impl;
    std::string path_;
    int64_t n_ = 0;
    int image_size_ = 0, channels_ = 0, context_ = 0;
    std::string tokenizer_id_, source_, creation_command_;
    bool has_labels_ = false, has_corrupted_ = false, has_image_ids_ = false;
    std::vector<std::string> classnames_;
    int32_t eot_ = -1;
    int64_t vocab_ = -1;
    Impl* impl_ = nullptr;
};

// A 16-hex-digit fingerprint of the dataset's content: its shape, tokenizer, and
// the tokens and pixels of up to 96 rows (the first 32, the last 32 and 32 spread
// between). Side files made from a dataset (embeddings, MoDE assignments) record it,
// so that one used with another dataset of the same size, or the same data after a
// re-run of prep, is refused rather than silently misaligned; a copy of the dataset
// elsewhere (staged to node-local disk) has the same fingerprint. FNV-1a 64.
std::string dataset_fingerprint(const DatasetReader& reader);

// Checks every row's /labels against /classnames: a label must be -1 (unlabelled:
// left out of zero-shot) or a class index in [0, K). An Error names the file, the
// dataset, the first bad row and its value, and K. Nothing to check without /labels
// or /classnames. Reads N int32 (4 bytes per row).
void check_labels(const DatasetReader& reader);

// Errors unless the file stores every element the shape of dataset `d` (numeric,
// named `name` in `path`) claims: the shape's bytes must not exceed the file's size,
// and the allocated storage must cover them (contiguous or unfiltered chunked
// layouts), every chunk must be allocated (filtered chunked layouts), or the
// mappings of a virtual dataset must cover it. The message names the file, the
// dataset and its shape. Caller holds no lock; this takes io::hdf5_mutex().
void check_stored_shape(hid_t d, const std::string& path, const std::string& name);

// Reads a 1-D string dataset (variable or fixed length) rows [start, start+count)
// (count < 0: to the end). Caller holds no lock; this takes io::hdf5_mutex().
std::vector<std::string> h5_read_strings(hid_t file, const std::string& file_path,
                                         const std::string& dataset, int64_t start = 0,
                                         int64_t count = -1);

}  // namespace curaclip::io
