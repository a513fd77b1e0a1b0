#include "model/pooled_head.h"

namespace curaclip {

void PooledHead::declare(ParameterSet& ps, const std::string& ln_name, const std::string& proj_name,
                         int64_t width, int64_t embed_dim) {
    width_ = width;
    dim_ = embed_dim;
    ln_w_ = ps.declare(ln_name + ".weight", {width}, false);
    ln_b_ = ps.declare(ln_name + ".bias", {width}, false);
    proj_ = ps.declare(proj_name, {width, embed_dim}, true);
}

void PooledHead::layout(Arena& arena, DType dt, int64_t B) {
    const DType stat = dt == DType::f64 ? DType::f64 : DType::f32;
    pooled_ = arena.alloc({B, width_}, dt);
    pooled_ln_ = arena.alloc({B, width_}, dt);
    ln_mean_ = arena.alloc({B}, stat);
    ln_rstd_ = arena.alloc({B}, stat);
    feat_ = arena.alloc({B, dim_}, dt);
    norms_ = arena.alloc({B}, stat);
    emb_ = arena.alloc({B, dim_}, dt);
    demb_ = arena.alloc({B, dim_}, dt);
    dfeat_ = arena.alloc({B, dim_}, dt);
    dpooled_ln_ = arena.alloc({B, width_}, dt);
    dpooled_ = arena.alloc({B, width_}, dt);
}

void PooledHead::forward(Backend& be, ParameterSet& ps, Tensor x, Tensor idx) {
    be.gather_rows(pooled_, x, idx);
    be.layernorm_forward(pooled_ln_, ln_mean_, ln_rstd_, pooled_, ps[ln_w_].value, ps[ln_b_].value);
    be.matmul(feat_, pooled_ln_, ps[proj_].value, false, false);
    be.l2_normalize_forward(emb_, norms_, feat_);
}

void PooledHead::backward(Backend& be, ParameterSet& ps, Tensor dx, Tensor idx) {
    be.fill(dfeat_, 0.0f);
    be.l2_normalize_backward(dfeat_, demb_, emb_, norms_);
    // feat = pooled_ln @ proj:  dproj += pooled_ln^T dfeat;  dpooled_ln = dfeat proj^T.
    be.matmul(ps[proj_].grad, pooled_ln_, dfeat_, true, false, 1.0f, 1.0f);
    be.matmul(dpooled_ln_, dfeat_, ps[proj_].value, false, true);
    be.fill(dpooled_, 0.0f);
    be.layernorm_backward(dpooled_, ps[ln_w_].grad, ps[ln_b_].grad, dpooled_ln_, pooled_, ps[ln_w_].value,
                          ln_mean_, ln_rstd_);
    be.gather_rows_backward(dx, dpooled_, idx);
}

}  // namespace curaclip
