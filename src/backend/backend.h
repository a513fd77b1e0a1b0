// Backend: the complete list of operations a CLIP training step needs.
//
// Model, loss and optimizer code call these ops and never branch on the device
// (flashlight's small-interface idea). Every backend implements every op; the
// CPU backend (src/cpu/) is the reference that all others are tested against
// (tests/unit/test_backend_ops.cpp).
//
// Conventions, binding for every implementation:
//  * Tensors are row-major. A "matrix" view of a tensor is [shape.rows(), shape.cols()].
//  * Float tensors are in the backend's compute dtype (dtype()), unless an op says
//    otherwise; token ids and indices are i32, raw images u8.
//  * Forward ops overwrite their outputs.
//  * Backward ops ACCUMULATE (+=) into every gradient they write (dinp, dweight,
//    dbias, ...), so that residual branches and shared parameters need no extra
//    adds. The caller zeroes gradient buffers before a backward pass. A gradient
//    argument may be an empty Tensor, meaning "not needed".
//  * Scalars that live on the device (logit scale t, logit bias b, loss
//    accumulators) are tensors of shape [1], so no op needs a host round trip.
//  * Linear layers store weights as PyTorch does: weight [out, in], y = x W^T + b.
//
// Where the argument contracts are checked: each model op below is a non-virtual
// method that checks, once for every backend, what its comment promises about the
// arguments (required tensors present, shapes and element counts that agree, index
// and id tensors i32 / images u8, n_head dividing C, label_offset ranges, the patch
// tiling the image, ...; backend/op_contracts.cpp), then calls the backend's
// protected <op>_kernel. A kernel checks only what is its own: the dtypes it computes
// in (CPU f32/f64, CUDA bf16/f32), device limits (BLAS ints, grid sizes, cuDNN), and
// what needs the data (token ids and lengths in range). Errors name the op first
// ("matmul: ..."). Memory ops and identity stay plain virtuals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace curaclip {

enum class Activation : uint8_t {
    gelu,        // exact erf GELU (torch.nn.GELU, open_clip's default)
    quick_gelu,  // x * sigmoid(1.702 x) (OpenAI CLIP's weights)
};

struct AdamWParams {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.98f;
    float eps = 1e-6f;
    float weight_decay = 0.0f;  // decoupled: p -= lr * wd * p
    int64_t step = 1;           // 1-based step for bias correction
};

// What code above the backend may ask of it, instead of branching on its name
// (which model and curation code never do).
struct BackendCapabilities {
    // alloc() returns host-addressable memory: MPI may send it without staging.
    bool host_memory = false;
    // > 0: host-side working tiles of about this many elements stay in the cache (the
    // JEST learnability matrix is built in row tiles of this size); 0: one tile.
    int64_t cache_tile_elements = 0;
};

class CurationOps;

class Backend {
public:
    virtual ~Backend() = default;

    // ---- identity ---------------------------------------------------------------
    virtual std::string name() const = 0;  // e.g. "cpu-f32", "cpu-f64", "cuda"
    virtual DType dtype() const = 0;       // dtype of activations and parameters
    virtual BackendCapabilities capabilities() const = 0;

    // ---- memory -----------------------------------------------------------------
    virtual void* alloc(size_t bytes) = 0;
    virtual void free(void* p) = 0;
    virtual void memset_zero(void* p, size_t bytes) = 0;
    // Host <-> device copies with conversion from/to the tensor's dtype.
    // Float tensors accept f32 or f64 host data; i32/u8 tensors take raw bytes.
    virtual void upload(Tensor dst, const float* src) = 0;
    virtual void upload(Tensor dst, const double* src) = 0;
    virtual void upload_raw(Tensor dst, const void* src) = 0;  // same dtype, no conversion
    virtual void download(float* dst, Tensor src) = 0;
    virtual void download(double* dst, Tensor src) = 0;
    virtual void download_raw(void* dst, Tensor src) = 0;
    virtual void synchronize() = 0;  // wait for all queued work

    // ---- elementwise and reductions --------------------------------------------
    void fill(Tensor x, float value);
    void copy(Tensor dst, Tensor src);         // same shape and dtype
    void add(Tensor out, Tensor a, Tensor b);  // out = a + b (out may alias a or b)
    void accumulate(Tensor dst, Tensor src);   // dst += src
    void scale(Tensor x, float s);             // x *= s
    // out[0] += sum(x^2) in at least fp32 (out is f32 or f64 [1]); for the global grad norm.
    void sum_squares(Tensor out, Tensor x);

    // ---- matrix products ---------------------------------------------------------
    // out[M,N] = alpha * op(a) op(b) + beta * out, op = transpose if the flag is set.
    // a, b, out are viewed as matrices [rows(), cols()].
    void matmul(Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b,
                float alpha = 1.0f, float beta = 0.0f);
    // out[N,OC] = inp[N,C] weight[OC,C]^T + bias[OC] (bias may be empty).
    void linear_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias);
    // dinp += dout weight; dweight += dout^T inp; dbias += column sums of dout.
    void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                         Tensor inp, Tensor weight);

    // ---- normalization and activations ---------------------------------------------
    // inp [N,C]; mean, rstd [N] (saved for backward, always f32 or the compute dtype);
    // eps = 1e-5 as torch.nn.LayerNorm.
    void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                           Tensor weight, Tensor bias);
    void layernorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                            Tensor inp, Tensor weight, Tensor mean, Tensor rstd);
    void activation_forward(Tensor out, Tensor inp, Activation act);
    void activation_backward(Tensor dinp, Tensor dout, Tensor inp, Activation act);
    // out[N,D] = inp / max(||inp||_2, 1e-12) row-wise (F.normalize); norms [N] saved.
    void l2_normalize_forward(Tensor out, Tensor norms, Tensor inp);
    void l2_normalize_backward(Tensor dinp, Tensor dout, Tensor out, Tensor norms);

    // ---- attention -------------------------------------------------------------------
    // Multi-head self-attention core of torch.nn.MultiheadAttention after in_proj:
    // qkv [B,T,3C] holds q | k | v along the last dim, head h owns columns
    // [h*hs, (h+1)*hs) of each (hs = C / n_head); scores scaled by 1/sqrt(hs);
    // causal masks j > i. out [B,T,C] (heads concatenated, before out_proj).
    // stats [B,n_head,T] saves the row log-sum-exp of the scaled scores, so a
    // backend may recompute probabilities in the backward (as cuDNN/flash attention).
    void attention_forward(Tensor out, Tensor stats, Tensor qkv, int n_head, bool causal);
    void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                            Tensor stats, int n_head, bool causal);
    // Bidirectional self-attention with key padding, forward only (BERT-family sentence
    // encoders, src/encoder/): qkv, out and the heads as attention_forward (not causal),
    // but row b attends to its keys j < lengths[b] only, as Hugging Face BERT's
    // attention_mask of 1 for the first lengths[b] tokens (its additive mask of the
    // dtype's minimum makes those probabilities exactly 0). lengths i32 [B], each in
    // [1, T]. Query rows i >= lengths[b] are computed too (they attend to the same valid
    // keys), so out is defined everywhere; callers ignore them. No stats, no backward.
    void attention_padded_forward(Tensor out, Tensor qkv, Tensor lengths, int n_head);

    // ---- embeddings and token bookkeeping -------------------------------------------------
    // out[B,T,C] = wte[tokens[b,t]] + wpe[t]; tokens i32 [B,T].
    void embedding_forward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe);
    void embedding_backward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens);
    // Images u8 [B,H,W,Cin] (HWC as stored in the datasets) -> normalized patches
    // out [B*P, Cin*p*p], P = (H/p)*(W/p), patch order row-major over the grid,
    // column index c*p*p + ky*p + kx (the flattening of a conv weight [OC,Cin,p,p]).
    // Pixel value: (u8/255 - mean[c]) / std[c]; mean and std are host arrays of Cin.
    void patchify(Tensor out, Tensor images, int patch, const float* mean, const float* std);
    // x[B,T,C], T = P+1: x[b,0] = cls + pos[0]; x[b,1+p] = patches[b,p] + pos[1+p].
    // patches [B,P,C] (or [B*P,C]), cls [C], pos [T,C].
    void vit_embed_forward(Tensor out, Tensor patches, Tensor cls, Tensor pos);
    void vit_embed_backward(Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout);
    // idx i32 [B] = position of the largest token id in each row of tokens [B,T]
    // (the end-of-text token, as open_clip's argmax pooling; first one on ties).
    void argmax_rows(Tensor idx, Tensor tokens);
    // out[B,C] = x[b, idx[b], :] with x [B,T,C]; backward scatters (accumulates).
    void gather_rows(Tensor out, Tensor x, Tensor idx);
    void gather_rows_backward(Tensor dx, Tensor dout, Tensor idx);

    // ---- contrastive losses (row kernels; the GEMMs around them use matmul) ---------------
    // dots [M,N] = raw dot products of normalized embeddings (rows: this rank's
    // anchors, columns: the whole global batch); the positive of row i is column
    // label_offset + i. t = logit_scale[0] (the logit is exp(t) * dot).
    //
    // Softmax cross-entropy of each row (one direction of the CLIP loss):
    //   loss[0]   += weight * sum_i (lse_i - logit_{i,label_i})
    //   ddots      = weight * exp(t) * (softmax - onehot)   (overwritten; may be empty)
    //   dscale[0] += weight * sum_ij (softmax - onehot)_ij * logit_ij   (may be empty)
    void softmax_xent_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dots,
                           Tensor logit_scale, int64_t label_offset, float weight);
    // Sigmoid (SigLIP) pairwise loss with z_ij = +1 on the positive, -1 elsewhere:
    //   loss[0]   += weight * sum_ij softplus(-z_ij (exp(t) dot_ij + b))
    //   ddots      = weight * exp(t) * g_ij, g_ij = -z_ij sigmoid(-z_ij logit_ij)  (overwritten)
    //   dscale[0] += weight * sum_ij g_ij exp(t) dot_ij;  dbias[0] += weight * sum_ij g_ij
    void sigmoid_pairwise_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias,
                               Tensor dots, Tensor logit_scale, Tensor logit_bias,
                               int64_t label_offset, float weight);

    // ---- optimizer -------------------------------------------------------------------------
    // AdamW on one parameter tensor (m, v: f32, f64 on cpu-f64, as the ParameterSet's moments):
    //   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
    //   p -= lr * ( mhat / (sqrt(vhat) + eps) + wd * p ),  mhat = m/(1-b1^step), vhat = v/(1-b2^step)
    // evaluated as torch.optim.AdamW does (same math, torch's rounding order):
    //   p *= 1 - lr*wd;  p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps),  bc_i = 1 - b_i^step
    // grad_scale multiplies g first (gradient clipping without a separate pass).
    // master: the f32 master copy of a parameter stored narrower than f32 (bf16 on the
    // CUDA backend; Parameter::master), empty for an f32/f64 parameter. The update runs
    // on the master, which is then rounded into param; where rounding the master does
    // not give param (param was written since: core/bf16.h master_agrees), the master is
    // re-seeded from param first. So the master accumulates updates below bf16's
    // resolution, and a write to param is never undone by a stale master.
    void adamw_step(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                    float grad_scale);
    // x = min(max(x, lo), hi) elementwise (the logit-scale clamp).
    void clamp(Tensor x, float lo, float hi);

    // ---- extensions ---------------------------------------------------------------
    // The data-curation kernels (JEST scoring, MoDE k-means): backend/curation_ops.h.
    virtual CurationOps& curation() = 0;

protected:
    // The backend's kernels, one per model op above, called by it with arguments whose
    // contracts were checked (backend/op_contracts.cpp). A kernel checks only what is its
    // own: its dtypes, its device limits, and what needs the data.

    // elementwise and reductions
    virtual void fill_kernel(Tensor x, float value) = 0;
    virtual void copy_kernel(Tensor dst, Tensor src) = 0;
    virtual void add_kernel(Tensor out, Tensor a, Tensor b) = 0;
    virtual void accumulate_kernel(Tensor dst, Tensor src) = 0;
    virtual void scale_kernel(Tensor x, float s) = 0;
    virtual void sum_squares_kernel(Tensor out, Tensor x) = 0;
    virtual void clamp_kernel(Tensor x, float lo, float hi) = 0;
    // matrix products
    virtual void matmul_kernel(Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b,
                               float alpha, float beta) = 0;
    virtual void linear_forward_kernel(Tensor out, Tensor inp, Tensor weight, Tensor bias) = 0;
    virtual void linear_backward_kernel(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                                        Tensor inp, Tensor weight) = 0;
    // normalization and activations
    virtual void layernorm_forward_kernel(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                                          Tensor weight, Tensor bias) = 0;
    virtual void layernorm_backward_kernel(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                                           Tensor inp, Tensor weight, Tensor mean, Tensor rstd) = 0;
    virtual void activation_forward_kernel(Tensor out, Tensor inp, Activation act) = 0;
    virtual void activation_backward_kernel(Tensor dinp, Tensor dout, Tensor inp,
                                            Activation act) = 0;
    virtual void l2_normalize_forward_kernel(Tensor out, Tensor norms, Tensor inp) = 0;
    virtual void l2_normalize_backward_kernel(Tensor dinp, Tensor dout, Tensor out,
                                              Tensor norms) = 0;
    // attention
    virtual void attention_forward_kernel(Tensor out, Tensor stats, Tensor qkv, int n_head,
                                          bool causal) = 0;
    virtual void attention_backward_kernel(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                                           Tensor stats, int n_head, bool causal) = 0;
    virtual void attention_padded_forward_kernel(Tensor out, Tensor qkv, Tensor lengths,
                                                 int n_head) = 0;
    // embeddings and token bookkeeping
    virtual void embedding_forward_kernel(Tensor out, Tensor tokens, Tensor wte, Tensor wpe) = 0;
    virtual void embedding_backward_kernel(Tensor dwte, Tensor dwpe, Tensor dout,
                                           Tensor tokens) = 0;
    virtual void patchify_kernel(Tensor out, Tensor images, int patch, const float* mean,
                                 const float* std) = 0;
    virtual void vit_embed_forward_kernel(Tensor out, Tensor patches, Tensor cls, Tensor pos) = 0;
    virtual void vit_embed_backward_kernel(Tensor dpatches, Tensor dcls, Tensor dpos,
                                           Tensor dout) = 0;
    virtual void argmax_rows_kernel(Tensor idx, Tensor tokens) = 0;
    virtual void gather_rows_kernel(Tensor out, Tensor x, Tensor idx) = 0;
    virtual void gather_rows_backward_kernel(Tensor dx, Tensor dout, Tensor idx) = 0;
    // contrastive losses
    virtual void softmax_xent_rows_kernel(Tensor loss, Tensor ddots, Tensor dscale, Tensor dots,
                                          Tensor logit_scale, int64_t label_offset, float weight) = 0;
    virtual void sigmoid_pairwise_rows_kernel(Tensor loss, Tensor ddots, Tensor dscale,
                                              Tensor dbias, Tensor dots, Tensor logit_scale,
                                              Tensor logit_bias, int64_t label_offset,
                                              float weight) = 0;
    // optimizer
    virtual void adamw_step_kernel(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master,
                                   const AdamWParams& hp, float grad_scale) = 0;
};

}  // namespace curaclip
