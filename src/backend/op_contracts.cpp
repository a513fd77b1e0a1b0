// The argument contracts of the model ops (backend/backend.h), checked once for every
// backend: each Backend op checks here what its comment promises about the arguments
// (required tensors present, shapes and element counts that agree, index tensors i32
// and images u8, n_head dividing C, label_offset ranges, the patch tiling the image),
// then calls the backend's <op>_kernel. What differs between backends stays in the
// kernels: the dtypes they compute in, device limits, and checks that read the data
// (token ids, gather indices and lengths in range). Messages name the op first.
//
// Errors are internal invariants (check failed: ...): model code sizes these tensors
// itself, so a failure here is a bug in the caller, not a user's mistake.
#include <cstdint>

#include "backend/backend.h"
#include "core/check.h"

namespace curaclip {

namespace {

// A tensor the op needs (ops say where an empty Tensor means "not needed").
void require(const Tensor& t, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
}
void check_numel(const Tensor& t, int64_t n, const char* op, const char* what) {
    CC_CHECK(t.numel() == n, op, ": ", what, " ", t.shape.str(), " should have ", n, " elements");
}
// A present tensor of n elements (device scalars are [1]).
void check_elements(const Tensor& t, int64_t n, const char* op, const char* what) {
    require(t, op, what);
    check_numel(t, n, op, what);
}
// The matrix view [rows(), cols()] of t is [N, C].
void check_rows(const Tensor& t, int64_t N, int64_t C, const char* op, const char* what) {
    CC_CHECK(t.shape.rows() == N && t.shape.cols() == C, op, ": ", what, " ", t.shape.str(),
             " should be [", N, ", ", C, "]");
}
// Index, id and image tensors have one dtype on every backend (i32, u8).
void check_dtype(const Tensor& t, DType dt, const char* op, const char* what) {
    require(t, op, what);
    CC_CHECK(t.dtype == dt, op, ": ", what, " has dtype ", dtype_name(t.dtype), ", expected ",
             dtype_name(dt));
}
// Elementwise operands: same dtype, same number of elements.
void check_same(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
    CC_CHECK(a.dtype == b.dtype, op, ": ", an, " is ", dtype_name(a.dtype), " but ", bn, " is ",
             dtype_name(b.dtype));
    CC_CHECK(a.numel() == b.numel(), op, ": ", an, " ", a.shape.str(), " and ", bn, " ",
             b.shape.str(), " differ in size");
}
void check_activation(Activation act, const char* op) {
    CC_CHECK(act == Activation::gelu || act == Activation::quick_gelu, op, ": unknown activation ",
             int(act));
}

// Packed qkv [B, T, 3C] with n_head dividing C, and out [B, T, C] (out is checked by its
// element count and last dimension, so [B*T, C] views pass too).
struct QkvDims {
    int64_t B, T, C;
};
QkvDims check_qkv(const char* op, const Tensor& qkv, const Tensor& out, int n_head) {
    require(qkv, op, "qkv");
    require(out, op, "out");
    CC_CHECK(qkv.shape.ndim == 3, op, ": qkv ", qkv.shape.str(), " should be [B, T, 3C]");
    const int64_t B = qkv.shape[0], T = qkv.shape[1], C3 = qkv.shape[2];
    CC_CHECK(C3 % 3 == 0, op, ": qkv ", qkv.shape.str(), " last dimension is not 3C");
    const int64_t C = C3 / 3;
    CC_CHECK(n_head > 0 && C % n_head == 0, op, ": n_head ", n_head, " does not divide C = ", C);
    CC_CHECK(out.numel() == B * T * C && out.shape.cols() == C, op, ": out ", out.shape.str(),
             " should be [", B, ", ", T, ", ", C, "]");
    return {B, T, C};
}

// dots [M, N] with the positives label_offset + i inside the columns; loss [1] and
// ddots [M, N] where given; logit_scale [1].
void check_loss(const char* op, const Tensor& loss, const Tensor& ddots, const Tensor& dots,
                const Tensor& logit_scale, int64_t label_offset) {
    require(dots, op, "dots");
    const int64_t M = dots.shape.rows(), N = dots.shape.cols();
    CC_CHECK(label_offset >= 0 && label_offset + M <= N, op, ": label_offset ", label_offset,
             " puts the positives of ", M, " rows outside the ", N, " columns of dots ",
             dots.shape.str());
    if (!loss.empty()) check_numel(loss, 1, op, "loss");
    if (!ddots.empty())
        CC_CHECK(ddots.shape.rows() == M && ddots.shape.cols() == N, op, ": ddots ",
                 ddots.shape.str(), " differs from dots ", dots.shape.str());
    check_elements(logit_scale, 1, op, "logit_scale");
}

}  // namespace

// ---- elementwise and reductions ------------------------------------------------------------

void Backend::fill(Tensor x, float value) {
    require(x, "fill", "x");
    fill_kernel(x, value);
}

void Backend::copy(Tensor dst, Tensor src) {
    CC_CHECK(!dst.empty() && !src.empty(), "copy: empty tensor");
    check_same(dst, src, "copy", "dst", "src");
    copy_kernel(dst, src);
}

void Backend::add(Tensor out, Tensor a, Tensor b) {
    require(out, "add", "out");
    require(a, "add", "a");
    require(b, "add", "b");
    check_same(out, a, "add", "out", "a");
    check_same(out, b, "add", "out", "b");
    add_kernel(out, a, b);
}

void Backend::accumulate(Tensor dst, Tensor src) {
    require(dst, "accumulate", "dst");
    require(src, "accumulate", "src");
    check_same(dst, src, "accumulate", "dst", "src");
    accumulate_kernel(dst, src);
}

void Backend::scale(Tensor x, float s) {
    require(x, "scale", "x");
    scale_kernel(x, s);
}

void Backend::sum_squares(Tensor out, Tensor x) {
    require(x, "sum_squares", "x");
    check_elements(out, 1, "sum_squares", "out");
    // At least fp32 on every backend (a bf16 accumulator would lose the small squares).
    CC_CHECK(out.dtype == DType::f32 || out.dtype == DType::f64, "sum_squares: out has dtype ",
             dtype_name(out.dtype), ", expected f32 or f64");
    sum_squares_kernel(out, x);
}

void Backend::clamp(Tensor x, float lo, float hi) {
    require(x, "clamp", "x");
    CC_CHECK(lo <= hi, "clamp: lo ", lo, " > hi ", hi);
    clamp_kernel(x, lo, hi);
}

// ---- matrix products -------------------------------------------------------------------------

void Backend::matmul(Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b, float alpha,
                     float beta) {
    require(out, "matmul", "out");
    require(a, "matmul", "a");
    require(b, "matmul", "b");
    const int64_t ar = a.shape.rows(), ac = a.shape.cols();
    const int64_t br = b.shape.rows(), bc = b.shape.cols();
    const int64_t M = trans_a ? ac : ar, K = trans_a ? ar : ac;
    const int64_t Kb = trans_b ? bc : br, N = trans_b ? br : bc;
    CC_CHECK(K == Kb, "matmul: inner dimensions differ: op(a) is [", M, ", ", K, "] (a ",
             a.shape.str(), trans_a ? " transposed" : "", "), op(b) is [", Kb, ", ", N, "] (b ",
             b.shape.str(), trans_b ? " transposed" : "", ")");
    CC_CHECK(out.shape.rows() == M && out.shape.cols() == N, "matmul: out ", out.shape.str(),
             " should be [", M, ", ", N, "]");
    matmul_kernel(out, a, b, trans_a, trans_b, alpha, beta);
}

void Backend::linear_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias) {
    const char* op = "linear_forward";
    require(out, op, "out");
    require(inp, op, "inp");
    require(weight, op, "weight");
    CC_CHECK(weight.shape.ndim == 2, op, ": weight ", weight.shape.str(), " should be [out, in]");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols(), OC = weight.shape[0];
    CC_CHECK(weight.shape[1] == C, op, ": weight ", weight.shape.str(), " does not take ", C,
             " input features (inp ", inp.shape.str(), ")");
    CC_CHECK(out.shape.rows() == N && out.shape.cols() == OC, op, ": out ", out.shape.str(),
             " should be [", N, ", ", OC, "]");
    if (!bias.empty()) check_numel(bias, OC, op, "bias");
    linear_forward_kernel(out, inp, weight, bias);
}

void Backend::linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                              Tensor weight) {
    const char* op = "linear_backward";
    require(dout, op, "dout");
    require(weight, op, "weight");
    CC_CHECK(weight.shape.ndim == 2, op, ": weight ", weight.shape.str(), " should be [out, in]");
    const int64_t OC = weight.shape[0], C = weight.shape[1], N = dout.shape.rows();
    CC_CHECK(dout.shape.cols() == OC, op, ": dout ", dout.shape.str(), " should have ", OC,
             " columns (weight ", weight.shape.str(), ")");
    if (!dinp.empty()) check_rows(dinp, N, C, op, "dinp");
    if (!dweight.empty()) {
        require(inp, op, "inp");  // only dweight reads the input
        CC_CHECK(dweight.shape == weight.shape, op, ": dweight ", dweight.shape.str(),
                 " differs from weight ", weight.shape.str());
        check_rows(inp, N, C, op, "inp");
    }
    if (!dbias.empty()) check_numel(dbias, OC, op, "dbias");
    linear_backward_kernel(dinp, dweight, dbias, dout, inp, weight);
}

// ---- normalization and activations -----------------------------------------------------------

void Backend::layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight,
                                Tensor bias) {
    const char* op = "layernorm_forward";
    require(inp, op, "inp");
    require(out, op, "out");
    require(weight, op, "weight");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols();
    CC_CHECK(C > 0, op, ": inp ", inp.shape.str(), " has no columns");
    check_rows(out, N, C, op, "out");
    check_numel(weight, C, op, "weight");
    if (!bias.empty()) check_numel(bias, C, op, "bias");
    check_elements(mean, N, op, "mean");
    check_elements(rstd, N, op, "rstd");
    CC_CHECK(mean.dtype == rstd.dtype, op, ": mean and rstd differ in dtype");
    layernorm_forward_kernel(out, mean, rstd, inp, weight, bias);
}

void Backend::layernorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                                 Tensor weight, Tensor mean, Tensor rstd) {
    const char* op = "layernorm_backward";
    require(dout, op, "dout");
    require(inp, op, "inp");
    require(weight, op, "weight");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols();
    check_rows(dout, N, C, op, "dout");
    check_numel(weight, C, op, "weight");
    check_elements(mean, N, op, "mean");
    check_elements(rstd, N, op, "rstd");
    CC_CHECK(mean.dtype == rstd.dtype, op, ": mean and rstd differ in dtype");
    if (!dinp.empty()) check_rows(dinp, N, C, op, "dinp");
    if (!dweight.empty()) check_numel(dweight, C, op, "dweight");
    if (!dbias.empty()) check_numel(dbias, C, op, "dbias");
    layernorm_backward_kernel(dinp, dweight, dbias, dout, inp, weight, mean, rstd);
}

void Backend::activation_forward(Tensor out, Tensor inp, Activation act) {
    const char* op = "activation_forward";
    require(out, op, "out");
    require(inp, op, "inp");
    check_numel(out, inp.numel(), op, "out");
    check_activation(act, op);
    activation_forward_kernel(out, inp, act);
}

void Backend::activation_backward(Tensor dinp, Tensor dout, Tensor inp, Activation act) {
    const char* op = "activation_backward";
    require(dinp, op, "dinp");
    require(dout, op, "dout");
    require(inp, op, "inp");
    const int64_t n = inp.numel();
    check_numel(dinp, n, op, "dinp");
    check_numel(dout, n, op, "dout");
    check_activation(act, op);
    activation_backward_kernel(dinp, dout, inp, act);
}

void Backend::l2_normalize_forward(Tensor out, Tensor norms, Tensor inp) {
    const char* op = "l2_normalize_forward";
    require(out, op, "out");
    require(inp, op, "inp");
    const int64_t N = inp.shape.rows(), D = inp.shape.cols();
    check_rows(out, N, D, op, "out");
    check_elements(norms, N, op, "norms");
    l2_normalize_forward_kernel(out, norms, inp);
}

void Backend::l2_normalize_backward(Tensor dinp, Tensor dout, Tensor out, Tensor norms) {
    const char* op = "l2_normalize_backward";
    require(dinp, op, "dinp");
    require(dout, op, "dout");
    require(out, op, "out");
    const int64_t N = out.shape.rows(), D = out.shape.cols();
    check_rows(dinp, N, D, op, "dinp");
    check_rows(dout, N, D, op, "dout");
    check_elements(norms, N, op, "norms");
    l2_normalize_backward_kernel(dinp, dout, out, norms);
}

// ---- attention -------------------------------------------------------------------------------

void Backend::attention_forward(Tensor out, Tensor stats, Tensor qkv, int n_head, bool causal) {
    const char* op = "attention_forward";
    const QkvDims d = check_qkv(op, qkv, out, n_head);
    check_elements(stats, d.B * n_head * d.T, op, "stats");
    attention_forward_kernel(out, stats, qkv, n_head, causal);
}

void Backend::attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats,
                                 int n_head, bool causal) {
    const char* op = "attention_backward";
    const QkvDims d = check_qkv(op, qkv, out, n_head);
    check_elements(stats, d.B * n_head * d.T, op, "stats");
    require(dqkv, op, "dqkv");
    require(dout, op, "dout");
    CC_CHECK(dqkv.shape == qkv.shape, op, ": dqkv ", dqkv.shape.str(), " differs from qkv ",
             qkv.shape.str());
    CC_CHECK(dout.numel() == out.numel() && dout.shape.cols() == d.C, op, ": dout ",
             dout.shape.str(), " differs from out ", out.shape.str());
    attention_backward_kernel(dqkv, dout, qkv, out, stats, n_head, causal);
}

void Backend::attention_padded_forward(Tensor out, Tensor qkv, Tensor lengths, int n_head) {
    const char* op = "attention_padded_forward";
    const QkvDims d = check_qkv(op, qkv, out, n_head);
    check_dtype(lengths, DType::i32, op, "lengths");
    check_numel(lengths, d.B, op, "lengths");
    // Each length in [1, T]: the kernel checks it (the values live on the device).
    attention_padded_forward_kernel(out, qkv, lengths, n_head);
}

// ---- embeddings and token bookkeeping -------------------------------------------------------

void Backend::embedding_forward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe) {
    const char* op = "embedding_forward";
    check_dtype(tokens, DType::i32, op, "tokens");
    require(out, op, "out");
    require(wte, op, "wte");
    require(wpe, op, "wpe");
    CC_CHECK(tokens.shape.ndim == 2, op, ": tokens ", tokens.shape.str(), " should be [B, T]");
    const int64_t B = tokens.shape[0], T = tokens.shape[1], C = wte.shape.cols();
    CC_CHECK(wpe.shape.cols() == C && wpe.shape.rows() >= T, op, ": wpe ", wpe.shape.str(),
             " should be [>= ", T, ", ", C, "]");
    CC_CHECK(out.numel() == B * T * C && out.shape.cols() == C, op, ": out ", out.shape.str(),
             " should be [", B, ", ", T, ", ", C, "]");
    // Token ids in [0, V): the kernel checks them (the values live on the device).
    embedding_forward_kernel(out, tokens, wte, wpe);
}

void Backend::embedding_backward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens) {
    const char* op = "embedding_backward";
    check_dtype(tokens, DType::i32, op, "tokens");
    require(dout, op, "dout");
    CC_CHECK(tokens.shape.ndim == 2, op, ": tokens ", tokens.shape.str(), " should be [B, T]");
    const int64_t B = tokens.shape[0], T = tokens.shape[1], C = dout.shape.cols();
    CC_CHECK(dout.numel() == B * T * C, op, ": dout ", dout.shape.str(), " should be [", B, ", ",
             T, ", ", C, "]");
    if (!dwte.empty())
        CC_CHECK(dwte.shape.cols() == C, op, ": dwte ", dwte.shape.str(), " should have ", C,
                 " columns");
    if (!dwpe.empty())
        CC_CHECK(dwpe.shape.cols() == C && dwpe.shape.rows() >= T, op, ": dwpe ",
                 dwpe.shape.str(), " should be [>= ", T, ", ", C, "]");
    embedding_backward_kernel(dwte, dwpe, dout, tokens);
}

void Backend::patchify(Tensor out, Tensor images, int patch, const float* mean, const float* std) {
    const char* op = "patchify";
    check_dtype(images, DType::u8, op, "images");
    require(out, op, "out");
    CC_CHECK(images.shape.ndim == 4, op, ": images ", images.shape.str(),
             " should be [B, H, W, Cin]");
    CC_CHECK(mean != nullptr && std != nullptr, op, ": mean and std must be given");
    const int64_t B = images.shape[0], H = images.shape[1], W = images.shape[2];
    const int64_t Cin = images.shape[3], p = patch;
    CC_CHECK(p > 0 && H % p == 0 && W % p == 0, op, ": patch ", p, " does not tile ", H, "x", W);
    const int64_t P = (H / p) * (W / p), K = Cin * p * p;
    CC_CHECK(out.shape.rows() == B * P && out.shape.cols() == K, op, ": out ", out.shape.str(),
             " should be [", B * P, ", ", K, "]");
    for (int64_t c = 0; c < Cin; ++c) CC_CHECK(std[c] != 0.0f, op, ": std[", c, "] is zero");
    patchify_kernel(out, images, patch, mean, std);
}

void Backend::vit_embed_forward(Tensor out, Tensor patches, Tensor cls, Tensor pos) {
    const char* op = "vit_embed_forward";
    require(out, op, "out");
    require(patches, op, "patches");
    require(cls, op, "cls");
    require(pos, op, "pos");
    CC_CHECK(out.shape.ndim == 3, op, ": out ", out.shape.str(), " should be [B, T, C]");
    const int64_t B = out.shape[0], T = out.shape[1], C = out.shape[2];
    CC_CHECK(T >= 1, op, ": out ", out.shape.str(), " has no class token row");
    check_numel(patches, B * (T - 1) * C, op, "patches");
    CC_CHECK(patches.shape.cols() == C, op, ": patches ", patches.shape.str(), " should have ", C,
             " columns");
    check_numel(cls, C, op, "cls");
    check_rows(pos, T, C, op, "pos");
    vit_embed_forward_kernel(out, patches, cls, pos);
}

void Backend::vit_embed_backward(Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout) {
    const char* op = "vit_embed_backward";
    require(dout, op, "dout");
    CC_CHECK(dout.shape.ndim == 3, op, ": dout ", dout.shape.str(), " should be [B, T, C]");
    const int64_t B = dout.shape[0], T = dout.shape[1], C = dout.shape[2];
    CC_CHECK(T >= 1, op, ": dout ", dout.shape.str(), " has no class token row");
    if (!dpatches.empty()) check_numel(dpatches, B * (T - 1) * C, op, "dpatches");
    if (!dcls.empty()) check_numel(dcls, C, op, "dcls");
    if (!dpos.empty()) check_rows(dpos, T, C, op, "dpos");
    vit_embed_backward_kernel(dpatches, dcls, dpos, dout);
}

void Backend::argmax_rows(Tensor idx, Tensor tokens) {
    const char* op = "argmax_rows";
    check_dtype(idx, DType::i32, op, "idx");
    check_dtype(tokens, DType::i32, op, "tokens");
    CC_CHECK(tokens.shape.ndim == 2, op, ": tokens ", tokens.shape.str(), " should be [B, T]");
    const int64_t B = tokens.shape[0], T = tokens.shape[1];
    CC_CHECK(T > 0, op, ": tokens ", tokens.shape.str(), " has empty rows");
    check_numel(idx, B, op, "idx");
    argmax_rows_kernel(idx, tokens);
}

namespace {
// gather_rows and its backward: `full` [B, T, C] (x or dx), `rows` [B, C] (out or dout),
// idx i32 [B]. Each idx in [0, T): the kernel checks it (the values live on the device).
void check_gather(const char* op, const Tensor& full, const char* full_name, const Tensor& rows,
                  const char* rows_name, const Tensor& idx) {
    require(full, op, full_name);
    require(rows, op, rows_name);
    check_dtype(idx, DType::i32, op, "idx");
    CC_CHECK(full.shape.ndim == 3, op, ": ", full_name, " ", full.shape.str(), " should be [B, T, C]");
    const int64_t B = full.shape[0], C = full.shape[2];
    check_numel(idx, B, op, "idx");
    check_rows(rows, B, C, op, rows_name);
}
}  // namespace

void Backend::gather_rows(Tensor out, Tensor x, Tensor idx) {
    check_gather("gather_rows", x, "x", out, "out", idx);
    gather_rows_kernel(out, x, idx);
}

void Backend::gather_rows_backward(Tensor dx, Tensor dout, Tensor idx) {
    check_gather("gather_rows_backward", dx, "dx", dout, "dout", idx);
    gather_rows_backward_kernel(dx, dout, idx);
}

// ---- contrastive losses ----------------------------------------------------------------------

void Backend::softmax_xent_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dots,
                                Tensor logit_scale, int64_t label_offset, float weight) {
    const char* op = "softmax_xent_rows";
    check_loss(op, loss, ddots, dots, logit_scale, label_offset);
    if (!dscale.empty()) check_numel(dscale, 1, op, "dscale");
    softmax_xent_rows_kernel(loss, ddots, dscale, dots, logit_scale, label_offset, weight);
}

void Backend::sigmoid_pairwise_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias,
                                    Tensor dots, Tensor logit_scale, Tensor logit_bias,
                                    int64_t label_offset, float weight) {
    const char* op = "sigmoid_pairwise_rows";
    check_loss(op, loss, ddots, dots, logit_scale, label_offset);
    check_elements(logit_bias, 1, op, "logit_bias");
    if (!dscale.empty()) check_numel(dscale, 1, op, "dscale");
    if (!dbias.empty()) check_numel(dbias, 1, op, "dbias");
    sigmoid_pairwise_rows_kernel(loss, ddots, dscale, dbias, dots, logit_scale, logit_bias,
                                 label_offset, weight);
}

// ---- optimizer ---------------------------------------------------------------------------------

void Backend::adamw_step(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                         float grad_scale) {
    const char* op = "adamw_step";
    require(param, op, "param");
    require(grad, op, "grad");
    require(m, op, "m");
    require(v, op, "v");
    CC_CHECK(grad.dtype == param.dtype, op, ": grad is ", dtype_name(grad.dtype), " but param is ",
             dtype_name(param.dtype));
    CC_CHECK(m.dtype == v.dtype, op, ": m is ", dtype_name(m.dtype), " but v is ", dtype_name(v.dtype));
    const int64_t n = param.numel();
    check_numel(grad, n, op, "grad");
    check_numel(m, n, op, "m");
    check_numel(v, n, op, "v");
    // A master exactly where the parameter is stored narrower than f32 (ParameterSet's rule).
    if (dtype_size(param.dtype) < dtype_size(DType::f32)) {
        CC_CHECK(!master.empty(), op, ": a ", dtype_name(param.dtype),
                 " param needs its f32 master copy (ParameterSet allocates it)");
        CC_CHECK(master.dtype == DType::f32, op, ": master has dtype ", dtype_name(master.dtype), ", expected f32");
        check_numel(master, n, op, "master");
    } else {
        CC_CHECK(master.empty(), op, ": a ", dtype_name(param.dtype), " param has no master copy, got master ",
                 master.shape.str());
    }
    CC_CHECK(hp.step >= 1, op, ": step ", hp.step, " must be >= 1 (bias correction is 1-based)");
    CC_CHECK(hp.beta1 >= 0 && hp.beta1 < 1 && hp.beta2 >= 0 && hp.beta2 < 1, op, ": betas (", hp.beta1, ", ",
             hp.beta2, ") must lie in [0, 1)");
    adamw_step_kernel(param, grad, m, v, master, hp, grad_scale);
}

}  // namespace curaclip
