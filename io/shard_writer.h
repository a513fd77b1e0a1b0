// Writing one dataset shard row by row (docs/data.md §Output layout, MPI, resume), for `curaclip prep` of users'
// own data: a shard can hold far more images than fit in memory (a webdataset tar
// of 10,000 samples is 1.5 GB of 224 px pixels), so rows are appended in blocks to
// extendible datasets instead of being written at once as io::write_dataset does.
//
// Layout: the dataset layout of io/dataset_reader.h, plus
//   /keys       vlen UTF-8 strings [N]  the source's key of each row (webdataset key,
//                                       index-file image path, folder file path)
// so every shard is itself a dataset any command can read, and the join
// (io/dataset_join.h) maps shards into one file.
//
// Durability and "nothing overwritten": the rows go to "<path>.tmp" (which must not
// exist; the caller removes a stale one from a killed run), and finish() flushes,
// closes (checking each step), fsyncs and links the file to <path> (never
// replacing an existing file), then fsyncs the directory. A writer destroyed
// without finish() removes its .tmp file. So <path> exists if and only if the shard
// is complete: that is what a resumed prep relies on.
//
// Reproducibility: object timestamps are off, so the same rows and attributes give
// the same bytes (prep on 1, 2 or 4 ranks writes identical shards).
//
// Threads: takes io::hdf5_mutex() around all HDF5 calls.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/hdf5_file.h"

namespace curaclip::io {

struct ShardSpec {
    int image_size = 0;      // H == W
    int channels = 3;
    int context_length = 0;
    bool labels = false;     // write /labels
    bool image_ids = false;  // write /image_ids
};

class ShardWriter {
public:
    // Creates <path>.tmp. Errors: <path> or <path>.tmp exists, or the file cannot be created.
    ShardWriter(const std::string& path, const ShardSpec& spec);
    ~ShardWriter();
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;

    // One row: image [S, S, C] u8, tokens [context] i32. label is ignored without
    // spec.labels, image_id without spec.image_ids. Rows are buffered and written
    // in blocks; a write error (disk full) throws an Error naming the file.
    void append(const uint8_t* image, const int32_t* tokens, const std::string& caption, const std::string& key,
                int32_t label, int64_t image_id);
    int64_t rows() const { return rows_; }

    // String and integer attributes on "/", written by finish().
    void set_attr(const std::string& name, const std::string& value);
    void set_attr(const std::string& name, int64_t value);

    // Writes the buffered rows and the attributes, closes and links the file into
    // place durably. After finish() the writer is spent.
    void finish();

private:
    void flush_block();
    void close_and_remove() noexcept;

    std::string path_, tmp_;
    ShardSpec spec_;
    size_t image_bytes_ = 0;
    int64_t rows_ = 0, written_ = 0;
    bool finished_ = false;
    H5Id file_, images_, tokens_, captions_, keys_, labels_, image_ids_;
    // the block of rows not yet written
    std::vector<uint8_t> b_images_;
    std::vector<int32_t> b_tokens_, b_labels_;
    std::vector<int64_t> b_image_ids_;
    std::vector<std::string> b_captions_, b_keys_;
    std::vector<std::pair<std::string, std::string>> str_attrs_;
    std::vector<std::pair<std::string, int64_t>> int_attrs_;
};

// Property lists that make HDF5 output reproducible: no object timestamps.
// Returns a new file-creation (fcpl) or dataset-creation (dcpl) property list.
H5Id reproducible_fcpl();
H5Id reproducible_dcpl();

}  // namespace curaclip::io
