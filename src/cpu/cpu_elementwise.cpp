// Elementwise ops and reductions of the CPU backend. They take any f32 or f64
// tensor (not only the compute dtype), so f32 accumulators work with cpu-f64 too.
// Presence, sizes and matching dtypes of the operands are checked by Backend's ops
// (backend/op_contracts.cpp); these kernels check the dtypes they compute in.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/cpu_kernels.h"

namespace curaclip::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this, threads cost more than they save
}  // namespace

void fill(Tensor x, float value) {
    check_f32_or_f64(x, "fill", "x");
    const int64_t n = x.numel();
    with_float_ptr(x, [&](auto* p) {
        using V = std::remove_pointer_t<decltype(p)>;
        const V v = V(value);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) p[i] = v;
    });
}

void copy(Tensor dst, Tensor src) {
    if (dst.data != src.data) std::memmove(dst.data, src.data, dst.bytes());
}

void add(Tensor out, Tensor a, Tensor b) {
    check_f32_or_f64(out, "add", "out");
    check_f32_or_f64(a, "add", "a");
    check_f32_or_f64(b, "add", "b");
    const int64_t n = out.numel();
    with_float_ptr(out, [&](auto* o) {
        using V = std::remove_pointer_t<decltype(o)>;
        const V* pa = a.as<V>();
        const V* pb = b.as<V>();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) o[i] = pa[i] + pb[i];
    });
}

void accumulate(Tensor dst, Tensor src) {
    check_f32_or_f64(dst, "accumulate", "dst");
    check_f32_or_f64(src, "accumulate", "src");
    const int64_t n = dst.numel();
    with_float_ptr(dst, [&](auto* d) {
        using V = std::remove_pointer_t<decltype(d)>;
        const V* s = src.as<V>();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) d[i] += s[i];
    });
}

void scale(Tensor x, float s) {
    check_f32_or_f64(x, "scale", "x");
    const int64_t n = x.numel();
    with_float_ptr(x, [&](auto* p) {
        using V = std::remove_pointer_t<decltype(p)>;
        const V v = V(s);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) p[i] *= v;
    });
}

void sum_squares(Tensor out, Tensor x) {
    check_f32_or_f64(x, "sum_squares", "x");
    const int64_t n = x.numel();
    double total = 0.0;
    with_float_ptr(x, [&](const auto* p) {
        // Fixed chunks summed in order: the result does not depend on the thread count.
        constexpr int64_t kChunk = 4096;
        const int64_t nchunks = (n + kChunk - 1) / kChunk;
        std::vector<double> part(size_t(std::max<int64_t>(nchunks, 1)), 0.0);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t c = 0; c < nchunks; ++c) {
            const int64_t e = std::min(n, (c + 1) * kChunk);
            double s = 0.0;
            for (int64_t i = c * kChunk; i < e; ++i) s += double(p[i]) * double(p[i]);
            part[size_t(c)] = s;
        }
        for (double s : part) total += s;
    });
    add_scalar(out, total, "sum_squares", "out");
}

void clamp(Tensor x, float lo, float hi) {
    check_f32_or_f64(x, "clamp", "x");
    const int64_t n = x.numel();
    with_float_ptr(x, [&](auto* p) {
        using V = std::remove_pointer_t<decltype(p)>;
        const V l = V(lo), h = V(hi);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) p[i] = std::min(std::max(p[i], l), h);
    });
}

}  // namespace curaclip::cpu
