// AdamW of the CPU backend, evaluated in the same order as torch.optim.AdamW
// (single-tensor, non-fused path), so a CPU run tracks a PyTorch run closely:
//   p *= 1 - lr wd
//   m += (1 - b1) (g - m)                      (torch: exp_avg.lerp_(g, 1 - b1))
//   v  = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),  bc = 1 - beta^step
#include <cmath>

#include "cpu/cpu_kernels.h"

namespace curaclip::cpu {

namespace {

template <typename T, typename M>
void adamw_kernel(T* p, const T* g, M* m, M* v, int64_t n, const AdamWParams& hp, float grad_scale) {
    const double lr = hp.lr, b1 = hp.beta1, b2 = hp.beta2;
    const double bc1 = 1.0 - std::pow(b1, double(hp.step));
    const double bc2 = 1.0 - std::pow(b2, double(hp.step));
    const T decay = T(1.0 - lr * double(hp.weight_decay));
    const T step_size = T(lr / bc1);
    const T inv_sqrt_bc2 = T(1.0 / std::sqrt(bc2));
    const T one_m_b1 = T(1.0 - b1), b2t = T(b2), one_m_b2 = T(1.0 - b2), eps = T(hp.eps);
    const T gs = T(grad_scale);
#pragma omp parallel for schedule(static) if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) {
        const T gi = g[i] * gs;
        const T mi = T(m[i]) + one_m_b1 * (gi - T(m[i]));
        const T vi = b2t * T(v[i]) + one_m_b2 * gi * gi;
        m[i] = M(mi);
        v[i] = M(vi);
        const T denom = std::sqrt(vi) * inv_sqrt_bc2 + eps;
        p[i] = p[i] * decay - step_size * (mi / denom);
    }
}

}  // namespace

template <typename T>
void adamw_step(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                float grad_scale) {
    // Shapes, the master rule, step and betas: Backend::adamw_step (op_contracts.cpp).
    // The CPU computes in f32 or f64, so its parameters are their own masters.
    (void)master;
    const char* op = "adamw_step";
    check_compute<T>(param, op, "param");
    check_f32_or_f64(m, op, "m");
    const int64_t n = param.numel();
    with_float_ptr(m, [&](auto* mp) {
        using M = std::remove_pointer_t<decltype(mp)>;
        adamw_kernel<T, M>(param.as<T>(), grad.as<T>(), mp, v.as<M>(), n, hp, grad_scale);
    });
}

CC_CPU_INSTANTIATE(adamw_step, (Tensor, Tensor, Tensor, Tensor, Tensor, const AdamWParams&, float))

}  // namespace curaclip::cpu
