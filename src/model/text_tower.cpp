#include "model/text_tower.h"

namespace curaclip {

void TextTower::declare(ParameterSet& ps, const ModelConfig& cfg) {
    cfg_ = cfg;
    const int64_t C = cfg.text.width;
    wte_ = ps.declare("token_embedding.weight", {cfg.vocab_size, C}, false);
    wpe_ = ps.declare("positional_embedding", {cfg.context_length, C}, false);
    stack_.declare(ps, "transformer", cfg.text);
    head_.declare(ps, "ln_final", "text_projection", C, cfg.embed_dim);
}

void TextTower::layout(Arena& arena, DType dt, int64_t B) {
    batch_ = B;
    const int64_t C = cfg_.text.width, T = cfg_.context_length;
    tokens_ = arena.alloc({B, T}, DType::i32);
    eot_idx_ = arena.alloc({B}, DType::i32);
    x0_ = arena.alloc({B, T, C}, dt);
    stack_.layout(arena, dt, B, T);
    head_.layout(arena, dt, B);
    dresid_ = arena.alloc({B * T, C}, dt);
}

void TextTower::set_tokens(Backend& be, const int32_t* tokens) { be.upload_raw(tokens_, tokens); }

void TextTower::forward(Backend& be, ParameterSet& ps) {
    const int64_t C = cfg_.text.width, T = cfg_.context_length;
    be.embedding_forward(x0_, tokens_, ps[wte_].value, ps[wpe_].value);
    stack_.forward(be, ps, x0_, cfg_.activation, /*causal=*/true);
    be.argmax_rows(eot_idx_, tokens_);
    head_.forward(be, ps, stack_.output(x0_).view({batch_, T, C}), eot_idx_);
}

void TextTower::backward(Backend& be, ParameterSet& ps, const GradsReady& ready) {
    const int64_t C = cfg_.text.width, T = cfg_.context_length;
    be.fill(dresid_, 0.0f);
    head_.backward(be, ps, dresid_.view({batch_, T, C}), eot_idx_);
    if (ready) ready(head_.first_param(), PooledHead::kParamCount);
    stack_.backward(be, ps, x0_, dresid_, cfg_.activation, /*causal=*/true, ready);
    be.embedding_backward(ps[wte_].grad, ps[wpe_].grad, dresid_.view({batch_, T, C}), tokens_);
    if (ready) ready(wte_, wpe_ - wte_ + 1);  // declared one after the other
}

}  // namespace curaclip
