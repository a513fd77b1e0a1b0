// k-means assignment on the CPU: GEMM (OpenBLAS) of a block of rows against all
// centers, then a per-row argmin (OpenMP over rows).
//
// Row independence (backend.h): OpenBLAS sums a dot product in different orders
// for different block shapes, offsets and thread counts (measured: thousands of
// last-bit differences), so the GEMM only screens: every center whose GEMM value
// is within a rigorous error bound of the best is re-scored by the float64
// distance summed in a fixed order, and that decides (usually one or two
// candidates per row, D flops each). tests/unit/test_kmeans.cpp checks that a
// row gets bitwise the same answer at any offset and block size.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/cpu_kernels.h"

namespace curaclip::cpu {

namespace {

// Index of the smallest csq[k] - 2 dot[k] (ties -> the lowest k); its value in *best_out.
template <typename T>
inline int64_t argmin_row(const T* dot, const T* csq, int64_t K, T* best_out) {
    T best = std::numeric_limits<T>::infinity();
    int64_t arg = 0;
    // Eight independent lanes (each keeps the first minimum of its residue class), then a
    // merge that prefers the lower index on equal values: the same answer as a sequential
    // scan with strict '<', but without its loop-carried dependence.
    constexpr int L = 8;
    if (K >= 2 * L) {
        T lb[L];
        int64_t la[L];
        for (int l = 0; l < L; ++l) {
            lb[l] = csq[l] - T(2) * dot[l];
            la[l] = l;
        }
        int64_t k = L;
        for (; k + L <= K; k += L)
            for (int l = 0; l < L; ++l) {
                const T v = csq[k + l] - T(2) * dot[k + l];
                if (v < lb[l]) {
                    lb[l] = v;
                    la[l] = k + l;
                }
            }
        for (; k < K; ++k) {
            const int l = int(k % L);
            const T v = csq[k] - T(2) * dot[k];
            if (v < lb[l]) {
                lb[l] = v;
                la[l] = k;
            }
        }
        best = lb[0];
        arg = la[0];
        for (int l = 1; l < L; ++l)
            if (lb[l] < best || (lb[l] == best && la[l] < arg)) {
                best = lb[l];
                arg = la[l];
            }
    } else {
        for (int64_t k = 0; k < K; ++k) {
            const T v = csq[k] - T(2) * dot[k];
            if (v < best) {
                best = v;
                arg = k;
            }
        }
    }
    *best_out = best;
    return arg;
}

}  // namespace

template <typename T>
void kmeans_assign(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                   Tensor scratch) {
    const char* op = "kmeans_assign";
    check_dtype(assign, DType::i32, op, "assign");
    check_compute<T>(dist, op, "dist");
    check_compute<T>(x, op, "x");
    check_compute<T>(centers, op, "centers");
    check_compute<T>(center_sq_norms, op, "center_sq_norms");
    check_compute<T>(scratch, op, "scratch");
    const int64_t N = x.shape.rows(), D = x.shape.cols(), K = centers.shape.rows();
    CC_CHECK(K >= 1, op, ": centers ", centers.shape.str(), " hold no center");
    CC_CHECK(K <= std::numeric_limits<int32_t>::max(), op, ": ", K, " centers do not fit i32 ids");
    CC_CHECK(centers.shape.cols() == D, op, ": centers ", centers.shape.str(), " have dimension ",
             centers.shape.cols(), " but the points x ", x.shape.str(), " have ", D);
    check_numel(assign, N, op, "assign");
    check_numel(dist, N, op, "dist");
    check_numel(center_sq_norms, K, op, "center_sq_norms");
    CC_CHECK(scratch.shape.cols() == K && scratch.shape.rows() >= 1, op, ": scratch ",
             scratch.shape.str(), " should be [B, ", K, "] with B >= 1");
    const int64_t B = scratch.shape.rows();
    const T* X = x.as<T>();
    const T* C = centers.as<T>();
    const T* csq = center_sq_norms.as<T>();
    T* S = scratch.as<T>();
    int32_t* A = assign.as<int32_t>();
    T* dd = dist.as<T>();
    // Error bound of v_k = csq_k - 2 x.c_k from the GEMM (|error| <= (D+2) u (2 |x||c| + csq
    // + |v|) with unit roundoff u), doubled for safety.
    double cmax = 0.0, csq_max = 0.0;
    for (int64_t c = 0; c < K; ++c) {
        double s2 = 0.0;
        for (int64_t d = 0; d < D; ++d) s2 += double(C[c * D + d]) * double(C[c * D + d]);
        cmax = std::max(cmax, std::sqrt(s2));
        csq_max = std::max(csq_max, std::fabs(double(csq[c])));
    }
    const double bound_scale = 4.0 * double(D + 4) * double(std::numeric_limits<T>::epsilon());
    // A one-row GEMM may take BLAS's gemv path, which sums in another order than the GEMM
    // micro-kernels: a lone row is computed as the first of a two-row block instead.
    std::vector<T> pad_x, pad_s;
    for (int64_t r0 = 0; r0 < N; r0 += B) {
        const int64_t m = std::min(B, N - r0);
        if (m == 1) {
            pad_x.assign(size_t(2 * D), T(0));
            pad_s.resize(size_t(2 * K));
            std::copy(X + r0 * D, X + (r0 + 1) * D, pad_x.begin());
            gemm<T>(false, true, 2, K, D, T(1), pad_x.data(), D, C, D, T(0), pad_s.data(), K);
            std::copy(pad_s.begin(), pad_s.begin() + K, S);
        } else {
            gemm<T>(false, true, m, K, D, T(1), X + r0 * D, D, C, D, T(0), S, K);
        }
#pragma omp parallel for schedule(static) if (m * K > (1 << 14))
        for (int64_t i = 0; i < m; ++i) {
            const T* row = X + (r0 + i) * D;
            double xsq = 0.0;
            for (int64_t d = 0; d < D; ++d) xsq += double(row[d]) * double(row[d]);
            T best;
            argmin_row<T>(S + i * K, csq, K, &best);
            // Decide among the centers within the GEMM's error bound of the best by the
            // float64 distance, summed in a fixed order: the answer depends on x_i and the
            // centers only (BLAS sums differently for different block shapes and threads).
            const double margin = bound_scale * (2.0 * std::sqrt(xsq) * cmax + csq_max + std::fabs(double(best)));
            const T limit = T(double(best) + margin);
            double exact = std::numeric_limits<double>::infinity();
            int64_t arg = 0;
            const T* dots = S + i * K;
            for (int64_t c = 0; c < K; ++c) {
                if (csq[c] - T(2) * dots[c] > limit) continue;
                const T* cr = C + c * D;
                double e = 0.0;
                for (int64_t d = 0; d < D; ++d) {
                    const double t = double(row[d]) - double(cr[d]);
                    e += t * t;
                }
                if (e < exact) {
                    exact = e;
                    arg = c;
                }
            }
            A[r0 + i] = int32_t(arg);
            dd[r0 + i] = T(exact);
        }
    }
}

CC_CPU_INSTANTIATE(kmeans_assign, (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor))

}  // namespace curaclip::cpu
