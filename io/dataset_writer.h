// Writing curaclip datasets in the layout of io/dataset_reader.h (docs/data.md §Dataset files).
//
// A dataset is only ever written as a NEW file: the target must not exist; the
// data goes to "<path>.tmp" (which must not exist either), is fsync'ed, and is
// then linked to <path> atomically without replacing anything (link(2), or
// rename(2) where the file system has no hard links), and the directory is
// fsync'ed. A failure removes the .tmp file and leaves no <path> behind.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/dataset_reader.h"

namespace curaclip::io {

struct DatasetContents {
    int64_t count = 0;
    int image_size = 0;  // H == W
    int channels = 1;
    int context_length = 0;
    std::vector<uint8_t> images;          // [count, H, W, C]
    std::vector<int32_t> tokens;          // [count, context]
    std::vector<std::string> captions;    // [count]
    std::vector<int32_t> labels;          // [count] or empty (no /labels)
    std::vector<std::string> classnames;  // [K] or empty (no /classnames)
    std::vector<uint8_t> corrupted;       // [count] or empty (written as zeros)
    std::vector<int64_t> image_ids;       // [count] or empty (no /image_ids: every row its own image)
};

struct DatasetAttributes {
    std::string tokenizer_id;
    std::string source;
    std::string creation_command;
    std::vector<std::pair<std::string, std::string>> extra;  // more string attributes on "/"
    std::vector<std::pair<std::string, int64_t>> extra_int;  // more integer attributes (sot_id, eot_id)
};

// Rows per /images chunk: about 256 KiB, clamped to [1, count].
int64_t image_chunk_rows(int64_t count, size_t row_bytes);

void write_dataset(const std::string& path, const DatasetContents& data, const DatasetAttributes& attrs);

// Whether a file (or anything) exists at path.
bool path_exists(const std::string& path);

}  // namespace curaclip::io
