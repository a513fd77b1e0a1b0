// Matrix products of the CPU backend: matmul and linear layers through OpenBLAS
// (cblas_sgemm / cblas_dgemm, multithreaded by OpenBLAS itself).
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>

#include "cpu/cpu_kernels.h"

namespace curaclip::cpu {

namespace {
void check_blas_dim(int64_t v, const char* what) {
    CC_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v, " does not fit a BLAS int");
}
}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    check_blas_dim(M, "M");
    check_blas_dim(N, "N");
    check_blas_dim(K, "K");
    check_blas_dim(lda, "lda");
    check_blas_dim(ldb, "ldb");
    check_blas_dim(ldc, "ldc");
    const auto ta = trans_a ? CblasTrans : CblasNoTrans;
    const auto tb = trans_b ? CblasTrans : CblasNoTrans;
    // BLAS rejects leading dimensions < 1 even for empty operands.
    const int la = int(std::max<int64_t>(lda, 1)), lb = int(std::max<int64_t>(ldb, 1));
    if constexpr (std::is_same_v<T, float>)
        cblas_sgemm(CblasRowMajor, ta, tb, int(M), int(N), int(K), alpha, A, la, B, lb, beta, C,
                    int(ldc));
    else
        cblas_dgemm(CblasRowMajor, ta, tb, int(M), int(N), int(K), alpha, A, la, B, lb, beta, C,
                    int(ldc));
}

template <typename T>
void matmul(Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b, float alpha, float beta) {
    check_compute<T>(out, "matmul", "out");
    check_compute<T>(a, "matmul", "a");
    check_compute<T>(b, "matmul", "b");
    const int64_t ac = a.shape.cols(), bc = b.shape.cols();
    const int64_t M = out.shape.rows(), N = out.shape.cols(), K = trans_a ? a.shape.rows() : ac;
    gemm<T>(trans_a, trans_b, M, N, K, T(alpha), a.as<T>(), ac, b.as<T>(), bc, T(beta), out.as<T>(),
            N);
}

template <typename T>
void linear_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias) {
    check_compute<T>(out, "linear_forward", "out");
    check_compute<T>(inp, "linear_forward", "inp");
    check_compute<T>(weight, "linear_forward", "weight");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols(), OC = weight.shape[0];
    T* o = out.as<T>();
    if (!bias.empty()) {
        check_compute<T>(bias, "linear_forward", "bias");
        const T* b = bias.as<T>();
#pragma omp parallel for schedule(static) if (N * OC > (1 << 15))
        for (int64_t r = 0; r < N; ++r) std::memcpy(o + r * OC, b, size_t(OC) * sizeof(T));
    }
    gemm<T>(false, true, N, OC, C, T(1), inp.as<T>(), C, weight.as<T>(), C,
            bias.empty() ? T(0) : T(1), o, OC);
}

template <typename T>
void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                     Tensor weight) {
    check_compute<T>(dout, "linear_backward", "dout");
    check_compute<T>(weight, "linear_backward", "weight");
    const int64_t OC = weight.shape[0], C = weight.shape[1], N = dout.shape.rows();
    const T* g = dout.as<T>();
    if (!dinp.empty()) {
        check_compute<T>(dinp, "linear_backward", "dinp");
        gemm<T>(false, false, N, C, OC, T(1), g, OC, weight.as<T>(), C, T(1), dinp.as<T>(), C);
    }
    if (!dweight.empty()) {
        check_compute<T>(dweight, "linear_backward", "dweight");
        check_compute<T>(inp, "linear_backward", "inp");
        gemm<T>(true, false, OC, C, N, T(1), g, OC, inp.as<T>(), C, T(1), dweight.as<T>(), C);
    }
    if (!dbias.empty()) {
        check_compute<T>(dbias, "linear_backward", "dbias");
        // Column sums in double: each task owns a block of columns and walks the rows in
        // order, so reads stay contiguous and the result is independent of the thread count.
        constexpr int64_t kBlock = 64;
        const int64_t nblocks = (OC + kBlock - 1) / kBlock;
        T* db = dbias.as<T>();
#pragma omp parallel for schedule(static) if (N * OC > (1 << 14))
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            const int64_t j0 = blk * kBlock, j1 = std::min(OC, j0 + kBlock), w = j1 - j0;
            double acc[kBlock] = {};
            for (int64_t r = 0; r < N; ++r) {
                const T* row = g + r * OC + j0;
                for (int64_t j = 0; j < w; ++j) acc[j] += double(row[j]);
            }
            for (int64_t j = 0; j < w; ++j) db[j0 + j] += T(acc[j]);
        }
    }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);
CC_CPU_INSTANTIATE(matmul, (Tensor, Tensor, Tensor, bool, bool, float, float))
CC_CPU_INSTANTIATE(linear_forward, (Tensor, Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(linear_backward, (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor))

}  // namespace curaclip::cpu
