// Fashion-MNIST from the idx files that Debian's dataset-fashion-mnist installs
// (/usr/share/datasets/fashion-mnist/*-ubyte.gz). Files are read through zlib,
// which also reads uncompressed files transparently; for a name "X" we look for
// "X.gz" first, then "X". Magic numbers, dimensions, counts and sizes are
// validated; a missing, truncated or malformed file is an Error naming it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace curaclip::prep {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// idx3-ubyte: magic 0x00000803, then n, rows, cols (big-endian u32), then pixels.
struct IdxImages {
    int64_t count = 0;
    int rows = 0;
    int cols = 0;
    std::vector<uint8_t> pixels;  // [count, rows, cols], row-major
};

// Reads at most `limit` images (all when limit < 0); the file must still hold
// as many as its header claims unless limit cuts before the end.
IdxImages read_idx_images(const std::string& path, int64_t limit = -1);
// idx1-ubyte: magic 0x00000801, then n, then n labels.
std::vector<uint8_t> read_idx_labels(const std::string& path, int64_t limit = -1);

struct FashionMnistSplit {
    IdxImages images;
    std::vector<uint8_t> labels;  // in [0, 10)
    std::string images_path, labels_path;
};

// split: "train" (60000) or "t10k"/"test" (10000). Checks 28x28 images, matching
// counts and labels < 10.
FashionMnistSplit load_fashion_mnist(const std::string& dir, const std::string& split,
                                     int64_t limit = -1);

// The ten class names in label order.
const std::vector<std::string>& fashion_mnist_classnames();

}  // namespace curaclip::prep
