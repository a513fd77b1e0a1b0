// Multi-head self-attention of the CUDA backend (backend.h semantics: qkv [B,T,3C]
// = q | k | v, head h owns columns [h*hs, (h+1)*hs), scores scaled by 1/sqrt(hs),
// causal masks j > i, stats = row log-sum-exp of the scaled scores).
//
// A simple, exact kernel rather than a fast one: one warp per query row (forward and
// the dQ pass of the backward) or per key row (the dK / dV pass), with the row of
// T scores in shared memory; everything in fp32. Each output element is written by
// exactly one thread, so there are no atomics and results are deterministic. The
// backward recomputes the probabilities from the saved log-sum-exp (as flash/cuDNN
// attention do). Cost O(B NH T^2 hs) with little reuse: fine for CLIP's T <= 257.
//
// cuDNN's fused SDPA (attention_cudnn.cpp) is tried first; these kernels run for the
// shapes cuDNN refuses, when it is switched off (CURACLIP_CUDA_NO_CUDNN_SDPA=1) or not
// built in, and they are the reference the cuDNN path is tested against. Both write
// and read the same stats (natural-log LSE, fp32), so forward and backward may mix.
#include <cmath>

#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

namespace {

constexpr size_t kSharedLimit = 48 * 1024;  // default dynamic shared memory per block

struct Dims {
    int B, T, C, NH, hs;
};

// Warps per block such that per_warp_floats fit the shared-memory limit.
int warps_for(size_t per_warp_floats, const char* op, int T) {
    for (int w = 4; w >= 1; w >>= 1)
        if (size_t(w) * per_warp_floats * sizeof(float) <= kSharedLimit) return w;
    CC_FAIL(op, ": sequence length ", T, " is too long for the CUDA backend's simple attention kernel "
            "(its per-row scratch exceeds 48 KiB of shared memory)");
}

__global__ void attn_fwd_kernel(bf16* out, AnyPtr stats, const bf16* qkv, Dims d, float scale, int causal) {
    extern __shared__ float sm[];
    const int wpb = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * wpb + warp, h = blockIdx.y, b = blockIdx.z;
    if (i >= d.T) return;  // whole warps leave; only __syncwarp is used below
    const int hs = d.hs;
    const int64_t C3 = 3 * int64_t(d.C);
    float* qs = sm + size_t(warp) * size_t(hs + d.T);
    float* s = qs + hs;
    const bf16* base = qkv + int64_t(b) * d.T * C3 + int64_t(h) * hs;
    for (int c = lane; c < hs; c += 32) qs[c] = ld(base + int64_t(i) * C3, c);
    __syncwarp();
    const int len = causal ? i + 1 : d.T;
    float mx = -INFINITY;
    for (int j = lane; j < len; j += 32) {
        const bf16* k = base + int64_t(j) * C3 + d.C;
        float dot = 0.0f;
        for (int c = 0; c < hs; ++c) dot += qs[c] * ld(k, c);
        s[j] = dot * scale;
        mx = fmaxf(mx, s[j]);
    }
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < len; j += 32) {
        const float e = expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    sum = warp_sum(sum);
    __syncwarp();
    const float inv = 1.0f / sum;
    bf16* o = out + (int64_t(b) * d.T + i) * d.C + int64_t(h) * hs;
    for (int c = lane; c < hs; c += 32) {
        float acc = 0.0f;
        for (int j = 0; j < len; ++j) acc += s[j] * ld(base + int64_t(j) * C3 + 2 * d.C, c);
        st(o, c, acc * inv);
    }
    if (lane == 0) stats.set((int64_t(b) * d.NH + h) * d.T + i, double(mx) + double(logf(sum)));
}

// Backward, pass 1 (one warp per query row i): Drow_i = <dO_i, O_i>, then
// dS_ij = P_ij (dO_i . v_j - Drow_i) scale and dQ_i += sum_j dS_ij k_j.
__global__ void attn_bwd_q_kernel(bf16* dqkv, float* drow, const bf16* dout, const bf16* qkv, const bf16* out,
                                  AnyPtr stats, Dims d, float scale, int causal) {
    extern __shared__ float sm[];
    const int wpb = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * wpb + warp, h = blockIdx.y, b = blockIdx.z;
    if (i >= d.T) return;
    const int hs = d.hs;
    const int64_t C3 = 3 * int64_t(d.C);
    float* qs = sm + size_t(warp) * size_t(2 * hs + d.T);
    float* gs = qs + hs;
    float* s = gs + hs;
    const bf16* base = qkv + int64_t(b) * d.T * C3 + int64_t(h) * hs;
    const int64_t orow = (int64_t(b) * d.T + i) * d.C + int64_t(h) * hs;
    float dd = 0.0f;
    for (int c = lane; c < hs; c += 32) {
        qs[c] = ld(base + int64_t(i) * C3, c);
        gs[c] = ld(dout + orow, c);
        dd += gs[c] * ld(out + orow, c);
    }
    dd = warp_sum(dd);
    __syncwarp();
    const int64_t srow = (int64_t(b) * d.NH + h) * d.T + i;
    const float lse = float(stats.get(srow));
    const int len = causal ? i + 1 : d.T;
    for (int j = lane; j < len; j += 32) {
        const bf16* k = base + int64_t(j) * C3 + d.C;
        const bf16* v = base + int64_t(j) * C3 + 2 * d.C;
        float dot = 0.0f, dp = 0.0f;
        for (int c = 0; c < hs; ++c) {
            dot += qs[c] * ld(k, c);
            dp += gs[c] * ld(v, c);
        }
        const float p = expf(dot * scale - lse);
        s[j] = p * (dp - dd) * scale;
    }
    __syncwarp();
    bf16* dq = dqkv + int64_t(b) * d.T * C3 + int64_t(i) * C3 + int64_t(h) * hs;
    for (int c = lane; c < hs; c += 32) {
        float acc = 0.0f;
        for (int j = 0; j < len; ++j) acc += s[j] * ld(base + int64_t(j) * C3 + d.C, c);
        st(dq, c, ld(dq, c) + acc);
    }
    if (lane == 0) drow[srow] = dd;
}

// Backward, pass 2 (one warp per key row j): for every query i that sees j,
// P_ij and dS_ij again; dK_j += sum_i dS_ij q_i, dV_j += sum_i P_ij dO_i.
__global__ void attn_bwd_kv_kernel(bf16* dqkv, const float* drow, const bf16* dout, const bf16* qkv, AnyPtr stats,
                                   Dims d, float scale, int causal) {
    extern __shared__ float sm[];
    const int wpb = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int j = blockIdx.x * wpb + warp, h = blockIdx.y, b = blockIdx.z;
    if (j >= d.T) return;
    const int hs = d.hs;
    const int64_t C3 = 3 * int64_t(d.C);
    float* ks = sm + size_t(warp) * size_t(2 * hs + 2 * d.T);
    float* vs = ks + hs;
    float* P = vs + hs;
    float* dS = P + d.T;
    const bf16* base = qkv + int64_t(b) * d.T * C3 + int64_t(h) * hs;
    for (int c = lane; c < hs; c += 32) {
        ks[c] = ld(base + int64_t(j) * C3 + d.C, c);
        vs[c] = ld(base + int64_t(j) * C3 + 2 * d.C, c);
    }
    __syncwarp();
    const int i0 = causal ? j : 0;
    const int64_t sbase = (int64_t(b) * d.NH + h) * d.T;
    for (int i = i0 + lane; i < d.T; i += 32) {
        const bf16* q = base + int64_t(i) * C3;
        const bf16* g = dout + (int64_t(b) * d.T + i) * d.C + int64_t(h) * hs;
        float dot = 0.0f, dp = 0.0f;
        for (int c = 0; c < hs; ++c) {
            dot += ld(q, c) * ks[c];
            dp += ld(g, c) * vs[c];
        }
        const float p = expf(dot * scale - float(stats.get(sbase + i)));
        P[i] = p;
        dS[i] = p * (dp - drow[sbase + i]) * scale;
    }
    __syncwarp();
    bf16* dk = dqkv + int64_t(b) * d.T * C3 + int64_t(j) * C3 + d.C + int64_t(h) * hs;
    bf16* dv = dk + d.C;
    for (int c = lane; c < hs; c += 32) {
        float ak = 0.0f, av = 0.0f;
        for (int i = i0; i < d.T; ++i) {
            ak += dS[i] * ld(base + int64_t(i) * C3, c);
            av += P[i] * ld(dout + (int64_t(b) * d.T + i) * d.C + int64_t(h) * hs, c);
        }
        st(dk, c, ld(dk, c) + ak);
        st(dv, c, ld(dv, c) + av);
    }
}

// The shapes were checked by Backend (backend/op_contracts.cpp); here the dtypes and
// the limits of the kernels' grid.
Dims check_attention(const char* op, const Tensor& qkv, const Tensor& out, const Tensor& stats, int n_head) {
    check_bf16(qkv, op, "qkv");
    check_bf16(out, op, "out");
    check_stat(stats, op, "stats");
    const int64_t B = qkv.shape[0], T = qkv.shape[1], C3 = qkv.shape[2], C = C3 / 3;
    CC_CHECK(B <= 65535 && n_head <= 65535 && T <= (int64_t(1) << 24) && C3 <= (int64_t(1) << 30), op,
             ": qkv ", qkv.shape.str(), " is too large for the attention kernel's grid");
    return {int(B), int(T), int(C), n_head, int(C / n_head)};
}

}  // namespace

void attention_forward(Context& c, Tensor out, Tensor stats, Tensor qkv, int n_head, bool causal) {
    const char* op = "attention_forward";
    const Dims d = check_attention(op, qkv, out, stats, n_head);
    if (d.B == 0 || d.T == 0) return;
    if (cudnn_sdpa_forward(c, out, stats, qkv, d.B, d.T, d.NH, d.hs, causal)) return;
    const size_t per_warp = size_t(d.hs + d.T);
    const int wpb = warps_for(per_warp, op, d.T);
    const dim3 grid(unsigned((d.T + wpb - 1) / wpb), unsigned(d.NH), unsigned(d.B));
    const float scale = float(1.0 / std::sqrt(double(d.hs)));
    attn_fwd_kernel<<<grid, 32 * wpb, size_t(wpb) * per_warp * sizeof(float), c.stream>>>(
        out.as<bf16>(), any_ptr(stats), qkv.as<bf16>(), d, scale, causal ? 1 : 0);
    check_launch(op);
}

void attention_backward(Context& c, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int n_head,
                        bool causal) {
    const char* op = "attention_backward";
    const Dims d = check_attention(op, qkv, out, stats, n_head);
    check_bf16(dqkv, op, "dqkv");
    check_bf16(dout, op, "dout");
    if (d.B == 0 || d.T == 0) return;
    if (cudnn_sdpa_backward(c, dqkv, dout, qkv, out, stats, d.B, d.T, d.NH, d.hs, causal)) return;
    const float scale = float(1.0 / std::sqrt(double(d.hs)));
    float* drow = static_cast<float*>(c.scratch(size_t(d.B) * d.NH * d.T * sizeof(float)));
    {
        const size_t per_warp = size_t(2 * d.hs + d.T);
        const int wpb = warps_for(per_warp, op, d.T);
        const dim3 grid(unsigned((d.T + wpb - 1) / wpb), unsigned(d.NH), unsigned(d.B));
        attn_bwd_q_kernel<<<grid, 32 * wpb, size_t(wpb) * per_warp * sizeof(float), c.stream>>>(
            dqkv.as<bf16>(), drow, dout.as<bf16>(), qkv.as<bf16>(), out.as<bf16>(), any_ptr(stats), d, scale,
            causal ? 1 : 0);
        check_launch(op);
    }
    {
        const size_t per_warp = size_t(2 * d.hs + 2 * d.T);
        const int wpb = warps_for(per_warp, op, d.T);
        const dim3 grid(unsigned((d.T + wpb - 1) / wpb), unsigned(d.NH), unsigned(d.B));
        attn_bwd_kv_kernel<<<grid, 32 * wpb, size_t(wpb) * per_warp * sizeof(float), c.stream>>>(
            dqkv.as<bf16>(), drow, dout.as<bf16>(), qkv.as<bf16>(), any_ptr(stats), d, scale, causal ? 1 : 0);
        check_launch(op);
    }
}

}  // namespace curaclip::cuda
