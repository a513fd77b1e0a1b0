// A stack of residual blocks (open_clip's `Transformer`), with the activations
// of every layer and one backward scratch shared by all of them.
#pragma once

#include <string>
#include <vector>

#include "model/transformer_block.h"

namespace curaclip {

class TransformerStack {
public:
    // prefix: "visual.transformer" or "transformer".
    void declare(ParameterSet& ps, const std::string& prefix, const TowerConfig& t);
    void layout(Arena& arena, DType dt, int64_t B, int64_t T);
    // x [B,T,C] -> output() [B*T, C].
    void forward(Backend& be, ParameterSet& ps, Tensor x, Activation act, bool causal);
    // dresid: d(output) on entry, d(x) on return.
    // ready (optional) hears of each block's parameters as soon as that block is done.
    void backward(Backend& be, ParameterSet& ps, Tensor x, Tensor dresid, Activation act, bool causal,
                  const GradsReady& ready = {});
    // Output of the last block (x itself when there are no layers).
    Tensor output(Tensor x) const { return acts_.empty() ? x : acts_.back().out; }

private:
    TowerConfig cfg_;
    std::vector<BlockParams> params_;
    std::vector<BlockActivations> acts_;
    BlockScratch scratch_;
};

}  // namespace curaclip
