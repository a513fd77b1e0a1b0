// Internal to cuda/: the state the CUDA op files share (stream, library handles,
// scratch memory) and the host entry point of every op, one file per concern:
//   elementwise.cu    fill, copy, add, accumulate, scale, clamp, sum_squares, column sums
//   gemm_cublaslt.cu  matmul, linear forward/backward, the generic GEMM helper
//   norm_act.cu       layernorm, GELU / QuickGELU, row-wise L2 normalization
//   attention.cu      multi-head self-attention forward/backward (own kernels)
//   attention_cudnn.cpp  cuDNN fused SDPA forward/backward (frontend graph API), tried first
//   attention_padded.cu  bidirectional attention with key padding (sentence encoders)
//   embed.cu          token/position embedding, patchify, ViT embedding, argmax, gathers
//   loss.cu           softmax cross-entropy and sigmoid pairwise loss row kernels
//   jest_kmeans.cu    pairwise sigmoid NLL matrix (JEST), k-means assignment
//   optim.cu          AdamW with fp32 moments and fp32 master weights
// The model ops are called by Backend's ops after the contracts every backend shares
// were checked (shapes, i32/u8 dtypes, offsets: backend/op_contracts.cpp; the curation
// ops likewise by backend/curation_ops.cpp). Every function checks on the host what is
// its own (the bf16/f32 dtypes, grid and library limits; curaclip::Error on misuse),
// enqueues kernels on ctx.stream and checks the launch. Nothing here synchronizes
// unless it says so. This header is plain C++ (the backend class is compiled by
// the host compiler); device helpers live in cuda_device.cuh.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/backend.h"

namespace curaclip::cuda {

// Bits of the device error flag: kernels that meet bad data (an index out of range)
// skip the write and set a bit; the backend turns it into an Error at the next
// synchronize() / download (a host round trip per op would serialize the stream).
enum ErrorBits : int {
    kErrTokenRange = 1,   // embedding_forward: token id outside [0, V)
    kErrGatherRange = 2,  // gather_rows(_backward): idx outside [0, T)
    kErrLengthRange = 4,  // attention_padded_forward: a length outside [1, T]
};

struct SdpaCache;  // attention_cudnn.cpp

struct Context {
    int device = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    cublasLtHandle_t lt = nullptr;
    void* lt_workspace = nullptr;
    size_t lt_workspace_bytes = 0;
    int* error_flag = nullptr;  // device int, see ErrorBits
    bool use_lt = true;         // CURACLIP_CUDA_NO_LT=1 forces the cublasGemmEx path
    bool use_cudnn_sdpa = true; // CURACLIP_CUDA_NO_CUDNN_SDPA=1 forces the own attention kernels
    bool deterministic_attention = false;  // CURACLIP_CUDA_DETERMINISTIC=1: never cuDNN's atomic backward
    SdpaCache* sdpa = nullptr;          // attention_cudnn.cpp: cuDNN handle, graphs per shape

    // Grow-only device scratch for one op at a time (partial sums, fp32 GEMM output).
    // Valid until the next call; growing synchronizes the stream first.
    void* scratch(size_t bytes);
    void release_scratch();

private:
    void* scratch_ = nullptr;
    size_t scratch_bytes_ = 0;
};

// Carves 256-byte aligned pieces out of one scratch block.
class ScratchCarver {
public:
    explicit ScratchCarver(void* base) : p_(static_cast<char*>(base)) {}
    template <typename T>
    T* take(size_t n) {
        T* r = reinterpret_cast<T*>(p_);
        p_ += round_up(n * sizeof(T));
        return r;
    }
    static size_t round_up(size_t b) { return (b + 255) / 256 * 256; }

private:
    char* p_;
};

// ---- argument checks shared by the op files (host) ---------------------------------------
void check_bf16(const Tensor& t, const char* op, const char* what);     // compute dtype
void check_float(const Tensor& t, const char* op, const char* what);    // f32, f64 or bf16
void check_stat(const Tensor& t, const char* op, const char* what);     // f32 or bf16
void check_dtype(const Tensor& t, DType dt, const char* op, const char* what);
void check_numel(const Tensor& t, int64_t n, const char* op, const char* what);
void check_scalar(const Tensor& t, const char* op, const char* what);   // float [1]
void check_launch(const char* op);  // cudaGetLastError after a launch, naming the op

// ---- elementwise.cu ------------------------------------------------------------------------
void fill(Context& c, Tensor x, float value);
void copy(Context& c, Tensor dst, Tensor src);
void add(Context& c, Tensor out, Tensor a, Tensor b);
void accumulate(Context& c, Tensor dst, Tensor src);
void scale(Context& c, Tensor x, float s);
void clamp(Context& c, Tensor x, float lo, float hi);
void sum_squares(Context& c, Tensor out, Tensor x);
// out[j] += sum over r < rows of in[r * row_stride + j], j < cols (bf16 in/out, fp32 sums
// in a fixed order: deterministic). For bias, position-embedding and class-token gradients.
void column_sums_add(Context& c, void* out_bf16, const void* in_bf16, int64_t rows, int64_t cols,
                     int64_t row_stride);
// out[j] += sum_k partial[k * cols + j] for k < chunks, in order (fp32 partials -> bf16 out).
void finish_column_partials(Context& c, void* out_bf16, const float* partial, int64_t chunks,
                            int64_t cols);
constexpr int64_t kColumnChunkRows = 64;  // rows per partial-sum chunk

// ---- gemm_cublaslt.cu ----------------------------------------------------------------------
// Row-major C[M,N] = alpha op(A) op(B) + beta C with A, B of type ab_type and C of
// type c_type (CUDA_R_16BF or CUDA_R_32F), fp32 accumulation; lda/ldb/ldc are the
// row-major leading dimensions. pedantic: CUBLAS_COMPUTE_32F_PEDANTIC (no reduced-
// precision shortcuts; k-means screening relies on the fp32 error bound).
void gemm_ex(Context& c, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
             const void* A, int64_t lda, const void* B, int64_t ldb, cudaDataType_t ab_type,
             float beta, void* C, int64_t ldc, cudaDataType_t c_type, bool pedantic = false);
void matmul(Context& c, Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b, float alpha,
            float beta);
void linear_forward(Context& c, Tensor out, Tensor inp, Tensor weight, Tensor bias);
void linear_backward(Context& c, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                     Tensor inp, Tensor weight);

// ---- norm_act.cu ---------------------------------------------------------------------------
void layernorm_forward(Context& c, Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight,
                       Tensor bias);
void layernorm_backward(Context& c, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                        Tensor inp, Tensor weight, Tensor mean, Tensor rstd);
void activation_forward(Context& c, Tensor out, Tensor inp, Activation act);
void activation_backward(Context& c, Tensor dinp, Tensor dout, Tensor inp, Activation act);
void l2_normalize_forward(Context& c, Tensor out, Tensor norms, Tensor inp);
void l2_normalize_backward(Context& c, Tensor dinp, Tensor dout, Tensor out, Tensor norms);

// ---- attention.cu --------------------------------------------------------------------------
void attention_forward(Context& c, Tensor out, Tensor stats, Tensor qkv, int n_head, bool causal);
void attention_backward(Context& c, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats,
                        int n_head, bool causal);

// ---- attention_padded.cu -------------------------------------------------------------------
void attention_padded_forward(Context& c, Tensor out, Tensor qkv, Tensor lengths, int n_head);

// ---- attention_cudnn.cpp -------------------------------------------------------------------
// The same ops through cuDNN's fused SDPA; false (nothing enqueued) where cuDNN is not
// built in, switched off, or refuses the shape (decided once per shape, then cached).
bool cudnn_sdpa_forward(Context& c, Tensor out, Tensor stats, Tensor qkv, int B, int T, int NH, int hs,
                        bool causal);
bool cudnn_sdpa_backward(Context& c, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int B, int T,
                         int NH, int hs, bool causal);
void release_sdpa(Context& c);  // frees the handle and graphs (backend destructor)
// Which attention path each shape seen so far took (benchmarks, logs).
std::string sdpa_report(const Context& c);

// ---- embed.cu ------------------------------------------------------------------------------
void embedding_forward(Context& c, Tensor out, Tensor tokens, Tensor wte, Tensor wpe);
// Synchronizes: the token ids are read on the host (range check, grouping by id).
void embedding_backward(Context& c, Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens);
void patchify(Context& c, Tensor out, Tensor images, int patch, const float* mean, const float* std);
void vit_embed_forward(Context& c, Tensor out, Tensor patches, Tensor cls, Tensor pos);
void vit_embed_backward(Context& c, Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout);
void argmax_rows(Context& c, Tensor idx, Tensor tokens);
void gather_rows(Context& c, Tensor out, Tensor x, Tensor idx);
void gather_rows_backward(Context& c, Tensor dx, Tensor dout, Tensor idx);

// ---- loss.cu -------------------------------------------------------------------------------
void softmax_xent_rows(Context& c, Tensor loss, Tensor ddots, Tensor dscale, Tensor dots,
                       Tensor logit_scale, int64_t label_offset, float weight);
void sigmoid_pairwise_rows(Context& c, Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias,
                           Tensor dots, Tensor logit_scale, Tensor logit_bias, int64_t label_offset,
                           float weight);

// ---- jest_kmeans.cu ------------------------------------------------------------------------
void pairwise_sigmoid_nll(Context& c, Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias,
                          int64_t label_offset);
void kmeans_assign(Context& c, Tensor assign, Tensor dist, Tensor x, Tensor centers,
                   Tensor center_sq_norms, Tensor scratch);

// ---- optim.cu ------------------------------------------------------------------------------
// AdamW (backend.h) on param (bf16 or f32) with f32 moments. master: the f32 copy of a
// bf16 param (required there; empty for an f32 param). Where bf16(master) differs from
// param (someone wrote param: a checkpoint load of another run, a clamp, an upload), master
// is re-seeded from param before the update; the updated master is rounded into param.
void adamw_step(Context& c, Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                float grad_scale);

}  // namespace curaclip::cuda
