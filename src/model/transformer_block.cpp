#include "model/transformer_block.h"

namespace curaclip {

BlockParams declare_block(ParameterSet& ps, const std::string& prefix, const TowerConfig& t) {
    const int64_t C = t.width, M = int64_t(t.mlp_ratio) * t.width;
    BlockParams p;
    p.ln1_w = ps.declare(prefix + ".ln_1.weight", {C}, false);
    p.ln1_b = ps.declare(prefix + ".ln_1.bias", {C}, false);
    p.in_proj_w = ps.declare(prefix + ".attn.in_proj_weight", {3 * C, C}, true);
    p.in_proj_b = ps.declare(prefix + ".attn.in_proj_bias", {3 * C}, false);
    p.out_proj_w = ps.declare(prefix + ".attn.out_proj.weight", {C, C}, true);
    p.out_proj_b = ps.declare(prefix + ".attn.out_proj.bias", {C}, false);
    p.ln2_w = ps.declare(prefix + ".ln_2.weight", {C}, false);
    p.ln2_b = ps.declare(prefix + ".ln_2.bias", {C}, false);
    p.fc_w = ps.declare(prefix + ".mlp.c_fc.weight", {M, C}, true);
    p.fc_b = ps.declare(prefix + ".mlp.c_fc.bias", {M}, false);
    p.proj_w = ps.declare(prefix + ".mlp.c_proj.weight", {C, M}, true);
    p.proj_b = ps.declare(prefix + ".mlp.c_proj.bias", {C}, false);
    return p;
}

BlockActivations layout_block_activations(Arena& arena, DType dt, int64_t B, int64_t T,
                                          const TowerConfig& t) {
    const int64_t C = t.width, M = int64_t(t.mlp_ratio) * t.width, N = B * T;
    // Layer-norm statistics stay in at least fp32 whatever the compute dtype.
    const DType stat = dt == DType::f64 ? DType::f64 : DType::f32;
    BlockActivations a;
    a.ln1 = arena.alloc({N, C}, dt);
    a.ln1_mean = arena.alloc({N}, stat);
    a.ln1_rstd = arena.alloc({N}, stat);
    a.qkv = arena.alloc({B, T, 3 * C}, dt);
    a.att = arena.alloc({B, T, C}, dt);
    a.att_stats = arena.alloc({B, t.heads, T}, stat);
    a.x2 = arena.alloc({N, C}, dt);
    a.ln2 = arena.alloc({N, C}, dt);
    a.ln2_mean = arena.alloc({N}, stat);
    a.ln2_rstd = arena.alloc({N}, stat);
    a.fc = arena.alloc({N, M}, dt);
    a.fc_act = arena.alloc({N, M}, dt);
    a.out = arena.alloc({N, C}, dt);
    return a;
}

BlockScratch layout_block_scratch(Arena& arena, DType dt, int64_t B, int64_t T, const TowerConfig& t) {
    const int64_t C = t.width, M = int64_t(t.mlp_ratio) * t.width, N = B * T;
    BlockScratch s;
    s.dln = arena.alloc({N, C}, dt);
    s.datt = arena.alloc({B, T, C}, dt);
    s.dqkv = arena.alloc({B, T, 3 * C}, dt);
    s.dfc = arena.alloc({N, M}, dt);
    s.dfc_act = arena.alloc({N, M}, dt);
    return s;
}

void block_forward(Backend& be, ParameterSet& ps, const BlockParams& p, BlockActivations& a,
                   Tensor x, const TowerConfig& t, Activation act, bool causal) {
    const Tensor x2d = x.view({a.ln1.shape[0], t.width});
    be.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x2d, ps[p.ln1_w].value, ps[p.ln1_b].value);
    be.linear_forward(a.qkv.view(Shape{a.ln1.shape[0], 3 * int64_t(t.width)}), a.ln1,
                      ps[p.in_proj_w].value, ps[p.in_proj_b].value);
    be.attention_forward(a.att, a.att_stats, a.qkv, t.heads, causal);
    be.linear_forward(a.x2, a.att.view(a.x2.shape), ps[p.out_proj_w].value, ps[p.out_proj_b].value);
    be.add(a.x2, a.x2, x2d);
    be.layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.x2, ps[p.ln2_w].value, ps[p.ln2_b].value);
    be.linear_forward(a.fc, a.ln2, ps[p.fc_w].value, ps[p.fc_b].value);
    be.activation_forward(a.fc_act, a.fc, act);
    be.linear_forward(a.out, a.fc_act, ps[p.proj_w].value, ps[p.proj_b].value);
    be.add(a.out, a.out, a.x2);
}

void block_backward(Backend& be, ParameterSet& ps, const BlockParams& p, BlockActivations& a,
                    BlockScratch& s, Tensor x, Tensor dresid, const TowerConfig& t, Activation act,
                    bool causal) {
    const Tensor x2d = x.view(a.x2.shape);
    const Tensor dres = dresid.view(a.x2.shape);
    // MLP branch: out = x2 + c_proj(act(c_fc(ln_2(x2)))); dres = d(out) flows into x2 unchanged.
    be.fill(s.dfc_act, 0.0f);
    be.linear_backward(s.dfc_act, ps[p.proj_w].grad, ps[p.proj_b].grad, dres, a.fc_act, ps[p.proj_w].value);
    be.fill(s.dfc, 0.0f);
    be.activation_backward(s.dfc, s.dfc_act, a.fc, act);
    be.fill(s.dln, 0.0f);
    be.linear_backward(s.dln, ps[p.fc_w].grad, ps[p.fc_b].grad, s.dfc, a.ln2, ps[p.fc_w].value);
    be.layernorm_backward(dres, ps[p.ln2_w].grad, ps[p.ln2_b].grad, s.dln, a.x2, ps[p.ln2_w].value,
                          a.ln2_mean, a.ln2_rstd);
    // dres is now d(x2). Attention branch: x2 = x + out_proj(attn(in_proj(ln_1(x)))).
    const Tensor datt2d = s.datt.view(a.x2.shape);
    be.fill(s.datt, 0.0f);
    be.linear_backward(datt2d, ps[p.out_proj_w].grad, ps[p.out_proj_b].grad, dres, a.att.view(a.x2.shape),
                       ps[p.out_proj_w].value);
    be.fill(s.dqkv, 0.0f);
    be.attention_backward(s.dqkv, s.datt, a.qkv, a.att, a.att_stats, t.heads, causal);
    be.fill(s.dln, 0.0f);
    be.linear_backward(s.dln, ps[p.in_proj_w].grad, ps[p.in_proj_b].grad,
                       s.dqkv.view(Shape{a.x2.shape[0], 3 * int64_t(t.width)}), a.ln1,
                       ps[p.in_proj_w].value);
    be.layernorm_backward(dres, ps[p.ln1_w].grad, ps[p.ln1_b].grad, s.dln, x2d, ps[p.ln1_w].value,
                          a.ln1_mean, a.ln1_rstd);
}

}  // namespace curaclip
