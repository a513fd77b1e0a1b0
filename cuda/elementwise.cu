// Elementwise ops and reductions of the CUDA backend, for any float tensor (bf16
// activations, f32 accumulators and statistics, f64 where a caller has them); the
// shared argument checks and the scratch memory of Context; deterministic column sums.
// bf16 and f32 compute in fp32, f64 in fp64. Reductions use a fixed grid and a fixed
// summation order, so results do not vary from run to run.
#include <vector>

#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

// ---- Context scratch and checks --------------------------------------------------------------
void* Context::scratch(size_t bytes) {
    if (bytes == 0) bytes = 256;
    if (bytes > scratch_bytes_) {
        // Queued kernels may still read the old block.
        CC_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (scratch_) CC_CUDA_CHECK(cudaFree(scratch_));
        scratch_ = nullptr;
        scratch_bytes_ = 0;
        const size_t want = std::max(bytes, size_t(1) << 20);
        CC_CUDA_CHECK(cudaMalloc(&scratch_, want));
        scratch_bytes_ = want;
    }
    return scratch_;
}

void Context::release_scratch() {
    if (scratch_) (void)cudaFree(scratch_);
    scratch_ = nullptr;
    scratch_bytes_ = 0;
}

void check_bf16(const Tensor& t, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(t.dtype == DType::bf16, op, ": ", what, " has dtype ", dtype_name(t.dtype),
             ", expected the CUDA backend's bf16");
}
void check_float(const Tensor& t, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(is_float(t.dtype), op, ": ", what, " has dtype ", dtype_name(t.dtype),
             ", expected a float tensor (f32, f64 or bf16)");
}
void check_stat(const Tensor& t, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(t.dtype == DType::f32 || t.dtype == DType::bf16, op, ": ", what, " has dtype ",
             dtype_name(t.dtype), ", expected f32 or bf16");
}
void check_dtype(const Tensor& t, DType dt, const char* op, const char* what) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(t.dtype == dt, op, ": ", what, " has dtype ", dtype_name(t.dtype), ", expected ",
             dtype_name(dt));
}
void check_numel(const Tensor& t, int64_t n, const char* op, const char* what) {
    CC_CHECK(t.numel() == n, op, ": ", what, " ", t.shape.str(), " should have ", n, " elements");
}
void check_scalar(const Tensor& t, const char* op, const char* what) {
    check_float(t, op, what);
    check_numel(t, 1, op, what);
}
void check_launch(const char* op) {
    const cudaError_t e = cudaGetLastError();
    CC_CHECK(e == cudaSuccess, op, ": kernel launch failed: ", cudaGetErrorName(e), ": ",
             cudaGetErrorString(e));
}

// ---- typed elementwise kernels ----------------------------------------------------------------
namespace {

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

__device__ __forceinline__ float ldv(const bf16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ldv(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ double ldv(const double* p, int64_t i) { return p[i]; }
__device__ __forceinline__ void stv(bf16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void stv(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void stv(double* p, int64_t i, double v) { p[i] = v; }

template <typename F>
void dispatch(DType dt, F&& f) {
    switch (dt) {
        case DType::f32: f(float{}); return;
        case DType::f64: f(double{}); return;
        case DType::bf16: f(bf16{}); return;
        default: CC_FAIL("internal: float dispatch on ", dtype_name(dt));
    }
}

template <typename T>
__global__ void fill_kernel(T* x, int64_t n, typename Acc<T>::type v) {
    CC_GRID_STRIDE(i, n) stv(x, i, v);
}
template <typename T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n) {
    CC_GRID_STRIDE(i, n) stv(out, i, ldv(a, i) + ldv(b, i));
}
template <typename T>
__global__ void scale_kernel(T* x, int64_t n, typename Acc<T>::type s) {
    CC_GRID_STRIDE(i, n) stv(x, i, ldv(x, i) * s);
}
template <typename T>
__global__ void clamp_kernel(T* x, int64_t n, typename Acc<T>::type lo, typename Acc<T>::type hi) {
    CC_GRID_STRIDE(i, n) {
        const auto v = ldv(x, i);
        stv(x, i, v < lo ? lo : (v > hi ? hi : v));  // NaN stays NaN, as std::min/max on the CPU
    }
}

constexpr int kThreads = 256;
constexpr int kSumBlocksMax = 1024;

template <typename T>
__global__ void sum_squares_partial(const T* x, int64_t n, double* partial) {
    __shared__ double red[32];
    double s = 0.0;
    CC_GRID_STRIDE(i, n) {
        const double v = double(ldv(x, i));
        s += v * v;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_add(const double* partial, int count, AnyPtr out) {
    __shared__ double red[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = block_sum(s, red);
    if (threadIdx.x == 0) out.add(0, s);
}

__global__ void column_partial_kernel(const bf16* in, int64_t rows, int64_t cols, int64_t stride,
                                      float* partial) {
    const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t k = blockIdx.y;
    if (j >= cols) return;
    const int64_t r0 = k * kColumnChunkRows, r1 = min(rows, r0 + kColumnChunkRows);
    float s = 0.0f;
    for (int64_t r = r0; r < r1; ++r) s += __bfloat162float(in[r * stride + j]);
    partial[k * cols + j] = s;
}

__global__ void finish_partials_kernel(bf16* out, const float* partial, int64_t chunks, int64_t cols) {
    const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + j];
    out[j] = __float2bfloat16_rn(__bfloat162float(out[j]) + s);
}

}  // namespace

// Presence, sizes and matching dtypes of the operands: checked by Backend's ops
// (backend/op_contracts.cpp); here the float dtypes these kernels take.

void fill(Context& c, Tensor x, float value) {
    check_float(x, "fill", "x");
    const int64_t n = x.numel();
    if (n == 0) return;
    dispatch(x.dtype, [&](auto tag) {
        using T = decltype(tag);
        fill_kernel<T><<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(x.as<T>(), n,
                                                                           typename Acc<T>::type(value));
    });
    check_launch("fill");
}

void copy(Context& c, Tensor dst, Tensor src) {
    if (dst.data != src.data && dst.bytes() > 0)
        CC_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.bytes(), cudaMemcpyDeviceToDevice, c.stream));
}

void add(Context& c, Tensor out, Tensor a, Tensor b) {
    check_float(out, "add", "out");
    check_float(a, "add", "a");
    check_float(b, "add", "b");
    const int64_t n = out.numel();
    if (n == 0) return;
    dispatch(out.dtype, [&](auto tag) {
        using T = decltype(tag);
        add_kernel<T><<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(out.as<T>(), a.as<T>(), b.as<T>(), n);
    });
    check_launch("add");
}

void accumulate(Context& c, Tensor dst, Tensor src) {
    check_float(dst, "accumulate", "dst");
    check_float(src, "accumulate", "src");
    add(c, dst, dst, src);
}

void scale(Context& c, Tensor x, float s) {
    check_float(x, "scale", "x");
    const int64_t n = x.numel();
    if (n == 0) return;
    dispatch(x.dtype, [&](auto tag) {
        using T = decltype(tag);
        scale_kernel<T><<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(x.as<T>(), n, typename Acc<T>::type(s));
    });
    check_launch("scale");
}

void clamp(Context& c, Tensor x, float lo, float hi) {
    check_float(x, "clamp", "x");
    const int64_t n = x.numel();
    if (n == 0) return;
    dispatch(x.dtype, [&](auto tag) {
        using T = decltype(tag);
        using A = typename Acc<T>::type;
        clamp_kernel<T><<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(x.as<T>(), n, A(lo), A(hi));
    });
    check_launch("clamp");
}

void sum_squares(Context& c, Tensor out, Tensor x) {
    check_float(x, "sum_squares", "x");  // out: f32 or f64 [1], checked by Backend::sum_squares
    const int64_t n = x.numel();
    if (n == 0) return;
    // The grid depends on n only: the same n always sums in the same order.
    const int blocks = int(std::min<int64_t>(kSumBlocksMax, (n + kThreads * 8 - 1) / (kThreads * 8)));
    double* partial = static_cast<double*>(c.scratch(size_t(blocks) * sizeof(double)));
    dispatch(x.dtype, [&](auto tag) {
        using T = decltype(tag);
        sum_squares_partial<T><<<blocks, kThreads, 0, c.stream>>>(x.as<T>(), n, partial);
    });
    check_launch("sum_squares");
    sum_partials_add<<<1, kThreads, 0, c.stream>>>(partial, blocks, any_ptr(out));
    check_launch("sum_squares");
}

void column_sums_add(Context& c, void* out_bf16, const void* in_bf16, int64_t rows, int64_t cols,
                     int64_t row_stride) {
    if (rows == 0 || cols == 0) return;
    CC_CHECK(row_stride >= cols, "internal: column_sums_add stride ", row_stride, " < cols ", cols);
    const int64_t chunks = (rows + kColumnChunkRows - 1) / kColumnChunkRows;
    CC_CHECK(chunks <= 65535, "column sums over ", rows, " rows: too many rows (at most ",
             65535 * kColumnChunkRows, ")");
    float* partial = static_cast<float*>(c.scratch(size_t(chunks * cols) * sizeof(float)));
    const dim3 grid(unsigned((cols + kThreads - 1) / kThreads), unsigned(chunks));
    column_partial_kernel<<<grid, kThreads, 0, c.stream>>>(static_cast<const bf16*>(in_bf16), rows, cols,
                                                          row_stride, partial);
    check_launch("column sums");
    finish_column_partials(c, out_bf16, partial, chunks, cols);
}

void finish_column_partials(Context& c, void* out_bf16, const float* partial, int64_t chunks,
                            int64_t cols) {
    if (cols == 0) return;
    finish_partials_kernel<<<unsigned((cols + kThreads - 1) / kThreads), kThreads, 0, c.stream>>>(
        static_cast<bf16*>(out_bf16), partial, chunks, cols);
    check_launch("column sums");
}

}  // namespace curaclip::cuda
