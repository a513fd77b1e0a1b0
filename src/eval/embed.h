// Embedding many examples with a model laid out for a fixed batch: chunks of
// max_batch(), the last one zero-padded, results as host float rows [n, D].
#pragma once

#include <cstdint>
#include <vector>

#include "model/clip_model.h"

namespace curaclip {

std::vector<float> embed_images(ClipModel& model, const uint8_t* images, int64_t n);
std::vector<float> embed_texts(ClipModel& model, const int32_t* tokens, int64_t n);

}  // namespace curaclip
