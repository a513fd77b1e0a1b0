// Padding-aware bidirectional attention of the CUDA backend (Backend::attention_padded_forward,
// the BERT-family sentence encoders of src/encoder/): the forward kernel of attention.cu
// without the causal mask and with the key range of row b cut at lengths[b], so padded
// keys get probability exactly 0 (Hugging Face BERT's additive mask of the dtype's
// minimum). One warp per query row, the row of scores in shared memory, fp32 throughout;
// each output element is written by one thread (deterministic). A length outside
// [1, T] (device data, not checked on the host without a round trip) writes nothing for
// that row and sets kErrLengthRange, reported at the next synchronize / download.
#include <cmath>

#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

namespace {

constexpr size_t kSharedLimit = 48 * 1024;  // default dynamic shared memory per block

struct PadDims {
    int B, T, C, NH, hs;
};

__global__ void attn_padded_fwd_kernel(bf16* out, const bf16* qkv, const int32_t* lengths, int* err, PadDims d,
                                       float scale) {
    extern __shared__ float sm[];
    const int wpb = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * wpb + warp, h = blockIdx.y, b = blockIdx.z;
    if (i >= d.T) return;  // whole warps leave; only __syncwarp is used below
    const int len = lengths[b];
    if (len < 1 || len > d.T) {
        if (lane == 0 && i == 0 && h == 0) atomicOr(err, kErrLengthRange);
        return;
    }
    const int hs = d.hs;
    const int64_t C3 = 3 * int64_t(d.C);
    float* qs = sm + size_t(warp) * size_t(hs + d.T);
    float* s = qs + hs;
    const bf16* base = qkv + int64_t(b) * d.T * C3 + int64_t(h) * hs;
    for (int c = lane; c < hs; c += 32) qs[c] = ld(base + int64_t(i) * C3, c);
    __syncwarp();
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
}

}  // namespace

void attention_padded_forward(Context& c, Tensor out, Tensor qkv, Tensor lengths, int n_head) {
    const char* op = "attention_padded_forward";
    check_bf16(qkv, op, "qkv");
    check_bf16(out, op, "out");
    // Shapes, n_head and the lengths' dtype and count: checked by Backend (backend/op_contracts.cpp);
    // here the grid and shared-memory limits (the lengths' values are checked on the device).
    const int64_t B = qkv.shape[0], T = qkv.shape[1], C3 = qkv.shape[2], C = C3 / 3;
    CC_CHECK(B <= 65535 && n_head <= 65535 && T <= (int64_t(1) << 24) && C3 <= (int64_t(1) << 30), op, ": qkv ",
             qkv.shape.str(), " is too large for the attention kernel's grid");
    if (B == 0 || T == 0) return;
    const PadDims d{int(B), int(T), int(C), n_head, int(C / n_head)};
    const size_t per_warp = size_t(d.hs + d.T);
    int wpb = 0;
    for (int w = 4; w >= 1 && wpb == 0; w >>= 1)
        if (size_t(w) * per_warp * sizeof(float) <= kSharedLimit) wpb = w;
    CC_CHECK(wpb > 0, op, ": sequence length ", T, " is too long for the CUDA backend's simple attention kernel "
             "(its per-row scratch exceeds 48 KiB of shared memory)");
    const dim3 grid(unsigned((d.T + wpb - 1) / wpb), unsigned(d.NH), unsigned(d.B));
    const float scale = float(1.0 / std::sqrt(double(d.hs)));
    attn_padded_fwd_kernel<<<grid, 32 * wpb, size_t(wpb) * per_warp * sizeof(float), c.stream>>>(
        out.as<bf16>(), qkv.as<bf16>(), lengths.as<int32_t>(), c.error_flag, d, scale);
    check_launch(op);
}

}  // namespace curaclip::cuda
