#include "model/flexi_resize.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

extern "C" {
// LAPACK (column-major): minimum-norm least squares min ||A X - B|| by SVD.
void dgelsd_(const int* m, const int* n, const int* nrhs, double* a, const int* lda, double* b, const int* ldb,
             double* s, const double* rcond, int* rank, double* work, const int* lwork, int* iwork, int* info);
}

namespace curaclip {

std::vector<double> bilinear_weights_1d(int n_in, int n_out) {
    CC_CHECK(n_in > 0 && n_out > 0, "bilinear resize of ", n_in, " to ", n_out);
    std::vector<double> a(size_t(n_out) * size_t(n_in), 0.0);
    // torch: compute_source_index_and_lambda with align_corners=False, no scale factor.
    const double ratio = double(n_in) / double(n_out);
    for (int i = 0; i < n_out; ++i) {
        int i0 = i, i1 = i;
        double l0 = 1.0, l1 = 0.0;
        if (n_in != n_out) {
            const double src = std::max(ratio * (i + 0.5) - 0.5, 0.0);
            i0 = std::min(int(std::floor(src)), n_in - 1);
            l1 = std::min(std::max(src - i0, 0.0), 1.0);
            i1 = i0 + (i0 < n_in - 1 ? 1 : 0);
            l0 = 1.0 - l1;
        }
        a[size_t(i) * n_in + size_t(i0)] += l0;
        a[size_t(i) * n_in + size_t(i1)] += l1;
    }
    return a;
}

std::vector<double> bilinear_resize_matrix(int n_in, int n_out) {
    const std::vector<double> a = bilinear_weights_1d(n_in, n_out);
    const size_t ni = size_t(n_in), no = size_t(n_out), cols = ni * ni;
    std::vector<double> m(no * no * cols, 0.0);
    for (size_t oy = 0; oy < no; ++oy)
        for (size_t ox = 0; ox < no; ++ox)
            for (size_t iy = 0; iy < ni; ++iy)
                for (size_t ix = 0; ix < ni; ++ix)
                    m[(oy * no + ox) * cols + iy * ni + ix] = a[oy * ni + iy] * a[ox * ni + ix];
    return m;
}

std::vector<double> pseudo_inverse(const std::vector<double>& a, int rows, int cols) {
    CC_CHECK(rows > 0 && cols > 0 && a.size() == size_t(rows) * size_t(cols), "pseudo_inverse of a [", rows, ", ",
             cols, "] matrix given ", a.size(), " values");
    // Solve A X = I (A [m, n] column-major, X [n, m]); X = pinv(A).
    const int m = rows, n = cols, nrhs = rows, lda = m, ldb = std::max(m, n);
    std::vector<double> acm(size_t(m) * size_t(n));
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) acm[size_t(i) + size_t(j) * size_t(m)] = a[size_t(i) * size_t(n) + size_t(j)];
    std::vector<double> b(size_t(ldb) * size_t(nrhs), 0.0);
    for (int i = 0; i < m; ++i) b[size_t(i) + size_t(i) * size_t(ldb)] = 1.0;
    std::vector<double> s(size_t(std::min(m, n)));
    const double rcond = 1e-12;
    int rank = 0, info = 0, lwork = -1;
    double wq = 0.0;
    int iwq = 0;
    dgelsd_(&m, &n, &nrhs, acm.data(), &lda, b.data(), &ldb, s.data(), &rcond, &rank, &wq, &lwork, &iwq, &info);
    CC_CHECK(info == 0, "dgelsd workspace query failed, info ", info);
    lwork = int(wq) + 1;
    std::vector<double> work(static_cast<size_t>(lwork));
    std::vector<int> iwork(size_t(std::max(iwq, 1)));
    dgelsd_(&m, &n, &nrhs, acm.data(), &lda, b.data(), &ldb, s.data(), &rcond, &rank, work.data(), &lwork,
            iwork.data(), &info);
    CC_CHECK(info == 0, "dgelsd (SVD of a [", m, ", ", n, "] matrix) did not converge, info ", info);
    std::vector<double> x(size_t(n) * size_t(m));  // row-major [n, m]
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) x[size_t(i) * size_t(m) + size_t(j)] = b[size_t(i) + size_t(j) * size_t(ldb)];
    return x;
}

std::vector<double> pi_resize_matrix(int p_in, int p_out) {
    const int in2 = p_in * p_in, out2 = p_out * p_out;
    const std::vector<double> b = bilinear_resize_matrix(p_in, p_out);  // [out2, in2]
    std::vector<double> bt(b.size());                                   // Bᵀ [in2, out2]
    for (int i = 0; i < out2; ++i)
        for (int j = 0; j < in2; ++j) bt[size_t(j) * out2 + size_t(i)] = b[size_t(i) * in2 + size_t(j)];
    return pseudo_inverse(bt, in2, out2);  // [out2, in2]
}

}  // namespace curaclip
