// Embeddings and token bookkeeping of the CUDA backend: token + position embedding,
// patchify (u8 HWC images -> normalized patch rows), the ViT class/position
// embedding, end-of-text argmax and row gathers.
//
// Bad indices never cause wild writes: forward kernels skip the element and set a
// bit of the device error flag (an Error at the next synchronize / download);
// embedding_backward reads the token ids on the host (range check + grouping by id,
// so every row of dwte is summed by one thread in a fixed order: deterministic).
#include <algorithm>
#include <vector>

#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void embedding_fwd_kernel(bf16* out, const int32_t* tok, const bf16* wte, const bf16* wpe, int64_t BT,
                                     int64_t T, int64_t C, int64_t V, int* err) {
    CC_GRID_STRIDE(i, BT * C) {
        const int64_t bt = i / C, c = i % C;
        const int32_t id = tok[bt];
        if (id < 0 || id >= V) {
            atomicOr(err, kErrTokenRange);
            continue;
        }
        st(out, i, ld(wte, int64_t(id) * C + c) + ld(wpe, (bt % T) * C + c));
    }
}

// One block row per distinct token id: dwte[id] += sum of dout over its positions, in order.
__global__ void embedding_bwd_wte_kernel(bf16* dwte, const bf16* g, const int32_t* ids, const int32_t* offsets,
                                         const int32_t* positions, int64_t C) {
    const int64_t u = blockIdx.x;
    const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int32_t k = offsets[u]; k < offsets[u + 1]; ++k) s += ld(g, int64_t(positions[k]) * C + c);
    bf16* row = dwte + int64_t(ids[u]) * C;
    st(row, c, ld(row, c) + s);
}

struct PixelNorm {
    float mean[8];
    float std[8];
};

__global__ void patchify_kernel(bf16* out, const uint8_t* img, int64_t B, int64_t H, int64_t W, int64_t Cin,
                                int64_t p, PixelNorm norm) {
    const int64_t gw = W / p, P = (H / p) * gw, K = Cin * p * p;
    CC_GRID_STRIDE(i, B * P * K) {
        const int64_t bp = i / K, k = i % K;
        const int64_t b = bp / P, gy = (bp % P) / gw, gx = bp % gw;
        const int64_t ci = k / (p * p), ky = (k / p) % p, kx = k % p;
        const uint8_t u = img[((b * H + gy * p + ky) * W + gx * p + kx) * Cin + ci];
        const double v = (double(u) / 255.0 - double(norm.mean[ci])) / double(norm.std[ci]);
        st(out, i, float(v));
    }
}

__global__ void vit_fwd_kernel(bf16* out, const bf16* patches, const bf16* cls, const bf16* pos, int64_t B,
                               int64_t T, int64_t C) {
    CC_GRID_STRIDE(i, B * T * C) {
        const int64_t bt = i / C, c = i % C, b = bt / T, t = bt % T;
        const float src = t == 0 ? ld(cls, c) : ld(patches, (b * (T - 1) + t - 1) * C + c);
        st(out, i, src + ld(pos, t * C + c));
    }
}

__global__ void vit_bwd_patches_kernel(bf16* dp, const bf16* g, int64_t B, int64_t T, int64_t C) {
    const int64_t P = T - 1;
    CC_GRID_STRIDE(i, B * P * C) {
        const int64_t bp = i / C, c = i % C;
        st(dp, i, ld(dp, i) + ld(g, ((bp / P) * T + 1 + bp % P) * C + c));
    }
}

__global__ void argmax_kernel(int32_t* idx, const int32_t* tok, int64_t B, int64_t T) {
    CC_GRID_STRIDE(b, B) {
        const int32_t* row = tok + b * T;
        int64_t best = 0;
        for (int64_t t = 1; t < T; ++t)
            if (row[t] > row[best]) best = t;  // strict: the first maximum wins
        idx[b] = int32_t(best);
    }
}

__global__ void gather_kernel(bf16* out, const bf16* x, const int32_t* idx, int64_t B, int64_t T, int64_t C,
                              int* err) {
    CC_GRID_STRIDE(i, B * C) {
        const int64_t b = i / C, c = i % C;
        const int32_t id = idx[b];
        if (id < 0 || id >= T) {
            atomicOr(err, kErrGatherRange);
            continue;
        }
        out[i] = x[(b * T + id) * C + c];
    }
}

__global__ void gather_bwd_kernel(bf16* dx, const bf16* g, const int32_t* idx, int64_t B, int64_t T, int64_t C,
                                  int* err) {
    CC_GRID_STRIDE(i, B * C) {
        const int64_t b = i / C, c = i % C;
        const int32_t id = idx[b];
        if (id < 0 || id >= T) {
            atomicOr(err, kErrGatherRange);
            continue;
        }
        const int64_t o = (b * T + id) * C + c;  // rows of different b never coincide
        st(dx, o, ld(dx, o) + ld(g, i));
    }
}

}  // namespace

void embedding_forward(Context& c, Tensor out, Tensor tokens, Tensor wte, Tensor wpe) {
    const char* op = "embedding_forward";
    check_bf16(out, op, "out");
    check_bf16(wte, op, "wte");
    check_bf16(wpe, op, "wpe");
    const int64_t B = tokens.shape[0], T = tokens.shape[1], C = wte.shape.cols(), V = wte.shape.rows();
    if (B * T * C == 0) return;
    embedding_fwd_kernel<<<grid_for(B * T * C, kThreads), kThreads, 0, c.stream>>>(
        out.as<bf16>(), tokens.as<int32_t>(), wte.as<bf16>(), wpe.as<bf16>(), B * T, T, C, V, c.error_flag);
    check_launch(op);
}

void embedding_backward(Context& c, Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens) {
    const char* op = "embedding_backward";
    check_bf16(dout, op, "dout");
    const int64_t B = tokens.shape[0], T = tokens.shape[1], C = dout.shape.cols();
    if (!dwte.empty()) {
        check_bf16(dwte, op, "dwte");
        CC_CHECK(B * T <= INT32_MAX, op, ": too many tokens");
        const int64_t n = B * T, V = dwte.shape.rows();
        std::vector<int32_t> tok(static_cast<size_t>(n));
        if (n > 0) {
            CC_CUDA_CHECK(cudaMemcpyAsync(tok.data(), tokens.data, size_t(n) * 4, cudaMemcpyDeviceToHost, c.stream));
            CC_CUDA_CHECK(cudaStreamSynchronize(c.stream));
        }
        for (int64_t i = 0; i < n; ++i)
            CC_CHECK(tok[size_t(i)] >= 0 && tok[size_t(i)] < V, op, ": tokens[", i, "] = ", tok[size_t(i)],
                     " is outside [0, ", V, ")");
        // Group positions by token id (stable: positions stay in ascending order).
        std::vector<int32_t> order(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) order[size_t(i)] = int32_t(i);
        std::stable_sort(order.begin(), order.end(),
                         [&](int32_t a, int32_t b) { return tok[size_t(a)] < tok[size_t(b)]; });
        std::vector<int32_t> ids, offsets;
        for (int64_t k = 0; k < n; ++k)
            if (k == 0 || tok[size_t(order[size_t(k)])] != tok[size_t(order[size_t(k - 1)])]) {
                ids.push_back(tok[size_t(order[size_t(k)])]);
                offsets.push_back(int32_t(k));
            }
        offsets.push_back(int32_t(n));
        const int64_t U = int64_t(ids.size());
        if (U > 0 && C > 0) {
            std::vector<int32_t> packed;
            packed.reserve(size_t(2 * U + 1 + n));
            packed.insert(packed.end(), ids.begin(), ids.end());
            packed.insert(packed.end(), offsets.begin(), offsets.end());
            packed.insert(packed.end(), order.begin(), order.end());
            int32_t* dev = static_cast<int32_t*>(c.scratch(packed.size() * 4));
            CC_CUDA_CHECK(cudaMemcpyAsync(dev, packed.data(), packed.size() * 4, cudaMemcpyHostToDevice, c.stream));
            CC_CHECK(U <= INT32_MAX && (C + kThreads - 1) / kThreads <= 65535, op, ": too many ids / columns");
            const dim3 grid(unsigned(U), unsigned((C + kThreads - 1) / kThreads));
            embedding_bwd_wte_kernel<<<grid, kThreads, 0, c.stream>>>(dwte.as<bf16>(), dout.as<bf16>(), dev,
                                                                      dev + U, dev + 2 * U + 1, C);
            check_launch(op);
            // `packed` is pageable host memory: wait for the copy before it goes away.
            CC_CUDA_CHECK(cudaStreamSynchronize(c.stream));
        }
    }
    if (!dwpe.empty()) {
        check_bf16(dwpe, op, "dwpe");
        // dwpe[t, c] += sum_b dout[b, t, c]: column sums of dout viewed as [B, T*C].
        column_sums_add(c, dwpe.data, dout.data, B, T * C, T * C);
    }
}

void patchify(Context& c, Tensor out, Tensor images, int patch, const float* mean, const float* std) {
    const char* op = "patchify";
    check_bf16(out, op, "out");
    // Shapes, the tiling and std != 0: checked by Backend::patchify (backend/op_contracts.cpp).
    const int64_t B = images.shape[0], H = images.shape[1], W = images.shape[2], Cin = images.shape[3], p = patch;
    CC_CHECK(Cin >= 1 && Cin <= 8, op, ": ", Cin, " channels (the CUDA backend takes 1 to 8)");
    const int64_t P = (H / p) * (W / p), K = Cin * p * p;
    PixelNorm norm{};
    for (int64_t ci = 0; ci < Cin; ++ci) {
        norm.mean[ci] = mean[ci];
        norm.std[ci] = std[ci];
    }
    if (B * P * K == 0) return;
    patchify_kernel<<<grid_for(B * P * K, kThreads), kThreads, 0, c.stream>>>(out.as<bf16>(), images.as<uint8_t>(),
                                                                              B, H, W, Cin, p, norm);
    check_launch(op);
}

void vit_embed_forward(Context& c, Tensor out, Tensor patches, Tensor cls, Tensor pos) {
    const char* op = "vit_embed_forward";
    check_bf16(out, op, "out");
    check_bf16(patches, op, "patches");
    check_bf16(cls, op, "cls");
    check_bf16(pos, op, "pos");
    const int64_t B = out.shape[0], T = out.shape[1], C = out.shape[2];
    if (B * T * C == 0) return;
    vit_fwd_kernel<<<grid_for(B * T * C, kThreads), kThreads, 0, c.stream>>>(out.as<bf16>(), patches.as<bf16>(),
                                                                             cls.as<bf16>(), pos.as<bf16>(), B, T, C);
    check_launch(op);
}

void vit_embed_backward(Context& c, Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout) {
    const char* op = "vit_embed_backward";
    check_bf16(dout, op, "dout");
    const int64_t B = dout.shape[0], T = dout.shape[1], C = dout.shape[2];
    if (!dpatches.empty()) {
        check_bf16(dpatches, op, "dpatches");
        if (B * (T - 1) * C > 0) {
            vit_bwd_patches_kernel<<<grid_for(B * (T - 1) * C, kThreads), kThreads, 0, c.stream>>>(
                dpatches.as<bf16>(), dout.as<bf16>(), B, T, C);
            check_launch(op);
        }
    }
    if (!dcls.empty()) {
        check_bf16(dcls, op, "dcls");
        column_sums_add(c, dcls.data, dout.data, B, C, T * C);  // row 0 of every image
    }
    if (!dpos.empty()) {
        check_bf16(dpos, op, "dpos");
        column_sums_add(c, dpos.data, dout.data, B, T * C, T * C);
    }
}

void argmax_rows(Context& c, Tensor idx, Tensor tokens) {
    const char* op = "argmax_rows";
    const int64_t B = tokens.shape[0], T = tokens.shape[1];
    if (B == 0) return;
    argmax_kernel<<<grid_for(B, 128), 128, 0, c.stream>>>(idx.as<int32_t>(), tokens.as<int32_t>(), B, T);
    check_launch(op);
}

void gather_rows(Context& c, Tensor out, Tensor x, Tensor idx) {
    const char* op = "gather_rows";
    check_bf16(out, op, "out");
    check_bf16(x, op, "x");
    const int64_t B = x.shape[0], T = x.shape[1], C = x.shape[2];
    if (B * C == 0) return;
    gather_kernel<<<grid_for(B * C, kThreads), kThreads, 0, c.stream>>>(out.as<bf16>(), x.as<bf16>(),
                                                                        idx.as<int32_t>(), B, T, C, c.error_flag);
    check_launch(op);
}

void gather_rows_backward(Context& c, Tensor dx, Tensor dout, Tensor idx) {
    const char* op = "gather_rows_backward";
    check_bf16(dx, op, "dx");
    check_bf16(dout, op, "dout");
    const int64_t B = dx.shape[0], T = dx.shape[1], C = dx.shape[2];
    if (B * C == 0) return;
    gather_bwd_kernel<<<grid_for(B * C, kThreads), kThreads, 0, c.stream>>>(dx.as<bf16>(), dout.as<bf16>(),
                                                                            idx.as<int32_t>(), B, T, C, c.error_flag);
    check_launch(op);
}

}  // namespace curaclip::cuda
