// Layer norm, activations (GELU, QuickGELU) and row-wise L2 normalization of the
// CPU backend. Row statistics are accumulated in double.
#include <algorithm>
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "core/host_math.h"

namespace curaclip::cpu {

using namespace curaclip::host;  // fast_exp, fast_erf, parallel_chunks (core/host_math.h)

namespace {

constexpr double kLayerNormEps = 1e-5;
constexpr double kL2Eps = 1e-12;
constexpr int64_t kParallelMin = 1 << 14;

// Saved row statistics are f32 or the compute dtype; calls f(S*) with the right type.
template <typename T, typename F>
void with_stat_ptr(const Tensor& t, const char* op, const char* what, F&& f) {
    CC_CHECK(!t.empty(), op, ": ", what, " is empty");
    CC_CHECK(t.dtype == DType::f32 || t.dtype == dtype_of<T>(), op, ": ", what, " has dtype ",
             dtype_name(t.dtype), ", expected f32 or ", dtype_name(dtype_of<T>()));
    if (t.dtype == DType::f32) f(t.as<float>());
    else f(t.as<T>());
}

}  // namespace

template <typename T>
void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight,
                       Tensor bias) {
    const char* op = "layernorm_forward";
    check_compute<T>(inp, op, "inp");
    check_compute<T>(out, op, "out");
    check_compute<T>(weight, op, "weight");
    if (!bias.empty()) check_compute<T>(bias, op, "bias");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols();
    const T* x = inp.as<T>();
    const T* w = weight.as<T>();
    const T* b = bias.empty() ? nullptr : bias.as<T>();
    T* o = out.as<T>();
    with_stat_ptr<T>(mean, op, "mean", [&](auto* mp) {
        using S = std::remove_pointer_t<decltype(mp)>;
        S* rp = rstd.as<S>();
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
        for (int64_t r = 0; r < N; ++r) {
            const T* xr = x + r * C;
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < C; ++j) s += double(xr[j]);
            const double m = s / double(C);
            double v = 0.0;
#pragma omp simd reduction(+ : v)
            for (int64_t j = 0; j < C; ++j) {
                const double d = double(xr[j]) - m;
                v += d * d;
            }
            const double rs = 1.0 / std::sqrt(v / double(C) + kLayerNormEps);
            mp[r] = S(m);
            rp[r] = S(rs);
            const T mt = T(m), rt = T(rs);
            T* orow = o + r * C;
            if (b) {
                for (int64_t j = 0; j < C; ++j) orow[j] = (xr[j] - mt) * rt * w[j] + b[j];
            } else {
                for (int64_t j = 0; j < C; ++j) orow[j] = (xr[j] - mt) * rt * w[j];
            }
        }
    });
}

template <typename T>
void layernorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                        Tensor weight, Tensor mean, Tensor rstd) {
    const char* op = "layernorm_backward";
    check_compute<T>(dout, op, "dout");
    check_compute<T>(inp, op, "inp");
    check_compute<T>(weight, op, "weight");
    if (!dinp.empty()) check_compute<T>(dinp, op, "dinp");
    if (!dweight.empty()) check_compute<T>(dweight, op, "dweight");
    if (!dbias.empty()) check_compute<T>(dbias, op, "dbias");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols();
    const T* x = inp.as<T>();
    const T* g = dout.as<T>();
    const T* w = weight.as<T>();
    with_stat_ptr<T>(mean, op, "mean", [&](const auto* mp) {
        using S = std::remove_const_t<std::remove_pointer_t<decltype(mp)>>;
        const S* rp = rstd.as<S>();
        if (!dinp.empty()) {
            T* dx = dinp.as<T>();
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
            for (int64_t r = 0; r < N; ++r) {
                const T* xr = x + r * C;
                const T* gr = g + r * C;
                const T m = T(mp[r]), rs = T(rp[r]);
                // dx = rstd * (dn - mean(dn) - xhat * mean(dn * xhat)), dn = w * dout.
                double sdn = 0.0, sdnx = 0.0;
#pragma omp simd reduction(+ : sdn, sdnx)
                for (int64_t j = 0; j < C; ++j) {
                    const double dn = double(w[j]) * double(gr[j]);
                    sdn += dn;
                    sdnx += dn * double((xr[j] - m) * rs);
                }
                const T a = T(sdn / double(C)), bb = T(sdnx / double(C));
                T* dxr = dx + r * C;
                for (int64_t j = 0; j < C; ++j) {
                    const T xhat = (xr[j] - m) * rs;
                    dxr[j] += (w[j] * gr[j] - a - xhat * bb) * rs;
                }
            }
        }
        if (!dweight.empty() || !dbias.empty()) {
            // Column sums over rows in double, one block of columns per task (deterministic).
            constexpr int64_t kBlock = 64;
            const int64_t nblocks = (C + kBlock - 1) / kBlock;
            T* dw = dweight.empty() ? nullptr : dweight.as<T>();
            T* db = dbias.empty() ? nullptr : dbias.as<T>();
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
            for (int64_t blk = 0; blk < nblocks; ++blk) {
                const int64_t j0 = blk * kBlock, w_ = std::min(C, j0 + kBlock) - j0;
                double aw[kBlock] = {}, ab[kBlock] = {};
                for (int64_t r = 0; r < N; ++r) {
                    const T* xr = x + r * C + j0;
                    const T* gr = g + r * C + j0;
                    const T m = T(mp[r]), rs = T(rp[r]);
                    for (int64_t j = 0; j < w_; ++j) {
                        aw[j] += double((xr[j] - m) * rs) * double(gr[j]);
                        ab[j] += double(gr[j]);
                    }
                }
                if (dw)
                    for (int64_t j = 0; j < w_; ++j) dw[j0 + j] += T(aw[j]);
                if (db)
                    for (int64_t j = 0; j < w_; ++j) db[j0 + j] += T(ab[j]);
            }
        }
    });
}

namespace {
constexpr double kQuickGeluAlpha = 1.702;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// Element loops over [0, n). GELU is x Phi(x); d/dx = Phi(x) + x phi(x).
// QuickGELU is x s(ax); d/dx = s + a x s (1 - s). Backward adds into dx.
template <typename T>
inline void gelu_fwd(T* y, const T* x, int64_t n) {
    const T c = T(kInvSqrt2);
    for (int64_t i = 0; i < n; ++i) y[i] = T(0.5) * x[i] * (T(1) + k_erf(x[i] * c));
}
template <typename T>
inline void gelu_bwd(T* dx, const T* g, const T* x, int64_t n) {
    const T c = T(kInvSqrt2), k = T(kInvSqrt2Pi);
    for (int64_t i = 0; i < n; ++i) {
        const T xi = x[i];
        const T cdf = T(0.5) * (T(1) + k_erf(xi * c));
        const T pdf = k * k_exp(T(-0.5) * xi * xi);
        dx[i] += g[i] * (cdf + xi * pdf);
    }
}
template <typename T>
inline void quick_gelu_fwd(T* y, const T* x, int64_t n) {
    const T a = T(kQuickGeluAlpha);
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (T(1) + k_exp(-a * x[i]));
}
template <typename T>
inline void quick_gelu_bwd(T* dx, const T* g, const T* x, int64_t n) {
    const T a = T(kQuickGeluAlpha);
    for (int64_t i = 0; i < n; ++i) {
        const T xi = x[i];
        const T s = T(1) / (T(1) + k_exp(-a * xi));
        dx[i] += g[i] * (s + a * xi * s * (T(1) - s));
    }
}
// float versions cloned for wide vector units (the double reference stays generic).
CC_VECTOR_CLONES void gelu_fwd_f32(float* y, const float* x, int64_t n) { gelu_fwd(y, x, n); }
CC_VECTOR_CLONES void gelu_bwd_f32(float* dx, const float* g, const float* x, int64_t n) {
    gelu_bwd(dx, g, x, n);
}
CC_VECTOR_CLONES void quick_gelu_fwd_f32(float* y, const float* x, int64_t n) { quick_gelu_fwd(y, x, n); }
CC_VECTOR_CLONES void quick_gelu_bwd_f32(float* dx, const float* g, const float* x, int64_t n) {
    quick_gelu_bwd(dx, g, x, n);
}
void act_fwd(float* y, const float* x, int64_t n, Activation act) {
    if (act == Activation::gelu) gelu_fwd_f32(y, x, n);
    else quick_gelu_fwd_f32(y, x, n);
}
void act_fwd(double* y, const double* x, int64_t n, Activation act) {
    if (act == Activation::gelu) gelu_fwd(y, x, n);
    else quick_gelu_fwd(y, x, n);
}
void act_bwd(float* dx, const float* g, const float* x, int64_t n, Activation act) {
    if (act == Activation::gelu) gelu_bwd_f32(dx, g, x, n);
    else quick_gelu_bwd_f32(dx, g, x, n);
}
void act_bwd(double* dx, const double* g, const double* x, int64_t n, Activation act) {
    if (act == Activation::gelu) gelu_bwd(dx, g, x, n);
    else quick_gelu_bwd(dx, g, x, n);
}
}  // namespace

template <typename T>
void activation_forward(Tensor out, Tensor inp, Activation act) {
    const char* op = "activation_forward";
    check_compute<T>(out, op, "out");
    check_compute<T>(inp, op, "inp");
    const T* x = inp.as<T>();
    T* y = out.as<T>();
    parallel_chunks(inp.numel(), kParallelMin,
                    [&](int64_t b, int64_t e) { act_fwd(y + b, x + b, e - b, act); });
}

template <typename T>
void activation_backward(Tensor dinp, Tensor dout, Tensor inp, Activation act) {
    const char* op = "activation_backward";
    check_compute<T>(dinp, op, "dinp");
    check_compute<T>(dout, op, "dout");
    check_compute<T>(inp, op, "inp");
    const int64_t n = inp.numel();
    const T* x = inp.as<T>();
    const T* g = dout.as<T>();
    T* dx = dinp.as<T>();
    parallel_chunks(n, kParallelMin,
                    [&](int64_t b, int64_t e) { act_bwd(dx + b, g + b, x + b, e - b, act); });
}

template <typename T>
void l2_normalize_forward(Tensor out, Tensor norms, Tensor inp) {
    const char* op = "l2_normalize_forward";
    check_compute<T>(out, op, "out");
    check_compute<T>(inp, op, "inp");
    const int64_t N = inp.shape.rows(), D = inp.shape.cols();
    const T* x = inp.as<T>();
    T* y = out.as<T>();
    with_stat_ptr<T>(norms, op, "norms", [&](auto* np) {
        using S = std::remove_pointer_t<decltype(np)>;
#pragma omp parallel for schedule(static) if (N * D > kParallelMin)
        for (int64_t r = 0; r < N; ++r) {
            const T* xr = x + r * D;
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < D; ++j) s += double(xr[j]) * double(xr[j]);
            const double nrm = std::sqrt(s);
            np[r] = S(nrm);
            const T inv = T(1.0 / std::max(nrm, kL2Eps));
            T* yr = y + r * D;
            for (int64_t j = 0; j < D; ++j) yr[j] = xr[j] * inv;
        }
    });
}

template <typename T>
void l2_normalize_backward(Tensor dinp, Tensor dout, Tensor out, Tensor norms) {
    const char* op = "l2_normalize_backward";
    check_compute<T>(dinp, op, "dinp");
    check_compute<T>(dout, op, "dout");
    check_compute<T>(out, op, "out");
    const int64_t N = out.shape.rows(), D = out.shape.cols();
    const T* y = out.as<T>();
    const T* g = dout.as<T>();
    T* dx = dinp.as<T>();
    with_stat_ptr<T>(norms, op, "norms", [&](const auto* np) {
#pragma omp parallel for schedule(static) if (N * D > kParallelMin)
        for (int64_t r = 0; r < N; ++r) {
            const T* yr = y + r * D;
            const T* gr = g + r * D;
            T* dxr = dx + r * D;
            const double nrm = double(np[r]);
            if (nrm > kL2Eps) {
                // y = x / |x|: dx = (g - y <y, g>) / |x|
                double yg = 0.0;
#pragma omp simd reduction(+ : yg)
                for (int64_t j = 0; j < D; ++j) yg += double(yr[j]) * double(gr[j]);
                const T ygt = T(yg), inv = T(1.0 / nrm);
                for (int64_t j = 0; j < D; ++j) dxr[j] += (gr[j] - yr[j] * ygt) * inv;
            } else {
                // The norm is clamped to eps (a constant): y = x / eps.
                const T inv = T(1.0 / kL2Eps);
                for (int64_t j = 0; j < D; ++j) dxr[j] += gr[j] * inv;
            }
        }
    });
}

CC_CPU_INSTANTIATE(layernorm_forward, (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(layernorm_backward,
                   (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(activation_forward, (Tensor, Tensor, Activation))
CC_CPU_INSTANTIATE(activation_backward, (Tensor, Tensor, Tensor, Activation))
CC_CPU_INSTANTIATE(l2_normalize_forward, (Tensor, Tensor, Tensor))
CC_CPU_INSTANTIATE(l2_normalize_backward, (Tensor, Tensor, Tensor, Tensor))

}  // namespace curaclip::cpu
