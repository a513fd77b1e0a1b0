// One rank's slice of a global batch, as the loader hands it out and the JEST
// sample exchange moves it between ranks. Kept apart from io/loader.h so that
// code that only passes batches around (src/jest/) needs no loader.
#pragma once

#include <cstdint>
#include <vector>

namespace curaclip::io {

struct Batch {
    int64_t epoch = 0, step = 0;  // which global batch this is a slice of
    int64_t offset = 0;           // position of row 0 within the global batch
    int64_t size = 0;             // rows in this slice
    int image_size = 0, channels = 0, context_length = 0;
    std::vector<uint8_t> images;     // [size, H, W, C]
    std::vector<int32_t> tokens;     // [size, context]
    std::vector<int32_t> labels;     // [size]; -1 where the file has no /labels
    std::vector<uint8_t> corrupted;  // [size]; 1 where the caption was replaced by --noise
    std::vector<int64_t> indices;    // [size]; row of each example in the file
};

}  // namespace curaclip::io
