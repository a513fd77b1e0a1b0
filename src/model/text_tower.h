// The causal text transformer of OpenAI CLIP / open_clip: token + positional
// embedding -> transformer (causal mask) -> ln_final at the end-of-text token
// (argmax of the token ids) -> @ text_projection -> L2 norm.
#pragma once

#include "model/model_config.h"
#include "model/pooled_head.h"
#include "model/transformer.h"

namespace curaclip {

class TextTower {
public:
    void declare(ParameterSet& ps, const ModelConfig& cfg);
    void layout(Arena& arena, DType dt, int64_t B);
    // Uploads B token rows (i32 [B, context]).
    void set_tokens(Backend& be, const int32_t* tokens);
    Tensor tokens() const { return tokens_; }
    void forward(Backend& be, ParameterSet& ps);
    void backward(Backend& be, ParameterSet& ps, const GradsReady& ready = {});  // from head().d_embeddings()
    PooledHead& head() { return head_; }

private:
    ModelConfig cfg_;
    size_t wte_ = 0, wpe_ = 0;
    TransformerStack stack_;
    PooledHead head_;
    int64_t batch_ = 0;
    Tensor tokens_, eot_idx_, x0_, dresid_;
};

}  // namespace curaclip
