// Layer norm (eps 1e-5, biased variance, as torch.nn.LayerNorm), GELU (exact erf) and
// QuickGELU (x sigmoid(1.702 x)), and row-wise L2 normalization (F.normalize, eps
// 1e-12) of the CUDA backend. One warp per row for the row ops; statistics in fp32;
// the saved mean / rstd / norms are f32 (or bf16) tensors. Parameter gradients of the
// layer norm are column sums in a fixed order (deterministic, no atomics).
#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;
constexpr float kLayerNormEps = 1e-5f;
constexpr float kL2Eps = 1e-12f;
constexpr float kQuickGeluAlpha = 1.702f;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

unsigned row_blocks(int64_t N) { return unsigned((N + kRowsPerBlock - 1) / kRowsPerBlock); }

__global__ void layernorm_fwd_kernel(bf16* out, AnyPtr mean, AnyPtr rstd, const bf16* x, const bf16* w,
                                     const bf16* b, int64_t N, int64_t C) {
    const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const bf16* xr = x + row * C;
    float s = 0.0f;
    for (int64_t j = lane; j < C; j += 32) s += ld(xr, j);
    const float m = warp_sum(s) / float(C);
    float v = 0.0f;
    for (int64_t j = lane; j < C; j += 32) {
        const float d = ld(xr, j) - m;
        v += d * d;
    }
    const float rs = rsqrtf(warp_sum(v) / float(C) + kLayerNormEps);
    bf16* orow = out + row * C;
    for (int64_t j = lane; j < C; j += 32) {
        const float y = (ld(xr, j) - m) * rs * ld(w, j);
        st(orow, j, b ? y + ld(b, j) : y);
    }
    if (lane == 0) {
        mean.set(row, m);
        rstd.set(row, rs);
    }
}

// dx += rstd (w g - mean(w g) - xhat mean(w g xhat)), per row.
__global__ void layernorm_bwd_dx_kernel(bf16* dx, const bf16* g, const bf16* x, const bf16* w, AnyPtr mean,
                                        AnyPtr rstd, int64_t N, int64_t C) {
    const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const bf16* xr = x + row * C;
    const bf16* gr = g + row * C;
    const float m = float(mean.get(row)), rs = float(rstd.get(row));
    float sdn = 0.0f, sdnx = 0.0f;
    for (int64_t j = lane; j < C; j += 32) {
        const float dn = ld(w, j) * ld(gr, j);
        sdn += dn;
        sdnx += dn * (ld(xr, j) - m) * rs;
    }
    const float a = warp_sum(sdn) / float(C), bb = warp_sum(sdnx) / float(C);
    bf16* dr = dx + row * C;
    for (int64_t j = lane; j < C; j += 32) {
        const float xhat = (ld(xr, j) - m) * rs;
        st(dr, j, ld(dr, j) + (ld(w, j) * ld(gr, j) - a - xhat * bb) * rs);
    }
}

// Partial column sums of xhat * g (-> dweight) and g (-> dbias) over a chunk of rows.
__global__ void layernorm_bwd_dwdb_partial(float* pw, float* pb, const bf16* g, const bf16* x, AnyPtr mean,
                                           AnyPtr rstd, int64_t N, int64_t C) {
    const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t k = blockIdx.y;
    if (j >= C) return;
    const int64_t r0 = k * kColumnChunkRows, r1 = min(N, r0 + kColumnChunkRows);
    float aw = 0.0f, ab = 0.0f;
    for (int64_t r = r0; r < r1; ++r) {
        const float gv = ld(g, r * C + j);
        aw += (ld(x, r * C + j) - float(mean.get(r))) * float(rstd.get(r)) * gv;
        ab += gv;
    }
    pw[k * C + j] = aw;
    pb[k * C + j] = ab;
}

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * kInvSqrt2)); }
__device__ __forceinline__ float gelu_grad(float x) {
    const float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
    return cdf + x * kInvSqrt2Pi * expf(-0.5f * x * x);
}
__device__ __forceinline__ float quick_gelu(float x) { return x / (1.0f + expf(-kQuickGeluAlpha * x)); }
__device__ __forceinline__ float quick_gelu_grad(float x) {
    const float s = 1.0f / (1.0f + expf(-kQuickGeluAlpha * x));
    return s + kQuickGeluAlpha * x * s * (1.0f - s);
}

__global__ void act_fwd_kernel(bf16* y, const bf16* x, int64_t n, int quick) {
    CC_GRID_STRIDE(i, n) {
        const float v = ld(x, i);
        st(y, i, quick ? quick_gelu(v) : gelu(v));
    }
}
__global__ void act_bwd_kernel(bf16* dx, const bf16* g, const bf16* x, int64_t n, int quick) {
    CC_GRID_STRIDE(i, n) {
        const float v = ld(x, i);
        st(dx, i, ld(dx, i) + ld(g, i) * (quick ? quick_gelu_grad(v) : gelu_grad(v)));
    }
}

__global__ void l2_fwd_kernel(bf16* y, AnyPtr norms, const bf16* x, int64_t N, int64_t D) {
    const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const bf16* xr = x + row * D;
    float s = 0.0f;
    for (int64_t j = lane; j < D; j += 32) s += ld(xr, j) * ld(xr, j);
    const float nrm = sqrtf(warp_sum(s));
    const float inv = 1.0f / fmaxf(nrm, kL2Eps);
    for (int64_t j = lane; j < D; j += 32) st(y + row * D, j, ld(xr, j) * inv);
    if (lane == 0) norms.set(row, nrm);
}

__global__ void l2_bwd_kernel(bf16* dx, const bf16* g, const bf16* y, AnyPtr norms, int64_t N, int64_t D) {
    const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const bf16* yr = y + row * D;
    const bf16* gr = g + row * D;
    bf16* dr = dx + row * D;
    const float nrm = float(norms.get(row));
    if (nrm > kL2Eps) {
        float yg = 0.0f;
        for (int64_t j = lane; j < D; j += 32) yg += ld(yr, j) * ld(gr, j);
        yg = warp_sum(yg);
        const float inv = 1.0f / nrm;
        for (int64_t j = lane; j < D; j += 32) st(dr, j, ld(dr, j) + (ld(gr, j) - ld(yr, j) * yg) * inv);
    } else {
        // The norm was clamped to eps (a constant): y = x / eps.
        for (int64_t j = lane; j < D; j += 32) st(dr, j, ld(dr, j) + ld(gr, j) * (1.0f / kL2Eps));
    }
}

}  // namespace

// Shapes, element counts and the activation: checked by Backend's ops
// (backend/op_contracts.cpp); here the bf16 tensors and the f32/bf16 statistics.

void layernorm_forward(Context& c, Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias) {
    const char* op = "layernorm_forward";
    check_bf16(inp, op, "inp");
    check_bf16(out, op, "out");
    check_bf16(weight, op, "weight");
    if (!bias.empty()) check_bf16(bias, op, "bias");
    check_stat(mean, op, "mean");
    check_stat(rstd, op, "rstd");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols();
    if (N == 0) return;
    layernorm_fwd_kernel<<<row_blocks(N), kThreads, 0, c.stream>>>(
        out.as<bf16>(), any_ptr(mean), any_ptr(rstd), inp.as<bf16>(), weight.as<bf16>(),
        bias.empty() ? nullptr : bias.as<bf16>(), N, C);
    check_launch(op);
}

void layernorm_backward(Context& c, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                        Tensor weight, Tensor mean, Tensor rstd) {
    const char* op = "layernorm_backward";
    check_bf16(dout, op, "dout");
    check_bf16(inp, op, "inp");
    check_bf16(weight, op, "weight");
    check_stat(mean, op, "mean");
    check_stat(rstd, op, "rstd");
    if (!dinp.empty()) check_bf16(dinp, op, "dinp");
    if (!dweight.empty()) check_bf16(dweight, op, "dweight");
    if (!dbias.empty()) check_bf16(dbias, op, "dbias");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols();
    if (N == 0 || C == 0) return;
    if (!dinp.empty()) {
        layernorm_bwd_dx_kernel<<<row_blocks(N), kThreads, 0, c.stream>>>(
            dinp.as<bf16>(), dout.as<bf16>(), inp.as<bf16>(), weight.as<bf16>(), any_ptr(mean), any_ptr(rstd), N, C);
        check_launch(op);
    }
    if (!dweight.empty() || !dbias.empty()) {
        const int64_t chunks = (N + kColumnChunkRows - 1) / kColumnChunkRows;
        CC_CHECK(chunks <= 65535, op, ": too many rows (", N, ")");
        const size_t part = ScratchCarver::round_up(size_t(chunks * C) * sizeof(float));
        ScratchCarver sc(c.scratch(2 * part));
        float* pw = sc.take<float>(size_t(chunks * C));
        float* pb = sc.take<float>(size_t(chunks * C));
        const dim3 grid(unsigned((C + kThreads - 1) / kThreads), unsigned(chunks));
        layernorm_bwd_dwdb_partial<<<grid, kThreads, 0, c.stream>>>(pw, pb, dout.as<bf16>(), inp.as<bf16>(),
                                                                   any_ptr(mean), any_ptr(rstd), N, C);
        check_launch(op);
        if (!dweight.empty()) finish_column_partials(c, dweight.data, pw, chunks, C);
        if (!dbias.empty()) finish_column_partials(c, dbias.data, pb, chunks, C);
    }
}

void activation_forward(Context& c, Tensor out, Tensor inp, Activation act) {
    const char* op = "activation_forward";
    check_bf16(out, op, "out");
    check_bf16(inp, op, "inp");
    const int64_t n = inp.numel();
    if (n == 0) return;
    act_fwd_kernel<<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(out.as<bf16>(), inp.as<bf16>(), n,
                                                                     act == Activation::quick_gelu);
    check_launch(op);
}

void activation_backward(Context& c, Tensor dinp, Tensor dout, Tensor inp, Activation act) {
    const char* op = "activation_backward";
    check_bf16(dinp, op, "dinp");
    check_bf16(dout, op, "dout");
    check_bf16(inp, op, "inp");
    const int64_t n = inp.numel();
    if (n == 0) return;
    act_bwd_kernel<<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(dinp.as<bf16>(), dout.as<bf16>(),
                                                                     inp.as<bf16>(), n, act == Activation::quick_gelu);
    check_launch(op);
}

void l2_normalize_forward(Context& c, Tensor out, Tensor norms, Tensor inp) {
    const char* op = "l2_normalize_forward";
    check_bf16(out, op, "out");
    check_bf16(inp, op, "inp");
    check_stat(norms, op, "norms");
    const int64_t N = inp.shape.rows(), D = inp.shape.cols();
    if (N == 0) return;
    l2_fwd_kernel<<<row_blocks(N), kThreads, 0, c.stream>>>(out.as<bf16>(), any_ptr(norms), inp.as<bf16>(), N, D);
    check_launch(op);
}

void l2_normalize_backward(Context& c, Tensor dinp, Tensor dout, Tensor out, Tensor norms) {
    const char* op = "l2_normalize_backward";
    check_bf16(dinp, op, "dinp");
    check_bf16(dout, op, "dout");
    check_bf16(out, op, "out");
    check_stat(norms, op, "norms");
    const int64_t N = out.shape.rows(), D = out.shape.cols();
    if (N == 0) return;
    l2_bwd_kernel<<<row_blocks(N), kThreads, 0, c.stream>>>(dinp.as<bf16>(), dout.as<bf16>(), out.as<bf16>(),
                                                            any_ptr(norms), N, D);
    check_launch(op);
}

}  // namespace curaclip::cuda
