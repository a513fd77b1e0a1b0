// Embeddings and token bookkeeping of the CPU backend: token + position
// embedding, image patchify (im2col of u8 HWC images), the ViT class/position
// embedding, end-of-text argmax and row gathers. Shapes and the i32/u8 dtypes are
// checked by Backend (backend/op_contracts.cpp); the index values are checked here,
// on the host, before any parallel loop, so bad data becomes an Error, never a wild write.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/cpu_kernels.h"

namespace curaclip::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;

void check_indices(const int32_t* idx, int64_t n, int64_t limit, const char* op, const char* what) {
    for (int64_t i = 0; i < n; ++i)
        CC_CHECK(idx[i] >= 0 && idx[i] < limit, op, ": ", what, "[", i, "] = ", idx[i],
                 " is outside [0, ", limit, ")");
}
}  // namespace

template <typename T>
void embedding_forward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe) {
    const char* op = "embedding_forward";
    check_compute<T>(out, op, "out");
    check_compute<T>(wte, op, "wte");
    check_compute<T>(wpe, op, "wpe");
    const int64_t B = tokens.shape[0], Tn = tokens.shape[1], C = wte.shape.cols();
    const int64_t V = wte.shape.rows();
    const int32_t* tok = tokens.as<int32_t>();
    check_indices(tok, B * Tn, V, op, "tokens");
    const T* e = wte.as<T>();
    const T* p = wpe.as<T>();
    T* o = out.as<T>();
#pragma omp parallel for schedule(static) if (B * Tn * C > kParallelMin)
    for (int64_t bt = 0; bt < B * Tn; ++bt) {
        const T* er = e + int64_t(tok[bt]) * C;
        const T* pr = p + (bt % Tn) * C;
        T* orow = o + bt * C;
        for (int64_t c = 0; c < C; ++c) orow[c] = er[c] + pr[c];
    }
}

template <typename T>
void embedding_backward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens) {
    const char* op = "embedding_backward";
    check_compute<T>(dout, op, "dout");
    const int64_t B = tokens.shape[0], Tn = tokens.shape[1], C = dout.shape.cols();
    const T* g = dout.as<T>();
    if (!dwte.empty()) {
        check_compute<T>(dwte, op, "dwte");
        const int32_t* tok = tokens.as<int32_t>();
        check_indices(tok, B * Tn, dwte.shape.rows(), op, "tokens");
        // Scatter-add: tasks own blocks of columns and walk the tokens in order, so repeated
        // tokens never race and the sum order is fixed.
        T* dw = dwte.as<T>();
        constexpr int64_t kBlock = 64;
        const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (B * Tn * C > kParallelMin)
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
            for (int64_t bt = 0; bt < B * Tn; ++bt) {
                T* dr = dw + int64_t(tok[bt]) * C;
                const T* gr = g + bt * C;
                for (int64_t c = c0; c < c1; ++c) dr[c] += gr[c];
            }
        }
    }
    if (!dwpe.empty()) {
        check_compute<T>(dwpe, op, "dwpe");
        T* dp = dwpe.as<T>();
#pragma omp parallel for schedule(static) if (B * Tn * C > kParallelMin)
        for (int64_t t = 0; t < Tn; ++t) {
            T* dr = dp + t * C;
            for (int64_t b = 0; b < B; ++b) {
                const T* gr = g + (b * Tn + t) * C;
                for (int64_t c = 0; c < C; ++c) dr[c] += gr[c];
            }
        }
    }
}

template <typename T>
void patchify(Tensor out, Tensor images, int patch, const float* mean, const float* std) {
    check_compute<T>(out, "patchify", "out");
    const int64_t B = images.shape[0], H = images.shape[1], W = images.shape[2];
    const int64_t Cin = images.shape[3], p = patch;
    const int64_t gw = W / p, P = (H / p) * gw, K = Cin * p * p;
    // One lookup table per channel: (u/255 - mean[c]) / std[c] for every u8 value.
    std::vector<T> lut(size_t(Cin) * 256);
    for (int64_t c = 0; c < Cin; ++c)
        for (int u = 0; u < 256; ++u)
            lut[size_t(c * 256 + u)] = T((double(u) / 255.0 - double(mean[c])) / double(std[c]));
    const uint8_t* img = images.as<uint8_t>();
    T* o = out.as<T>();
#pragma omp parallel for schedule(static) if (B * P * K > kParallelMin)
    for (int64_t bp = 0; bp < B * P; ++bp) {
        const int64_t b = bp / P, gy = (bp % P) / gw, gx = bp % gw;
        T* orow = o + bp * K;
        for (int64_t ky = 0; ky < p; ++ky) {
            const uint8_t* src = img + ((b * H + gy * p + ky) * W + gx * p) * Cin;
            for (int64_t kx = 0; kx < p; ++kx)
                for (int64_t c = 0; c < Cin; ++c)
                    orow[c * p * p + ky * p + kx] = lut[size_t(c * 256 + src[kx * Cin + c])];
        }
    }
}

template <typename T>
void vit_embed_forward(Tensor out, Tensor patches, Tensor cls, Tensor pos) {
    const char* op = "vit_embed_forward";
    check_compute<T>(out, op, "out");
    check_compute<T>(patches, op, "patches");
    check_compute<T>(cls, op, "cls");
    check_compute<T>(pos, op, "pos");
    const int64_t B = out.shape[0], Tn = out.shape[1], C = out.shape[2];
    const T* pa = patches.as<T>();
    const T* cl = cls.as<T>();
    const T* po = pos.as<T>();
    T* o = out.as<T>();
#pragma omp parallel for schedule(static) if (B * Tn * C > kParallelMin)
    for (int64_t bt = 0; bt < B * Tn; ++bt) {
        const int64_t b = bt / Tn, t = bt % Tn;
        const T* src = t == 0 ? cl : pa + (b * (Tn - 1) + t - 1) * C;
        const T* pr = po + t * C;
        T* orow = o + bt * C;
        for (int64_t c = 0; c < C; ++c) orow[c] = src[c] + pr[c];
    }
}

template <typename T>
void vit_embed_backward(Tensor dpatches, Tensor dcls, Tensor dpos, Tensor dout) {
    const char* op = "vit_embed_backward";
    check_compute<T>(dout, op, "dout");
    const int64_t B = dout.shape[0], Tn = dout.shape[1], C = dout.shape[2];
    const T* g = dout.as<T>();
    if (!dpatches.empty()) {
        check_compute<T>(dpatches, op, "dpatches");
        T* dp = dpatches.as<T>();
        const int64_t P = Tn - 1;
#pragma omp parallel for schedule(static) if (B * Tn * C > kParallelMin)
        for (int64_t bp = 0; bp < B * P; ++bp) {
            const T* gr = g + ((bp / P) * Tn + 1 + bp % P) * C;
            T* dr = dp + bp * C;
            for (int64_t c = 0; c < C; ++c) dr[c] += gr[c];
        }
    }
    if (!dcls.empty()) {
        check_compute<T>(dcls, op, "dcls");
        T* dc = dcls.as<T>();
        for (int64_t b = 0; b < B; ++b) {
            const T* gr = g + b * Tn * C;
            for (int64_t c = 0; c < C; ++c) dc[c] += gr[c];
        }
    }
    if (!dpos.empty()) {
        check_compute<T>(dpos, op, "dpos");
        T* dp = dpos.as<T>();
#pragma omp parallel for schedule(static) if (B * Tn * C > kParallelMin)
        for (int64_t t = 0; t < Tn; ++t) {
            T* dr = dp + t * C;
            for (int64_t b = 0; b < B; ++b) {
                const T* gr = g + (b * Tn + t) * C;
                for (int64_t c = 0; c < C; ++c) dr[c] += gr[c];
            }
        }
    }
}

void argmax_rows(Tensor idx, Tensor tokens) {
    const int64_t B = tokens.shape[0], Tn = tokens.shape[1];
    const int32_t* tok = tokens.as<int32_t>();
    int32_t* out = idx.as<int32_t>();
    for (int64_t b = 0; b < B; ++b) {
        const int32_t* row = tok + b * Tn;
        int64_t best = 0;
        for (int64_t t = 1; t < Tn; ++t)
            if (row[t] > row[best]) best = t;  // strict: the first maximum wins
        out[b] = int32_t(best);
    }
}

template <typename T>
void gather_rows(Tensor out, Tensor x, Tensor idx) {
    const char* op = "gather_rows";
    check_compute<T>(out, op, "out");
    check_compute<T>(x, op, "x");
    const int64_t B = x.shape[0], Tn = x.shape[1], C = x.shape[2];
    const int32_t* id = idx.as<int32_t>();
    check_indices(id, B, Tn, op, "idx");
    for (int64_t b = 0; b < B; ++b)
        std::memcpy(out.as<T>() + b * C, x.as<T>() + (b * Tn + id[b]) * C, size_t(C) * sizeof(T));
}

template <typename T>
void gather_rows_backward(Tensor dx, Tensor dout, Tensor idx) {
    const char* op = "gather_rows_backward";
    check_compute<T>(dx, op, "dx");
    check_compute<T>(dout, op, "dout");
    const int64_t B = dx.shape[0], Tn = dx.shape[1], C = dx.shape[2];
    const int32_t* id = idx.as<int32_t>();
    check_indices(id, B, Tn, op, "idx");
    for (int64_t b = 0; b < B; ++b) {
        T* dr = dx.as<T>() + (b * Tn + id[b]) * C;
        const T* gr = dout.as<T>() + b * C;
        for (int64_t c = 0; c < C; ++c) dr[c] += gr[c];
    }
}

CC_CPU_INSTANTIATE(embedding_forward, (Tensor, Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(embedding_backward, (Tensor, Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(patchify, (Tensor, Tensor, int, const float*, const float*))
CC_CPU_INSTANTIATE(vit_embed_forward, (Tensor, Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(vit_embed_backward, (Tensor, Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(gather_rows, (Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(gather_rows_backward, (Tensor, Tensor, Tensor))

}  // namespace curaclip::cpu
