// Small models and random batches shared by the model-level tests
// (gradient checks, FlexiViT, CUDA training parity).
#pragma once

#include <cstdint>
#include <vector>

#include "core/philox.h"
#include "model/model_config.h"

namespace curaclip::testing {

// A CLIP small enough for float64 finite differences: width 8, 2 layers, 2 heads.
inline ModelConfig small_model_config(int image, int patch, int channels, bool sigmoid, int flexi_patch = 0) {
    ModelConfig c;
    c.image_size = image;
    c.patch_size = patch;
    c.flexi_patch = flexi_patch;
    c.channels = channels;
    c.image_mean.assign(size_t(channels), 0.4f);
    c.image_std.assign(size_t(channels), 0.3f);
    c.vision = {8, 2, 2, 2};
    c.text = {8, 2, 2, 2};
    c.context_length = 6;
    c.vocab_size = 13;
    c.embed_dim = 6;
    c.sigmoid_loss = sigmoid;
    return c;
}

struct Batch {
    std::vector<uint8_t> images;
    std::vector<int32_t> tokens;
};

// Noise images and token rows "SOT w... EOT 0..." (EOT = the largest id, where the text tower pools).
inline Batch random_batch(const ModelConfig& c, int64_t B, uint64_t seed) {
    Philox rng(seed, RngPurpose::test);
    Batch b;
    b.images.resize(size_t(B) * c.image_size * c.image_size * c.channels);
    for (auto& px : b.images) px = uint8_t(rng.below(256));
    b.tokens.assign(size_t(B) * c.context_length, 0);
    for (int64_t i = 0; i < B; ++i) {
        int32_t* row = &b.tokens[size_t(i) * c.context_length];
        const int len = 1 + int(rng.below(uint64_t(c.context_length - 2)));
        row[0] = c.vocab_size - 2;
        for (int t = 1; t < len; ++t) row[t] = 1 + int32_t(rng.below(uint64_t(c.vocab_size - 3)));
        row[len] = c.vocab_size - 1;
    }
    return b;
}

}  // namespace curaclip::testing
