// One pre-LN residual block of OpenAI CLIP / open_clip:
//   x2  = x  + out_proj(attention(in_proj(ln_1(x))))
//   out = x2 + c_proj(act(c_fc(ln_2(x2))))
// with explicit forward and backward (llm.c style). Parameters are named as in
// open_clip's state_dict under a prefix such as "visual.transformer.resblocks.3".
#pragma once

#include <string>

#include "backend/arena.h"
#include "model/model_config.h"
#include "model/parameters.h"

namespace curaclip {

struct BlockParams {
    size_t ln1_w, ln1_b, in_proj_w, in_proj_b, out_proj_w, out_proj_b;
    size_t ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
};

// What the forward keeps for the backward; all [B*T, ...] row-major.
struct BlockActivations {
    Tensor ln1, ln1_mean, ln1_rstd;  // [BT,C], [BT], [BT]
    Tensor qkv;                      // [B,T,3C]
    Tensor att, att_stats;           // [B,T,C], [B,H,T]
    Tensor x2;                       // [BT,C] residual after attention
    Tensor ln2, ln2_mean, ln2_rstd;  // [BT,C], [BT], [BT]
    Tensor fc, fc_act;               // [BT,4C] before / after the activation
    Tensor out;                      // [BT,C] block output
};

// Backward scratch shared by every block of a tower (contents die with each block).
struct BlockScratch {
    Tensor dln, datt;   // [BT,C]
    Tensor dqkv;        // [B,T,3C]
    Tensor dfc, dfc_act;  // [BT,4C]
};

BlockParams declare_block(ParameterSet& ps, const std::string& prefix, const TowerConfig& t);
BlockActivations layout_block_activations(Arena& arena, DType dt, int64_t B, int64_t T,
                                          const TowerConfig& t);
BlockScratch layout_block_scratch(Arena& arena, DType dt, int64_t B, int64_t T, const TowerConfig& t);

// x [B,T,C] -> a.out.
void block_forward(Backend& be, ParameterSet& ps, const BlockParams& p, BlockActivations& a,
                   Tensor x, const TowerConfig& t, Activation act, bool causal);
// dresid holds d(block output) on entry and d(block input x) on return;
// parameter gradients accumulate.
void block_backward(Backend& be, ParameterSet& ps, const BlockParams& p, BlockActivations& a,
                    BlockScratch& s, Tensor x, Tensor dresid, const TowerConfig& t, Activation act,
                    bool causal);

}  // namespace curaclip
