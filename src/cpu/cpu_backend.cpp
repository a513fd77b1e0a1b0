// CpuBackend<T>: the Backend interface on the host. Memory and host transfers
// live here; every op forwards to its kernel in cpu_*.cpp (see cpu_kernels.h).
#include "cpu/cpu_backend.h"

#include <cstdlib>
#include <cstring>

#include "backend/curation_ops.h"
#include "backend/registry.h"
#include "cpu/cpu_kernels.h"

namespace curaclip {

namespace {

constexpr size_t kAllocAlign = 64;

template <typename Dst, typename Src>
void convert(Dst* dst, const Src* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) dst[i] = Dst(src[i]);
}

template <typename H>
void upload_float(Tensor dst, const H* src) {
    CC_CHECK(!dst.empty(), "upload: destination tensor is empty");
    CC_CHECK(src != nullptr || dst.numel() == 0, "upload: null host pointer");
    CC_CHECK(dst.dtype == DType::f32 || dst.dtype == DType::f64, "upload: tensor of dtype ",
             dtype_name(dst.dtype),
             " cannot take float host data (i32/u8 tensors use upload_raw; bf16 is not "
             "supported on the CPU)");
    cpu::with_float_ptr(dst, [&](auto* d) { convert(d, src, dst.numel()); });
}

template <typename H>
void download_float(H* dst, Tensor src) {
    CC_CHECK(!src.empty(), "download: source tensor is empty");
    CC_CHECK(dst != nullptr || src.numel() == 0, "download: null host pointer");
    CC_CHECK(src.dtype == DType::f32 || src.dtype == DType::f64, "download: tensor of dtype ",
             dtype_name(src.dtype),
             " cannot give float host data (i32/u8 tensors use download_raw; bf16 is not "
             "supported on the CPU)");
    cpu::with_float_ptr(src, [&](const auto* s) { convert(dst, s, src.numel()); });
}

template <typename T>
class CpuBackend final : public Backend, public CurationOps {
public:
    std::string name() const override { return dtype_of() == DType::f32 ? "cpu" : "cpu-f64"; }
    // Host memory; 2^20-element tiles (two of them, 4 MB each in f32) stay in the cache
    // from the GEMM to the download.
    BackendCapabilities capabilities() const override { return {true, int64_t(1) << 20}; }
    DType dtype() const override { return dtype_of(); }

    // ---- memory ----
    void* alloc(size_t bytes) override {
        // Round up to the alignment (std::aligned_alloc requires a multiple) and never ask for 0.
        const size_t n = (bytes + kAllocAlign - 1) / kAllocAlign * kAllocAlign;
        CC_CHECK(n >= bytes, "cpu alloc: size overflow for ", bytes, " bytes");
        void* p = std::aligned_alloc(kAllocAlign, n == 0 ? kAllocAlign : n);
        if (!p) CC_FAIL("cpu alloc: out of host memory allocating ", bytes, " bytes");
        return p;
    }
    void free(void* p) override { std::free(p); }
    void memset_zero(void* p, size_t bytes) override {
        if (bytes == 0) return;
        CC_CHECK(p != nullptr, "memset_zero: null pointer for ", bytes, " bytes");
        std::memset(p, 0, bytes);
    }
    void upload(Tensor dst, const float* src) override { upload_float(dst, src); }
    void upload(Tensor dst, const double* src) override { upload_float(dst, src); }
    void upload_raw(Tensor dst, const void* src) override {
        CC_CHECK(!dst.empty(), "upload_raw: destination tensor is empty");
        CC_CHECK(src != nullptr || dst.bytes() == 0, "upload_raw: null host pointer");
        if (dst.bytes()) std::memcpy(dst.data, src, dst.bytes());
    }
    void download(float* dst, Tensor src) override { download_float(dst, src); }
    void download(double* dst, Tensor src) override { download_float(dst, src); }
    void download_raw(void* dst, Tensor src) override {
        CC_CHECK(!src.empty(), "download_raw: source tensor is empty");
        CC_CHECK(dst != nullptr || src.bytes() == 0, "download_raw: null host pointer");
        if (src.bytes()) std::memcpy(dst, src.data, src.bytes());
    }
    void synchronize() override {}

    // ---- the curation extension (backend/curation_ops.h) ----
    CurationOps& curation() override { return *this; }

protected:
    void adamw_step_kernel(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                           float grad_scale) override {
        cpu::adamw_step<T>(param, grad, m, v, master, hp, grad_scale);
    }
    void kmeans_assign_kernel(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                              Tensor scratch) override {
        cpu::kmeans_assign<T>(assign, dist, x, centers, center_sq_norms, scratch);
    }
    void pairwise_sigmoid_nll_kernel(Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias,
                                     int64_t label_offset) override {
        cpu::pairwise_sigmoid_nll<T>(nll, dots, logit_scale, logit_bias, label_offset);
    }

    // ---- the model ops' kernels (their shared contracts are checked by Backend's ops,
    // backend/op_contracts.cpp; the kernels in cpu_*.cpp check dtypes and the data) ----
    // elementwise and reductions
    void fill_kernel(Tensor x, float value) override { cpu::fill(x, value); }
    void copy_kernel(Tensor dst, Tensor src) override { cpu::copy(dst, src); }
    void add_kernel(Tensor out, Tensor a, Tensor b) override { cpu::add(out, a, b); }
    void accumulate_kernel(Tensor dst, Tensor src) override { cpu::accumulate(dst, src); }
    void scale_kernel(Tensor x, float s) override { cpu::scale(x, s); }
    void sum_squares_kernel(Tensor out, Tensor x) override { cpu::sum_squares(out, x); }
    void clamp_kernel(Tensor x, float lo, float hi) override { cpu::clamp(x, lo, hi); }

    // matrix products
    void matmul_kernel(Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b, float alpha,
                       float beta) override {
        cpu::matmul<T>(out, a, b, trans_a, trans_b, alpha, beta);
    }
    void linear_forward_kernel(Tensor out, Tensor inp, Tensor weight, Tensor bias) override {
        cpu::linear_forward<T>(out, inp, weight, bias);
    }
    void linear_backward_kernel(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                                Tensor weight) override {
        cpu::linear_backward<T>(dinp, dweight, dbias, dout, inp, weight);
    }

    // normalization and activations
    void layernorm_forward_kernel(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight,
                                  Tensor bias) override {
        cpu::layernorm_forward<T>(out, mean, rstd, inp, weight, bias);
    }
    void layernorm_backward_kernel(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                                   Tensor weight, Tensor mean, Tensor rstd) override {
        cpu::layernorm_backward<T>(dinp, dweight, dbias, dout, inp, weight, mean, rstd);
    }
    void activation_forward_kernel(Tensor out, Tensor inp, Activation act) override {
        cpu::activation_forward<T>(out, inp, act);
    }
    void activation_backward_kernel(Tensor dinp, Tensor dout, Tensor inp, Activation act) override {
        cpu::activation_backward<T>(dinp, dout, inp, act);
    }
    void l2_normalize_forward_kernel(Tensor out, Tensor norms, Tensor inp) override {
        cpu::l2_normalize_forward<T>(out, norms, inp);
    }
    void l2_normalize_backward_kernel(Tensor dinp, Tensor dout, Tensor out, Tensor norms) override {
        cpu::l2_normalize_backward<T>(dinp, dout, out, norms);
    }

    // attention
    void attention_forward_kernel(Tensor out, Tensor stats, Tensor qkv, int n_head,
                                  bool causal) override {
        cpu::attention_forward<T>(out, stats, qkv, n_head, causal);
    }
    void attention_backward_kernel(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats,
                                   int n_head, bool causal) override {
        cpu::attention_backward<T>(dqkv, dout, qkv, out, stats, n_head, causal);
    }
    void attention_padded_forward_kernel(Tensor out, Tensor qkv, Tensor lengths, int n_head) override {
        cpu::attention_padded_forward<T>(out, qkv, lengths, n_head);
    }

    // embeddings and token bookkeeping
    void embedding_forward_kernel(Tensor out, Tensor tokens, Tensor wte, Tensor wpe) override {
        cpu::embedding_forward<T>(out, tokens, wte, wpe);
    }
    void embedding_backward_kernel(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens) override {
        cpu::embedding_backward<T>(dwte, dwpe, dout, tokens);
    }
    void patchify_kernel(Tensor out, Tensor images, int patch, const float* mean,
                         const float* std) override {
        cpu::patchify<T>(out, images, patch, mean, std);
    }
    void vit_embed_forward_kernel(Tensor out, Tensor patches, Tensor cls, Tensor pos) override {
        cpu::vit_embed_forward<T>(out, patches, cls, pos);
    }
    void vit_embed_backward_kernel(Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout) override {
        cpu::vit_embed_backward<T>(dpatches, dcls, dpos, dout);
    }
    void argmax_rows_kernel(Tensor idx, Tensor tokens) override { cpu::argmax_rows(idx, tokens); }
    void gather_rows_kernel(Tensor out, Tensor x, Tensor idx) override {
        cpu::gather_rows<T>(out, x, idx);
    }
    void gather_rows_backward_kernel(Tensor dx, Tensor dout, Tensor idx) override {
        cpu::gather_rows_backward<T>(dx, dout, idx);
    }

    // contrastive losses
    void softmax_xent_rows_kernel(Tensor loss, Tensor ddots, Tensor dscale, Tensor dots,
                                  Tensor logit_scale, int64_t label_offset, float weight) override {
        cpu::softmax_xent_rows<T>(loss, ddots, dscale, dots, logit_scale, label_offset, weight);
    }
    void sigmoid_pairwise_rows_kernel(Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias,
                                      Tensor dots, Tensor logit_scale, Tensor logit_bias,
                                      int64_t label_offset, float weight) override {
        cpu::sigmoid_pairwise_rows<T>(loss, ddots, dscale, dbias, dots, logit_scale, logit_bias,
                                      label_offset, weight);
    }

private:
    static constexpr DType dtype_of() { return cpu::dtype_of<T>(); }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(DType dtype) {
    switch (dtype) {
        case DType::f32: return std::make_unique<CpuBackend<float>>();
        case DType::f64: return std::make_unique<CpuBackend<double>>();
        default:
            CC_FAIL("the CPU backend computes in f32 or f64, not ", dtype_name(dtype),
                    " (bf16 is a CUDA-only compute dtype)");
    }
}

namespace {
// Registered like every backend (backend/registry.h); listed first.
[[maybe_unused]] const bool registered_f32 =
    register_backend({"cpu", [] { return std::string(); }, [] { return make_cpu_backend(DType::f32); }, 0});
[[maybe_unused]] const bool registered_f64 =
    register_backend({"cpu-f64", [] { return std::string(); }, [] { return make_cpu_backend(DType::f64); }, 1});
}  // namespace

}  // namespace curaclip
