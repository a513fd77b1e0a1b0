// Contrastive loss row kernels of the CPU backend: softmax cross-entropy (one
// direction of the CLIP loss) and the SigLIP sigmoid pairwise loss over a block
// of dot products. Computed in double, row partials summed in a fixed order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/cpu_kernels.h"

namespace curaclip::cpu {

namespace {

struct LossDims {
    int64_t M, N;
};

// Shapes and label_offset were checked by Backend (backend/op_contracts.cpp); here the
// dtypes, before anything is written.
template <typename T>
LossDims check_loss(const char* op, const Tensor& loss, const Tensor& ddots, const Tensor& dots) {
    check_compute<T>(dots, op, "dots");
    if (!loss.empty()) check_f32_or_f64(loss, op, "loss");
    if (!ddots.empty()) check_compute<T>(ddots, op, "ddots");
    return {dots.shape.rows(), dots.shape.cols()};
}

// softplus(x) = log(1 + e^x), stable for any x.
inline double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }
inline double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
    const double e = std::exp(x);
    return e / (1.0 + e);
}

double sum_in_order(const std::vector<double>& v) {
    double s = 0.0;
    for (double x : v) s += x;
    return s;
}

}  // namespace

template <typename T>
void softmax_xent_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dots, Tensor logit_scale,
                       int64_t label_offset, float weight) {
    const char* op = "softmax_xent_rows";
    const LossDims d = check_loss<T>(op, loss, ddots, dots);
    const double s = std::exp(read_scalar(logit_scale, op, "logit_scale"));
    if (!dscale.empty()) check_f32_or_f64(dscale, op, "dscale");
    const int64_t M = d.M, N = d.N;
    const double w = weight;
    const T* x = dots.as<T>();
    T* dx = ddots.empty() ? nullptr : ddots.as<T>();
    const bool want_ds = !dscale.empty();
    const size_t rows = static_cast<size_t>(M);
    std::vector<double> row_loss(rows), row_ds(rows);
#pragma omp parallel for schedule(static) if (M * N > (1 << 12))
    for (int64_t i = 0; i < M; ++i) {
        const T* xr = x + i * N;
        const int64_t label = label_offset + i;
        double mx = s * double(xr[0]);
        for (int64_t j = 1; j < N; ++j) mx = std::max(mx, s * double(xr[j]));
        double sum = 0.0;
        for (int64_t j = 0; j < N; ++j) sum += std::exp(s * double(xr[j]) - mx);
        const double lse = mx + std::log(sum);
        row_loss[size_t(i)] = lse - s * double(xr[label]);
        if (dx || want_ds) {
            double ds = 0.0;
            for (int64_t j = 0; j < N; ++j) {
                const double logit = s * double(xr[j]);
                const double q = std::exp(logit - lse) - (j == label ? 1.0 : 0.0);
                if (dx) dx[i * N + j] = T(w * s * q);
                ds += q * logit;
            }
            row_ds[size_t(i)] = ds;
        }
    }
    if (!loss.empty()) add_scalar(loss, w * sum_in_order(row_loss), op, "loss");
    if (want_ds) add_scalar(dscale, w * sum_in_order(row_ds), op, "dscale");
}

template <typename T>
void sigmoid_pairwise_rows(Tensor loss, Tensor ddots, Tensor dscale, Tensor dbias, Tensor dots,
                           Tensor logit_scale, Tensor logit_bias, int64_t label_offset,
                           float weight) {
    const char* op = "sigmoid_pairwise_rows";
    const LossDims d = check_loss<T>(op, loss, ddots, dots);
    const double s = std::exp(read_scalar(logit_scale, op, "logit_scale"));
    const double bias = read_scalar(logit_bias, op, "logit_bias");
    if (!dscale.empty()) check_f32_or_f64(dscale, op, "dscale");
    if (!dbias.empty()) check_f32_or_f64(dbias, op, "dbias");
    const int64_t M = d.M, N = d.N;
    const double w = weight;
    const T* x = dots.as<T>();
    T* dx = ddots.empty() ? nullptr : ddots.as<T>();
    const size_t rows = static_cast<size_t>(M);
    std::vector<double> row_loss(rows), row_ds(rows), row_db(rows);
#pragma omp parallel for schedule(static) if (M * N > (1 << 12))
    for (int64_t i = 0; i < M; ++i) {
        const T* xr = x + i * N;
        const int64_t label = label_offset + i;
        double l = 0.0, ds = 0.0, db = 0.0;
        for (int64_t j = 0; j < N; ++j) {
            const double sd = s * double(xr[j]);
            const double z = j == label ? 1.0 : -1.0;
            const double mzl = -z * (sd + bias);
            l += softplus(mzl);
            const double g = -z * sigmoid(mzl);  // d softplus(-z logit) / d logit
            if (dx) dx[i * N + j] = T(w * s * g);
            ds += g * sd;
            db += g;
        }
        row_loss[size_t(i)] = l;
        row_ds[size_t(i)] = ds;
        row_db[size_t(i)] = db;
    }
    if (!loss.empty()) add_scalar(loss, w * sum_in_order(row_loss), op, "loss");
    if (!dscale.empty()) add_scalar(dscale, w * sum_in_order(row_ds), op, "dscale");
    if (!dbias.empty()) add_scalar(dbias, w * sum_in_order(row_db), op, "dbias");
}

CC_CPU_INSTANTIATE(softmax_xent_rows, (Tensor, Tensor, Tensor, Tensor, Tensor, int64_t, float))
CC_CPU_INSTANTIATE(sigmoid_pairwise_rows,
                   (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int64_t, float))

}  // namespace curaclip::cpu
