// Internal to src/cpu/: the CPU kernels behind CpuBackend<T>, one function per
// Backend op, templated over the compute type T (float or double). The kernels of
// the model ops are called by Backend's ops after the contracts every backend shares
// were checked (shapes, i32/u8 dtypes, offsets: backend/op_contracts.cpp; the
// curation kernels likewise by backend/curation_ops.cpp). Each kernel validates what
// is its own (the f32/f64 dtypes, BLAS int limits, index values read from the data)
// with CC_CHECK before touching memory, so no check ever runs inside an OpenMP region.
//
// The kernels are defined in cpu_*.cpp by concern and explicitly instantiated
// there for float and double (CC_CPU_INSTANTIATE).
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/backend.h"
#include "core/check.h"
#include "core/tensor.h"

namespace curaclip::cpu {

template <typename T>
constexpr DType dtype_of() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    return std::is_same_v<T, float> ? DType::f32 : DType::f64;
}

// ---- argument checks shared by the kernels --------------------------------------------
// A non-empty tensor of the compute dtype.
template <typename T>
inline void check_compute(const Tensor& t, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(t.dtype == dtype_of<T>(), op, ": ", what, " has dtype ", dtype_name(t.dtype),
             ", expected the backend's ", dtype_name(dtype_of<T>()));
}
// A non-empty f32 or f64 tensor (accumulators, saved statistics, optimizer moments).
inline void check_f32_or_f64(const Tensor& t, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(t.dtype == DType::f32 || t.dtype == DType::f64, op, ": ", what, " has dtype ",
             dtype_name(t.dtype), ", expected f32 or f64 (bf16 is not supported on the CPU)");
}
inline void check_dtype(const Tensor& t, DType dt, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(t.dtype == dt, op, ": ", what, " has dtype ", dtype_name(t.dtype), ", expected ",
             dtype_name(dt));
}
inline void check_numel(const Tensor& t, int64_t n, const char* op, const char* what) {
    CC_CHECK(t.numel() == n, op, ": ", what, " ", t.shape.str(), " should have ", n, " elements");
}
// Scalars stored as f32 or f64 tensors of one element.
inline double read_scalar(const Tensor& t, const char* op, const char* what) {
    check_f32_or_f64(t, op, what);
    check_numel(t, 1, op, what);
    return t.dtype == DType::f32 ? double(*t.as<float>()) : *t.as<double>();
}
inline void add_scalar(const Tensor& t, double v, const char* op, const char* what) {
    check_f32_or_f64(t, op, what);
    check_numel(t, 1, op, what);
    if (t.dtype == DType::f32) *t.as<float>() += float(v);
    else *t.as<double>() += v;
}

// Calls f(ptr) with the tensor's data as float* or double*.
template <typename F>
inline void with_float_ptr(const Tensor& t, F&& f) {
    if (t.dtype == DType::f32) f(t.as<float>());
    else f(t.as<double>());
}

// ---- kernels --------------------------------------------------------------------------
// cpu_elementwise.cpp (any f32/f64 tensor, not only the compute dtype)
void fill(Tensor x, float value);
void copy(Tensor dst, Tensor src);
void add(Tensor out, Tensor a, Tensor b);
void accumulate(Tensor dst, Tensor src);
void scale(Tensor x, float s);
void sum_squares(Tensor out, Tensor x);
void clamp(Tensor x, float lo, float hi);

// cpu_gemm.cpp
template <typename T>
void matmul(Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b, float alpha, float beta);
template <typename T>
void linear_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias);
template <typename T>
void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                     Tensor weight);
// Row-major C[M,N] = alpha op(A) op(B) + beta C via cblas_sgemm / cblas_dgemm.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// cpu_norm_act.cpp
template <typename T>
void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias);
template <typename T>
void layernorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                        Tensor weight, Tensor mean, Tensor rstd);
template <typename T>
void activation_forward(Tensor out, Tensor inp, Activation act);
template <typename T>
void activation_backward(Tensor dinp, Tensor dout, Tensor inp, Activation act);
template <typename T>
void l2_normalize_forward(Tensor out, Tensor norms, Tensor inp);
template <typename T>
void l2_normalize_backward(Tensor dinp, Tensor dout, Tensor out, Tensor norms);

// cpu_attention.cpp
template <typename T>
void attention_forward(Tensor out, Tensor stats, Tensor qkv, int n_head, bool causal);
template <typename T>
void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                        bool causal);
// cpu_attention_padded.cpp
template <typename T>
void attention_padded_forward(Tensor out, Tensor qkv, Tensor lengths, int n_head);

// cpu_embed.cpp
template <typename T>
void embedding_forward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe);
template <typename T>
void embedding_backward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens);
template <typename T>
void patchify(Tensor out, Tensor images, int patch, const float* mean, const float* std);
template <typename T>
void vit_embed_forward(Tensor out, Tensor patches, Tensor cls, Tensor pos);
template <typename T>
void vit_embed_backward(Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout);
void argmax_rows(Tensor idx, Tensor tokens);
template <typename T>
void gather_rows(Tensor out, Tensor x, Tensor idx);
template <typename T>
void gather_rows_backward(Tensor dx, Tensor dout, Tensor idx);

// cpu_loss.cpp
template <typename T>
void softmax_xent_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dots, Tensor logit_scale,
                       int64_t label_offset, float weight);
template <typename T>
void sigmoid_pairwise_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias, Tensor dots,
                           Tensor logit_scale, Tensor logit_bias, int64_t label_offset, float weight);

// cpu_jest.cpp
template <typename T>
void pairwise_sigmoid_nll(Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias,
                          int64_t label_offset);

// cpu_optim.cpp
template <typename T>
void adamw_step(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                float grad_scale);

// cpu_kmeans.cpp
template <typename T>
void kmeans_assign(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                   Tensor scratch);

}  // namespace curaclip::cpu

// Explicit instantiation of a kernel for float and double; `params` is the
// parenthesized parameter type list.
#define CC_CPU_INSTANTIATE(name, params) \
    template void name<float> params;    \
    template void name<double> params;
