// AdamW of the CUDA backend, in torch.optim.AdamW's order (see src/cpu/cpu_optim.cpp):
//   p *= 1 - lr wd;  m += (1 - b1)(g - m);  v = b2 v + (1 - b2) g^2;
//   p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
// in fp32 with fp32 moments. A bf16 parameter is updated through its fp32 master copy
// (Parameter::master, src/model/parameters.h): the master is used where it still rounds
// to the bf16 value (otherwise it is re-seeded from it: core/bf16.h master_agrees is the
// same rule on the host), updated, and rounded into p.
#include <cmath>

#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

namespace {

constexpr int kThreads = 256;

struct AdamConsts {
    float decay, step_size, inv_sqrt_bc2, one_m_b1, b2, one_m_b2, eps, gs;
};

__device__ __forceinline__ float read_param(const bf16* p, int64_t i, const float* master) {
    // core/bf16.h master_agrees: the master while it rounds to the stored value, and
    // never in place of a non-finite value.
    const bf16 cur = p[i];
    const float cv = __bfloat162float(cur);
    if (master && isfinite(cv)) {
        const float mv = master[i];
        if (__bfloat16_as_ushort(__float2bfloat16_rn(mv)) == __bfloat16_as_ushort(cur)) return mv;
    }
    return cv;
}
__device__ __forceinline__ float read_param(const float* p, int64_t i, const float*) { return p[i]; }

template <typename P>
__global__ void adamw_kernel(P* p, const P* g, float* m, float* v, float* master, int64_t n, AdamConsts k) {
    CC_GRID_STRIDE(i, n) {
        float pv = read_param(p, i, master);
        const float gi = ld(g, i) * k.gs;
        const float mi = m[i] + k.one_m_b1 * (gi - m[i]);
        const float vi = k.b2 * v[i] + k.one_m_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) * k.inv_sqrt_bc2 + k.eps;
        pv = pv * k.decay - k.step_size * (mi / denom);
        if (master) master[i] = pv;
        st(p, i, pv);
    }
}

}  // namespace

void adamw_step(Context& c, Tensor param, Tensor grad, Tensor m, Tensor v, Tensor master, const AdamWParams& hp,
                float grad_scale) {
    // Shapes, the master rule, step and betas: Backend::adamw_step (op_contracts.cpp).
    const char* op = "adamw_step";
    CC_CHECK(param.dtype == DType::bf16 || param.dtype == DType::f32, op, ": param has dtype ",
             dtype_name(param.dtype), ", expected bf16 or f32");
    check_dtype(m, DType::f32, op, "m");
    const int64_t n = param.numel();
    if (n == 0) return;
    const double lr = hp.lr, b1 = hp.beta1, b2 = hp.beta2;
    const double bc1 = 1.0 - std::pow(b1, double(hp.step));
    const double bc2 = 1.0 - std::pow(b2, double(hp.step));
    AdamConsts k;
    k.decay = float(1.0 - lr * double(hp.weight_decay));
    k.step_size = float(lr / bc1);
    k.inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
    k.one_m_b1 = float(1.0 - b1);
    k.b2 = float(b2);
    k.one_m_b2 = float(1.0 - b2);
    k.eps = float(hp.eps);
    k.gs = grad_scale;
    if (param.dtype == DType::bf16)
        adamw_kernel<bf16><<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(
            param.as<bf16>(), grad.as<bf16>(), m.as<float>(), v.as<float>(), master.as<float>(), n, k);
    else
        adamw_kernel<float><<<grid_for(n, kThreads), kThreads, 0, c.stream>>>(
            param.as<float>(), grad.as<float>(), m.as<float>(), v.as<float>(), nullptr, n, k);
    check_launch(op);
}

}  // namespace curaclip::cuda
