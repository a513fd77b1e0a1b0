#include "interop/pos_embed_resize.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace curaclip::interop {

namespace {

// torch upsample_bicubic2d: cubic_convolution1 / cubic_convolution2 with A = -0.75.
double keys1(double x, double a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }
double keys2(double x, double a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }

// torch's antialiased bicubic filter (aten/src/ATen/native/cpu/UpSampleKernel.cpp, a = -0.5).
double aa_filter(double x) {
    const double a = -0.5;
    x = std::fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

}  // namespace

std::vector<double> bicubic_weights_1d(int n_in, int n_out, bool antialias) {
    CC_CHECK(n_in > 0 && n_out > 0, "bicubic resize of ", n_in, " to ", n_out);
    std::vector<double> w(size_t(n_out) * size_t(n_in), 0.0);
    const double scale = double(n_in) / double(n_out);
    for (int i = 0; i < n_out; ++i) {
        double* row = &w[size_t(i) * size_t(n_in)];
        if (!antialias) {
            const double src = scale * (i + 0.5) - 0.5;  // no clamp for cubic
            const double fl = std::floor(src);
            const double t = src - fl;
            const int x0 = int(fl);
            const double c[4] = {keys2(t + 1.0, -0.75), keys1(t, -0.75), keys1(1.0 - t, -0.75),
                                 keys2(2.0 - t, -0.75)};
            for (int k = 0; k < 4; ++k) row[std::clamp(x0 - 1 + k, 0, n_in - 1)] += c[k];
        } else {
            const double support = scale >= 1.0 ? 2.0 * scale : 2.0;  // interp_size 4 / 2
            const double center = scale * (i + 0.5);
            const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
            const int xmin = std::max(int(center - support + 0.5), 0);
            const int xmax = std::min(int(center + support + 0.5), n_in);
            double total = 0.0;
            for (int j = xmin; j < xmax; ++j) total += aa_filter((j - center + 0.5) * invscale);
            for (int j = xmin; j < xmax; ++j)
                row[j] += total != 0.0 ? aa_filter((j - center + 0.5) * invscale) / total : 0.0;
        }
    }
    return w;
}

std::vector<float> resize_pos_embed(const std::vector<float>& pos, int width, int grid, bool antialias) {
    CC_CHECK(width > 0 && grid > 0 && pos.size() % size_t(width) == 0, "positional embedding of ", pos.size(),
             " values, width ", width);
    const int rows = int(pos.size() / size_t(width)) - 1;
    const int old = int(std::lround(std::sqrt(double(std::max(rows, 0)))));
    CC_REQUIRE(rows > 0 && old * old == rows, "visual.positional_embedding has ", rows + 1,
               " rows: not a class token plus a square grid, so it cannot be resized to a ", grid, "x", grid,
               " grid");
    if (old == grid) return pos;
    const std::vector<double> a = bicubic_weights_1d(old, grid, antialias);  // [grid, old]
    std::vector<float> out(size_t(1 + grid * grid) * size_t(width));
    std::copy(pos.begin(), pos.begin() + width, out.begin());  // the class token's row
    std::vector<double> acc(static_cast<size_t>(width), 0.0);
    for (int oy = 0; oy < grid; ++oy)
        for (int ox = 0; ox < grid; ++ox) {
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int iy = 0; iy < old; ++iy) {
                const double wy = a[size_t(oy) * size_t(old) + size_t(iy)];
                if (wy == 0.0) continue;
                for (int ix = 0; ix < old; ++ix) {
                    const double wgt = wy * a[size_t(ox) * size_t(old) + size_t(ix)];
                    if (wgt == 0.0) continue;
                    const float* src = &pos[size_t(1 + iy * old + ix) * size_t(width)];
                    for (int c = 0; c < width; ++c) acc[size_t(c)] += wgt * double(src[c]);
                }
            }
            float* dst = &out[size_t(1 + oy * grid + ox) * size_t(width)];
            for (int c = 0; c < width; ++c) dst[c] = float(acc[size_t(c)]);
        }
    return out;
}

}  // namespace curaclip::interop
