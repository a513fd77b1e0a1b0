// Sentence pooling of a BERT encoder's last hidden states, on the host (the pooled
// rows are [B, C], a small fraction of the encoder's work), as sentence-transformers'
// Pooling + Normalize modules and Hugging Face BertPooler compute them:
//   mean    out_b = sum_{t < len_b} h_{b,t} / len_b   (the attention mask's valid tokens)
//   cls     out_b = h_{b,0}
//   pooler  out_b = tanh(W h_{b,0} + bias), W [C, C] as torch.nn.Linear stores it
// then L2-normalized: x / max(||x||_2, 1e-12) (torch.nn.functional.normalize).
// Sums are accumulated in double. hidden is [B, T, C] row-major; lengths[b] in [1, T].
#pragma once

#include <cstdint>

#include "encoder/bert_config.h"

namespace curaclip::encoder {

// out [B, C]; W and bias are used (and must be non-null) for Pooling::pooler only.
void pool_rows(Pooling mode, const float* hidden, const int32_t* lengths, int64_t B, int64_t T, int64_t C,
               const float* W, const float* bias, float* out);
// In place, row-wise: x / max(||x||_2, 1e-12).
void l2_normalize_rows(float* x, int64_t rows, int64_t C);

}  // namespace curaclip::encoder
