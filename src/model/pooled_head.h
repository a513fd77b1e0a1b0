// The end of both towers: pick one token per example (class token / end of
// text), layer-norm it (ln_post / ln_final), project without bias
// (x @ proj, proj [width, embed_dim] as open_clip stores it), L2-normalize.
#pragma once

#include <string>

#include "backend/arena.h"
#include "model/parameters.h"

namespace curaclip {

class PooledHead {
public:
    // ln_name: "visual.ln_post" / "ln_final"; proj_name: "visual.proj" / "text_projection".
    void declare(ParameterSet& ps, const std::string& ln_name, const std::string& proj_name,
                 int64_t width, int64_t embed_dim);
    void layout(Arena& arena, DType dt, int64_t B);
    // x [B,T,C], idx i32 [B] -> embeddings() [B,D], unit rows.
    void forward(Backend& be, ParameterSet& ps, Tensor x, Tensor idx);
    // From d_embeddings() (accumulated by the loss) to parameter grads and dx (accumulated).
    void backward(Backend& be, ParameterSet& ps, Tensor dx, Tensor idx);
    // Its parameters (ln weight, ln bias, projection) are declared one after the other.
    size_t first_param() const { return ln_w_; }
    static constexpr size_t kParamCount = 3;

    Tensor embeddings() const { return emb_; }
    Tensor features() const { return feat_; }  // before normalization
    Tensor d_embeddings() const { return demb_; }

private:
    size_t ln_w_ = 0, ln_b_ = 0, proj_ = 0;
    int64_t width_ = 0, dim_ = 0;
    Tensor pooled_, pooled_ln_, ln_mean_, ln_rstd_, feat_, norms_, emb_;
    Tensor demb_, dfeat_, dpooled_ln_, dpooled_;
};

}  // namespace curaclip
