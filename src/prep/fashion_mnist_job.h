// Fashion-MNIST as curaclip datasets (docs/data.md "Fashion-MNIST"), the built-in data of
// the main job: train.h5, test.h5 and optionally curated.h5 (a clean training subset for
// JEST's reference) from the idx files (prep/fashion_mnist.h), with captions naming the
// class and attributes measured on the pixels (prep/fashion_mnist_captions.h), a BPE
// tokenizer trained on the training captions (or a given one), and optional caption
// noise: exactly round(noise * N) training captions replaced by another image's, marked
// in /corrupted. Deterministic in `seed` (Philox streams apart from the captions').
//
// Every input is checked before the first file is written; existing outputs are never
// overwritten; if a write fails (a full disk) the files this call wrote are removed, so
// the same call succeeds once there is space. Errors name the option or file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prep/fashion_mnist_captions.h"

namespace curaclip::prep {

struct FashionMnistPrepOptions {
    std::string source;         // folder of the idx(.gz) files
    std::string out;            // output folder (created if missing)
    int context = 16;           // token context length, [4, 1024]
    int vocab = 1024;           // BPE vocabulary when training a tokenizer
    std::string tokenizer;      // reuse this merges file ("" = train one)
    double noise = 0.0;         // share of training captions replaced, [0, 1)
    int64_t curated = 0;        // rows of curated.h5 (0 = none)
    uint64_t seed = 1234;       // captions, noise and curated subset
    int64_t limit = -1;         // only the first N examples of each split (-1 = all)
    std::string command;        // recorded as the datasets' creation_command
};

struct FashionMnistPrepSummary {
    std::string train_path, test_path, tokenizer_path, curated_path;  // curated_path "" without --curated
    int64_t train_rows = 0, test_rows = 0, noisy = 0, truncated = 0;
    int tokenizer_vocab = 0;
    std::string tokenizer_id, thresholds, source_path;
    std::vector<std::string> first_captions;  // the first 3 training captions as written
    std::vector<std::string> first_classes;   // their class names
    std::vector<bool> first_noisy;            // whether each was replaced
    double seconds_read = 0, seconds_captions = 0, seconds_tokenizer = 0, seconds_write = 0, seconds_total = 0;
};

FashionMnistPrepSummary prep_fashion_mnist(const FashionMnistPrepOptions& options);

}  // namespace curaclip::prep
