#include "model/transformer.h"

namespace curaclip {

void TransformerStack::declare(ParameterSet& ps, const std::string& prefix, const TowerConfig& t) {
    cfg_ = t;
    params_.clear();
    for (int l = 0; l < t.layers; ++l)
        params_.push_back(declare_block(ps, prefix + ".resblocks." + std::to_string(l), t));
}

void TransformerStack::layout(Arena& arena, DType dt, int64_t B, int64_t T) {
    acts_.clear();
    for (size_t l = 0; l < params_.size(); ++l) acts_.push_back(layout_block_activations(arena, dt, B, T, cfg_));
    scratch_ = layout_block_scratch(arena, dt, B, T, cfg_);
}

void TransformerStack::forward(Backend& be, ParameterSet& ps, Tensor x, Activation act, bool causal) {
    Tensor in = x;
    for (size_t l = 0; l < params_.size(); ++l) {
        block_forward(be, ps, params_[l], acts_[l], in, cfg_, act, causal);
        in = acts_[l].out;
    }
}

void TransformerStack::backward(Backend& be, ParameterSet& ps, Tensor x, Tensor dresid, Activation act,
                                bool causal, const GradsReady& ready) {
    for (size_t l = params_.size(); l-- > 0;) {
        const Tensor in = l == 0 ? x : acts_[l - 1].out;
        block_backward(be, ps, params_[l], acts_[l], scratch_, in, dresid, cfg_, act, causal);
        // declare_block declares a block's 12 parameters one after the other, ln1_w first.
        if (ready) ready(params_[l].ln1_w, params_[l].proj_b - params_[l].ln1_w + 1);
    }
}

}  // namespace curaclip
