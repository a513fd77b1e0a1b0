// Host pooling of BERT hidden states (see pooling.h).
#include "encoder/pooling.h"

#include <cmath>
#include <vector>

#include "core/check.h"

namespace curaclip::encoder {

void pool_rows(Pooling mode, const float* hidden, const int32_t* lengths, int64_t B, int64_t T, int64_t C,
               const float* W, const float* bias, float* out) {
    CC_CHECK(mode != Pooling::pooler || (W && bias), "pooler pooling needs the pooler's dense weight and bias");
    for (int64_t b = 0; b < B; ++b)
        CC_CHECK(lengths[b] >= 1 && lengths[b] <= T, "pooling: lengths[", b, "] = ", lengths[b],
                 " is outside [1, ", T, "]");
#pragma omp parallel for schedule(static) if (B * T * C > (1 << 18))
    for (int64_t b = 0; b < B; ++b) {
        const float* h = hidden + b * T * C;
        float* o = out + b * C;
        if (mode == Pooling::mean) {
            std::vector<double> acc(size_t(C), 0.0);
            for (int64_t t = 0; t < lengths[b]; ++t)
                for (int64_t c = 0; c < C; ++c) acc[size_t(c)] += double(h[t * C + c]);
            for (int64_t c = 0; c < C; ++c) o[c] = float(acc[size_t(c)] / double(lengths[b]));
        } else if (mode == Pooling::cls) {
            for (int64_t c = 0; c < C; ++c) o[c] = h[c];
        } else {
            for (int64_t r = 0; r < C; ++r) {
                double s = double(bias[r]);
                for (int64_t c = 0; c < C; ++c) s += double(W[r * C + c]) * double(h[c]);
                o[r] = float(std::tanh(s));
            }
        }
    }
}

void l2_normalize_rows(float* x, int64_t rows, int64_t C) {
    for (int64_t r = 0; r < rows; ++r) {
        float* v = x + r * C;
        double s = 0.0;
        for (int64_t c = 0; c < C; ++c) s += double(v[c]) * double(v[c]);
        const double inv = 1.0 / std::max(std::sqrt(s), 1e-12);
        for (int64_t c = 0; c < C; ++c) v[c] = float(double(v[c]) * inv);
    }
}

}  // namespace curaclip::encoder
