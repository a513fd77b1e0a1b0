// The synthetic batch every C++ benchmark trains and scores on: noise images and token
// rows "SOT w... EOT 0..." of half the context (the cost of a step does not depend on
// the values, only on the shapes).
#pragma once

#include <cstdint>
#include <vector>

#include "core/philox.h"
#include "model/model_config.h"

namespace curaclip::bench {

struct Batch {
    std::vector<uint8_t> images;
    std::vector<int32_t> tokens;
};

inline Batch random_batch(const ModelConfig& cfg, int64_t n, uint64_t seed) {
    Philox rng(seed, RngPurpose::test);
    Batch out;
    out.images.resize(size_t(n) * cfg.image_size * cfg.image_size * cfg.channels);
    for (auto& p : out.images) p = uint8_t(rng.below(256));
    out.tokens.assign(size_t(n) * cfg.context_length, 0);
    for (int64_t i = 0; i < n; ++i) {
        int32_t* row = &out.tokens[size_t(i) * cfg.context_length];
        const int len = cfg.context_length / 2;
        row[0] = cfg.vocab_size - 2;
        for (int t = 1; t < len; ++t) row[t] = 1 + int32_t(rng.below(uint64_t(cfg.vocab_size - 3)));
        row[len] = cfg.vocab_size - 1;
    }
    return out;
}

}  // namespace curaclip::bench
