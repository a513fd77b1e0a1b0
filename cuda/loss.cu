// Contrastive loss row kernels of the CUDA backend (backend.h): softmax cross-entropy
// (one direction of the CLIP loss) and the SigLIP sigmoid pairwise loss over a block
// of dot products. One block per row, fp32 math; per-row partial sums go to scratch
// and one block adds them in a fixed order (deterministic) to the [1] accumulators
// (loss, dscale, dbias: f32, f64 or bf16 tensors), so nothing leaves the device.
#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }
__device__ __forceinline__ float sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

__global__ void softmax_xent_kernel(bf16* ddots, const bf16* dots, AnyPtr logit_scale, int64_t N,
                                    int64_t label_offset, float w, int want_grad, double* row_loss,
                                    double* row_ds) {
    __shared__ float redf[32];
    const int64_t i = blockIdx.x;
    const bf16* x = dots + i * N;
    const int64_t label = label_offset + i;
    const float s = float(exp(logit_scale.get(0)));
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) mx = fmaxf(mx, s * ld(x, j));
    mx = block_max(mx, redf);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) sum += expf(s * ld(x, j) - mx);
    sum = block_sum(sum, redf);
    const float lse = mx + logf(sum);
    if (threadIdx.x == 0) row_loss[i] = double(lse) - double(s) * double(ld(x, label));
    if (!want_grad) return;
    float ds = 0.0f;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
        const float logit = s * ld(x, j);
        const float q = expf(logit - lse) - (j == label ? 1.0f : 0.0f);
        if (ddots) st(ddots + i * N, j, w * s * q);
        ds += q * logit;
    }
    ds = block_sum(ds, redf);
    if (threadIdx.x == 0) row_ds[i] = double(ds);
}

__global__ void sigmoid_pairwise_kernel(bf16* ddots, const bf16* dots, AnyPtr logit_scale, AnyPtr logit_bias,
                                        int64_t N, int64_t label_offset, float w, double* row_loss,
                                        double* row_ds, double* row_db) {
    __shared__ float redf[32];
    const int64_t i = blockIdx.x;
    const bf16* x = dots + i * N;
    const int64_t label = label_offset + i;
    const float s = float(exp(logit_scale.get(0)));
    const float bias = float(logit_bias.get(0));
    float l = 0.0f, ds = 0.0f, db = 0.0f;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
        const float sd = s * ld(x, j);
        const float z = j == label ? 1.0f : -1.0f;
        const float mzl = -z * (sd + bias);
        l += softplus(mzl);
        const float g = -z * sigmoid(mzl);  // d softplus(-z logit) / d logit
        if (ddots) st(ddots + i * N, j, w * s * g);
        ds += g * sd;
        db += g;
    }
    l = block_sum(l, redf);
    ds = block_sum(ds, redf);
    db = block_sum(db, redf);
    if (threadIdx.x == 0) {
        row_loss[i] = l;
        row_ds[i] = ds;
        row_db[i] = db;
    }
}

// acc[0] += w * sum_i rows[i] (in a fixed order), for each non-null accumulator.
__global__ void add_row_sums(const double* rows, int64_t M, double w, AnyPtr acc) {
    __shared__ double red[32];
    if (!acc.valid()) return;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) s += rows[i];
    s = block_sum(s, red);
    if (threadIdx.x == 0) acc.add(0, w * s);
}

struct LossDims {
    int64_t M, N;
};

// Shapes, label_offset and the [1] scalars were checked by Backend (backend/op_contracts.cpp);
// here the dtypes and the grid limit (one block per row).
LossDims check_loss(const char* op, const Tensor& loss, const Tensor& ddots, const Tensor& dots) {
    check_bf16(dots, op, "dots");
    if (!loss.empty()) check_float(loss, op, "loss");
    if (!ddots.empty()) check_bf16(ddots, op, "ddots");
    const int64_t M = dots.shape.rows(), N = dots.shape.cols();
    CC_CHECK(M <= INT32_MAX, op, ": too many rows (", M, ")");
    return {M, N};
}

void add_rows(Context& c, const double* rows, int64_t M, float w, const Tensor& acc, const char* op) {
    if (acc.empty()) return;
    add_row_sums<<<1, kThreads, 0, c.stream>>>(rows, M, double(w), any_ptr(acc));
    check_launch(op);
}

}  // namespace

void softmax_xent_rows(Context& c, Tensor loss, Tensor ddots, Tensor dscale, Tensor dots, Tensor logit_scale,
                       int64_t label_offset, float weight) {
    const char* op = "softmax_xent_rows";
    const LossDims d = check_loss(op, loss, ddots, dots);
    check_float(logit_scale, op, "logit_scale");
    if (!dscale.empty()) check_float(dscale, op, "dscale");
    if (d.M == 0) return;
    ScratchCarver sc(c.scratch(2 * ScratchCarver::round_up(size_t(d.M) * sizeof(double))));
    double* row_loss = sc.take<double>(size_t(d.M));
    double* row_ds = sc.take<double>(size_t(d.M));
    const bool want_grad = !ddots.empty() || !dscale.empty();
    softmax_xent_kernel<<<unsigned(d.M), kThreads, 0, c.stream>>>(
        ddots.empty() ? nullptr : ddots.as<bf16>(), dots.as<bf16>(), any_ptr(logit_scale), d.N, label_offset, weight,
        want_grad ? 1 : 0, row_loss, row_ds);
    check_launch(op);
    add_rows(c, row_loss, d.M, weight, loss, op);
    add_rows(c, row_ds, d.M, weight, dscale, op);
}

void sigmoid_pairwise_rows(Context& c, Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias, Tensor dots,
                           Tensor logit_scale, Tensor logit_bias, int64_t label_offset, float weight) {
    const char* op = "sigmoid_pairwise_rows";
    const LossDims d = check_loss(op, loss, ddots, dots);
    check_float(logit_scale, op, "logit_scale");
    check_float(logit_bias, op, "logit_bias");
    if (!dscale.empty()) check_float(dscale, op, "dscale");
    if (!dbias.empty()) check_float(dbias, op, "dbias");
    if (d.M == 0) return;
    ScratchCarver sc(c.scratch(3 * ScratchCarver::round_up(size_t(d.M) * sizeof(double))));
    double* row_loss = sc.take<double>(size_t(d.M));
    double* row_ds = sc.take<double>(size_t(d.M));
    double* row_db = sc.take<double>(size_t(d.M));
    sigmoid_pairwise_kernel<<<unsigned(d.M), kThreads, 0, c.stream>>>(
        ddots.empty() ? nullptr : ddots.as<bf16>(), dots.as<bf16>(), any_ptr(logit_scale), any_ptr(logit_bias), d.N,
        label_offset, weight, row_loss, row_ds, row_db);
    check_launch(op);
    add_rows(c, row_loss, d.M, weight, loss, op);
    add_rows(c, row_ds, d.M, weight, dscale, op);
    add_rows(c, row_db, d.M, weight, dbias, op);
}

}  // namespace curaclip::cuda
