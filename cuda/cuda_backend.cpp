// CudaBackend: the Backend interface on one GPU. Memory, host transfers (with
// f32/f64 <-> bf16 conversion on the host) and the device error flag live here;
// every op forwards to its file (cuda_ops.h). The fp32 master weights of the bf16
// parameters are not kept here: they live beside the parameters (Parameter::master,
// src/model/parameters.h) and adamw_step receives them.
#include "cuda/cuda_backend.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "backend/curation_ops.h"
#include "backend/registry.h"
#include "core/bf16.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_ops.h"
#include "cuda/device_info.h"
#include "cuda/sdpa_policy.h"

namespace curaclip::cuda {

namespace {

constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;

class CudaBackend final : public Backend, public CurationOps {
public:
    explicit CudaBackend(int device) {
        CC_CHECK(device_count() > 0, "backend 'cuda': no CUDA device");
        if (device < 0) CC_CUDA_CHECK(cudaGetDevice(&device));
        CC_CUDA_CHECK(cudaSetDevice(device));
        cudaDeviceProp prop{};
        CC_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        CC_CHECK(prop.major >= 8, "backend 'cuda': device ", device, " (", prop.name, ") is sm_", prop.major,
                 prop.minor, "; bf16 needs sm_80 or newer");
        ctx_.device = device;
        CC_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
        CC_CUBLAS_CHECK(cublasCreate(&ctx_.blas));
        CC_CUBLAS_CHECK(cublasSetStream(ctx_.blas, ctx_.stream));
        CC_CUBLAS_CHECK(cublasLtCreate(&ctx_.lt));
        CC_CUDA_CHECK(cudaMalloc(&ctx_.lt_workspace, kLtWorkspaceBytes));
        ctx_.lt_workspace_bytes = kLtWorkspaceBytes;
        CC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ctx_.error_flag), sizeof(int)));
        CC_CUDA_CHECK(cudaMemsetAsync(ctx_.error_flag, 0, sizeof(int), ctx_.stream));
        const char* no_lt = std::getenv("CURACLIP_CUDA_NO_LT");
        ctx_.use_lt = !(no_lt && std::strcmp(no_lt, "1") == 0);
        const SdpaOptions sdpa = sdpa_options_from(std::getenv("CURACLIP_CUDA_NO_CUDNN_SDPA"),
                                                   std::getenv("CURACLIP_CUDA_DETERMINISTIC"));
        ctx_.use_cudnn_sdpa = sdpa.enabled;
        ctx_.deterministic_attention = sdpa.deterministic_only;
        CC_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    ~CudaBackend() override {
        // Destructors do not throw: errors here are ignored (the process is going away
        // or an Error is already in flight).
        (void)cudaSetDevice(ctx_.device);
        (void)cudaStreamSynchronize(ctx_.stream);
        release_sdpa(ctx_);
        ctx_.release_scratch();
        if (ctx_.error_flag) (void)cudaFree(ctx_.error_flag);
        if (ctx_.lt_workspace) (void)cudaFree(ctx_.lt_workspace);
        if (ctx_.lt) (void)cublasLtDestroy(ctx_.lt);
        if (ctx_.blas) (void)cublasDestroy(ctx_.blas);
        if (ctx_.stream) (void)cudaStreamDestroy(ctx_.stream);
    }

    std::string name() const override { return "cuda"; }
    BackendCapabilities capabilities() const override { return {false, 0}; }  // device memory, one tile
    DType dtype() const override { return DType::bf16; }

    cudaStream_t stream() const { return ctx_.stream; }
    int device() const { return ctx_.device; }
    std::string attention_report() const { return sdpa_report(ctx_); }

    // ---- memory ----
    void* alloc(size_t bytes) override {
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            size_t free_b = 0, total_b = 0;
            (void)cudaMemGetInfo(&free_b, &total_b);
            CC_FAIL("cuda alloc: cudaMalloc of ", bytes, " bytes failed (", cudaGetErrorString(e), "); ",
                    free_b >> 20, " MiB free of ", total_b >> 20, " MiB on device ", ctx_.device);
        }
        allocs_[reinterpret_cast<uintptr_t>(p)] = bytes;
        return p;
    }
    void free(void* p) override {
        if (!p) return;
        const uintptr_t a = reinterpret_cast<uintptr_t>(p);
        auto it = allocs_.find(a);
        CC_CHECK(it != allocs_.end(), "cuda free: ", p, " was not allocated by this backend");
        allocs_.erase(it);
        CC_CUDA_CHECK(cudaFree(p));  // synchronizes the device: no queued kernel still uses p
    }
    void memset_zero(void* p, size_t bytes) override {
        if (bytes == 0) return;
        CC_CHECK(p != nullptr, "memset_zero: null pointer for ", bytes, " bytes");
        CC_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, ctx_.stream));
    }
    void upload(Tensor dst, const float* src) override { upload_float(dst, src); }
    void upload(Tensor dst, const double* src) override { upload_float(dst, src); }
    void upload_raw(Tensor dst, const void* src) override {
        CC_CHECK(!dst.empty(), "upload_raw: destination tensor is empty");
        CC_CHECK(src != nullptr || dst.bytes() == 0, "upload_raw: null host pointer");
        to_device(dst.data, src, dst.bytes());
    }
    void download(float* dst, Tensor src) override { download_float(dst, src); }
    void download(double* dst, Tensor src) override { download_float(dst, src); }
    void download_raw(void* dst, Tensor src) override {
        CC_CHECK(!src.empty(), "download_raw: source tensor is empty");
        CC_CHECK(dst != nullptr || src.bytes() == 0, "download_raw: null host pointer");
        to_host(dst, src.data, src.bytes());
        check_error_flag();
    }
    void synchronize() override {
        CC_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        check_error_flag();
    }

    // ---- the curation extension (backend/curation_ops.h) ----
    CurationOps& curation() override { return *this; }

protected:
    void adamw_step_kernel(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                           float grad_scale) override {
        cuda::adamw_step(ctx_, param, grad, m, v, master, hp, grad_scale);
    }
    void pairwise_sigmoid_nll_kernel(Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias,
                                     int64_t label_offset) override {
        cuda::pairwise_sigmoid_nll(ctx_, nll, dots, logit_scale, logit_bias, label_offset);
    }
    void kmeans_assign_kernel(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                              Tensor scratch) override {
        cuda::kmeans_assign(ctx_, assign, dist, x, centers, center_sq_norms, scratch);
    }

    // ---- the model ops' kernels (their shared contracts are checked by Backend's ops,
    // backend/op_contracts.cpp; the op files check bf16/f32 dtypes and device limits) ----
    // elementwise and reductions
    void fill_kernel(Tensor x, float value) override { cuda::fill(ctx_, x, value); }
    void copy_kernel(Tensor dst, Tensor src) override { cuda::copy(ctx_, dst, src); }
    void add_kernel(Tensor out, Tensor a, Tensor b) override { cuda::add(ctx_, out, a, b); }
    void accumulate_kernel(Tensor dst, Tensor src) override { cuda::accumulate(ctx_, dst, src); }
    void scale_kernel(Tensor x, float s) override { cuda::scale(ctx_, x, s); }
    void sum_squares_kernel(Tensor out, Tensor x) override { cuda::sum_squares(ctx_, out, x); }
    void clamp_kernel(Tensor x, float lo, float hi) override { cuda::clamp(ctx_, x, lo, hi); }

    // matrix products
    void matmul_kernel(Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b, float alpha, float beta) override {
        cuda::matmul(ctx_, out, a, b, trans_a, trans_b, alpha, beta);
    }
    void linear_forward_kernel(Tensor out, Tensor inp, Tensor weight, Tensor bias) override {
        cuda::linear_forward(ctx_, out, inp, weight, bias);
    }
    void linear_backward_kernel(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                                Tensor weight) override {
        cuda::linear_backward(ctx_, dinp, dweight, dbias, dout, inp, weight);
    }

    // normalization and activations
    void layernorm_forward_kernel(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight,
                                  Tensor bias) override {
        cuda::layernorm_forward(ctx_, out, mean, rstd, inp, weight, bias);
    }
    void layernorm_backward_kernel(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                                   Tensor mean, Tensor rstd) override {
        cuda::layernorm_backward(ctx_, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
    }
    void activation_forward_kernel(Tensor out, Tensor inp, Activation act) override {
        cuda::activation_forward(ctx_, out, inp, act);
    }
    void activation_backward_kernel(Tensor dinp, Tensor dout, Tensor inp, Activation act) override {
        cuda::activation_backward(ctx_, dinp, dout, inp, act);
    }
    void l2_normalize_forward_kernel(Tensor out, Tensor norms, Tensor inp) override {
        cuda::l2_normalize_forward(ctx_, out, norms, inp);
    }
    void l2_normalize_backward_kernel(Tensor dinp, Tensor dout, Tensor out, Tensor norms) override {
        cuda::l2_normalize_backward(ctx_, dinp, dout, out, norms);
    }

    // attention
    void attention_forward_kernel(Tensor out, Tensor stats, Tensor qkv, int n_head, bool causal) override {
        cuda::attention_forward(ctx_, out, stats, qkv, n_head, causal);
    }
    void attention_backward_kernel(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                                   bool causal) override {
        cuda::attention_backward(ctx_, dqkv, dout, qkv, out, stats, n_head, causal);
    }
    void attention_padded_forward_kernel(Tensor out, Tensor qkv, Tensor lengths, int n_head) override {
        cuda::attention_padded_forward(ctx_, out, qkv, lengths, n_head);
    }

    // embeddings and token bookkeeping
    void embedding_forward_kernel(Tensor out, Tensor tokens, Tensor wte, Tensor wpe) override {
        cuda::embedding_forward(ctx_, out, tokens, wte, wpe);
    }
    void embedding_backward_kernel(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens) override {
        cuda::embedding_backward(ctx_, dwte, dwpe, dout, tokens);
    }
    void patchify_kernel(Tensor out, Tensor images, int patch, const float* mean, const float* std) override {
        cuda::patchify(ctx_, out, images, patch, mean, std);
    }
    void vit_embed_forward_kernel(Tensor out, Tensor patches, Tensor cls, Tensor pos) override {
        cuda::vit_embed_forward(ctx_, out, patches, cls, pos);
    }
    void vit_embed_backward_kernel(Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout) override {
        cuda::vit_embed_backward(ctx_, dpatches, dcls, dpos, dout);
    }
    void argmax_rows_kernel(Tensor idx, Tensor tokens) override { cuda::argmax_rows(ctx_, idx, tokens); }
    void gather_rows_kernel(Tensor out, Tensor x, Tensor idx) override { cuda::gather_rows(ctx_, out, x, idx); }
    void gather_rows_backward_kernel(Tensor dx, Tensor dout, Tensor idx) override {
        cuda::gather_rows_backward(ctx_, dx, dout, idx);
    }

    // contrastive losses
    void softmax_xent_rows_kernel(Tensor loss, Tensor ddots, Tensor dscale, Tensor dots, Tensor logit_scale,
                                  int64_t label_offset, float weight) override {
        cuda::softmax_xent_rows(ctx_, loss, ddots, dscale, dots, logit_scale, label_offset, weight);
    }
    void sigmoid_pairwise_rows_kernel(Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias, Tensor dots,
                                      Tensor logit_scale, Tensor logit_bias, int64_t label_offset,
                                      float weight) override {
        cuda::sigmoid_pairwise_rows(ctx_, loss, ddots, dscale, dbias, dots, logit_scale, logit_bias, label_offset,
                                    weight);
    }

private:
    void to_device(void* dst, const void* src, size_t bytes) {
        if (bytes == 0) return;
        CC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream));
        CC_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));  // src is pageable and may go away
    }
    void to_host(void* dst, const void* src, size_t bytes) {
        if (bytes == 0) return;
        CC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
        CC_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    template <typename H>
    void upload_float(Tensor dst, const H* src) {
        CC_CHECK(!dst.empty(), "upload: destination tensor is empty");
        CC_CHECK(src != nullptr || dst.numel() == 0, "upload: null host pointer");
        const size_t n = size_t(dst.numel());
        switch (dst.dtype) {
            case DType::bf16: {
                std::vector<uint16_t> h(n);
                for (size_t i = 0; i < n; ++i) h[i] = bf16_bits(float(src[i]));
                to_device(dst.data, h.data(), n * 2);
                return;
            }
            case DType::f32: {
                std::vector<float> h(n);
                for (size_t i = 0; i < n; ++i) h[i] = float(src[i]);
                to_device(dst.data, h.data(), n * 4);
                return;
            }
            case DType::f64: {
                std::vector<double> h(n);
                for (size_t i = 0; i < n; ++i) h[i] = double(src[i]);
                to_device(dst.data, h.data(), n * 8);
                return;
            }
            default:
                CC_FAIL("upload: tensor of dtype ", dtype_name(dst.dtype),
                        " cannot take float host data (i32/u8 tensors use upload_raw)");
        }
    }

    template <typename H>
    void download_float(H* dst, Tensor src) {
        CC_CHECK(!src.empty(), "download: source tensor is empty");
        CC_CHECK(dst != nullptr || src.numel() == 0, "download: null host pointer");
        const size_t n = size_t(src.numel());
        switch (src.dtype) {
            case DType::bf16: {
                std::vector<uint16_t> h(n);
                to_host(h.data(), src.data, n * 2);
                for (size_t i = 0; i < n; ++i) dst[i] = H(bf16_to_float(h[i]));
                break;
            }
            case DType::f32: {
                std::vector<float> h(n);
                to_host(h.data(), src.data, n * 4);
                for (size_t i = 0; i < n; ++i) dst[i] = H(h[i]);
                break;
            }
            case DType::f64: {
                std::vector<double> h(n);
                to_host(h.data(), src.data, n * 8);
                for (size_t i = 0; i < n; ++i) dst[i] = H(h[i]);
                break;
            }
            default:
                CC_FAIL("download: tensor of dtype ", dtype_name(src.dtype),
                        " cannot give float host data (i32/u8 tensors use download_raw)");
        }
        check_error_flag();
    }

    // Turns a bad index seen by a kernel into an Error (and clears the flag).
    void check_error_flag() {
        int flag = 0;
        to_host(&flag, ctx_.error_flag, sizeof flag);
        if (flag == 0) return;
        CC_CUDA_CHECK(cudaMemsetAsync(ctx_.error_flag, 0, sizeof(int), ctx_.stream));
        CC_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        std::string what;
        if (flag & kErrTokenRange) what += " embedding_forward: a token id is outside [0, vocab size);";
        if (flag & kErrGatherRange) what += " gather_rows: an index is outside [0, T);";
        if (flag & kErrLengthRange) what += " attention_padded_forward: a length is outside [1, T];";
        CC_FAIL("cuda backend: bad input seen on the device (the affected outputs were not written):", what);
    }

    Context ctx_;
    std::map<uintptr_t, size_t> allocs_;
};

CudaBackend& as_cuda(Backend& backend) {
    auto* be = dynamic_cast<CudaBackend*>(&backend);
    CC_CHECK(be != nullptr, "backend '", backend.name(), "' is not the CUDA backend");
    return *be;
}

}  // namespace

std::string unavailable_reason() {
    if (device_count() == 0) return "no CUDA device";
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return "no CUDA device (cudaGetDevice failed)";
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return "cannot query CUDA device " + std::to_string(dev);
    }
    if (prop.major < 8)
        return "CUDA device " + std::to_string(dev) + " (" + prop.name + ") is sm_" + std::to_string(prop.major) +
               std::to_string(prop.minor) + "; the bf16 backend needs sm_80 or newer";
    return "";
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
    const std::string why = unavailable_reason();
    CC_CHECK(why.empty(), "backend 'cuda' cannot run here: ", why);
    return std::make_unique<CudaBackend>(device);
}

int select_device_for_local_rank(int local_rank) {
    const int n = device_count();
    CC_CHECK(n > 0, "select_device_for_local_rank: no CUDA device");
    CC_CHECK(local_rank >= 0, "select_device_for_local_rank: local rank ", local_rank, " < 0");
    const int dev = local_rank % n;
    CC_CUDA_CHECK(cudaSetDevice(dev));
    return dev;
}

cudaStream_t stream_of(Backend& backend) { return as_cuda(backend).stream(); }
int device_of(Backend& backend) { return as_cuda(backend).device(); }
std::string attention_report(Backend& backend) { return as_cuda(backend).attention_report(); }

namespace {
[[maybe_unused]] const bool registered = register_backend({"cuda", [] { return unavailable_reason(); },
                                          [] { return make_cuda_backend(-1); }});
}  // namespace

}  // namespace curaclip::cuda
