#include "prep/image_resample.h"

#include <zimg.h>

#include <cstddef>
#include <cstdlib>
#include <map>
#include <memory>
#include <tuple>

namespace curaclip::prep {
namespace {

std::string zimg_error() {
    char buf[512] = {};
    zimg_get_last_error(buf, sizeof buf);
    zimg_clear_last_error();
    return std::string("zimg: ") + buf;
}

struct GraphFree {
    void operator()(zimg_filter_graph* g) const { zimg_filter_graph_free(g); }
};
struct AlignedFree {
    void operator()(void* p) const { std::free(p); }
};

// This thread's filter graphs and scratch memory.
struct ThreadState {
    std::map<std::tuple<int, int, int, int>, std::unique_ptr<zimg_filter_graph, GraphFree>> graphs;
    std::unique_ptr<void, AlignedFree> tmp, in_planes, out_planes;
    size_t tmp_size = 0, in_size = 0, out_size = 0;
};

// zimg reads and writes planes with SIMD: every plane 64-byte aligned, every stride
// a multiple of 64 bytes.
constexpr size_t kAlign = 64;
size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

bool reserve(std::unique_ptr<void, AlignedFree>& buf, size_t& have, size_t need) {
    if (need <= have) return true;
    buf.reset(std::aligned_alloc(kAlign, aligned(need)));
    have = buf ? aligned(need) : 0;
    return buf != nullptr;
}

zimg_filter_graph* graph_for(ThreadState& ts, int w, int h, int tw, int th, std::string& error) {
    const auto key = std::make_tuple(w, h, tw, th);
    auto it = ts.graphs.find(key);
    if (it != ts.graphs.end()) return it->second.get();
    if (ts.graphs.size() >= 256) ts.graphs.clear();  // a bounded cache: sizes repeat within a dataset
    zimg_image_format src, dst;
    zimg_image_format_default(&src, ZIMG_API_VERSION);
    src.width = unsigned(w);
    src.height = unsigned(h);
    src.pixel_type = ZIMG_PIXEL_BYTE;
    src.color_family = ZIMG_COLOR_RGB;  // three planes resampled alike, no colour conversion
    src.pixel_range = ZIMG_RANGE_FULL;
    dst = src;
    dst.width = unsigned(tw);
    dst.height = unsigned(th);
    zimg_graph_builder_params params;
    zimg_graph_builder_params_default(&params, ZIMG_API_VERSION);
    params.resample_filter = ZIMG_RESIZE_BICUBIC;  // Mitchell-Netravali family with b = 0, c = 0.5:
    params.filter_param_a = 0.0;                   // Catmull-Rom = Keys' cubic with a = -0.5, PIL's BICUBIC
    params.filter_param_b = 0.5;
    params.dither_type = ZIMG_DITHER_NONE;  // round to nearest, as PIL
    zimg_filter_graph* g = zimg_filter_graph_build(&src, &dst, &params);
    if (!g) {
        error = zimg_error();
        return nullptr;
    }
    return ts.graphs.emplace(key, std::unique_ptr<zimg_filter_graph, GraphFree>(g)).first->second.get();
}

}  // namespace

bool resample_bicubic(const RgbImage& in, int tw, int th, RgbImage& out, std::string& error) {
    thread_local ThreadState ts;
    zimg_filter_graph* g = graph_for(ts, in.w, in.h, tw, th, error);
    if (!g) return false;
    size_t need = 0;
    if (zimg_filter_graph_get_tmp_size(g, &need)) {
        error = zimg_error();
        return false;
    }
    // zimg works on planes: split the packed RGB, resample, pack again.
    const size_t in_stride = aligned(size_t(in.w)), out_stride = aligned(size_t(tw));
    const size_t in_plane = in_stride * size_t(in.h), out_plane = out_stride * size_t(th);
    if (!reserve(ts.tmp, ts.tmp_size, need) || !reserve(ts.in_planes, ts.in_size, 3 * in_plane) ||
        !reserve(ts.out_planes, ts.out_size, 3 * out_plane)) {
        error = "out of memory for the resampler";
        return false;
    }
    auto* ip = static_cast<uint8_t*>(ts.in_planes.get());
    auto* op = static_cast<uint8_t*>(ts.out_planes.get());
    for (int y = 0; y < in.h; ++y) {
        const uint8_t* row = in.px.data() + size_t(y) * size_t(in.w) * 3;
        for (size_t c = 0; c < 3; ++c) {
            uint8_t* dst = ip + c * in_plane + size_t(y) * in_stride;
            for (int x = 0; x < in.w; ++x) dst[x] = row[size_t(x) * 3 + c];
        }
    }
    zimg_image_buffer_const src{};
    zimg_image_buffer dst{};
    src.version = dst.version = ZIMG_API_VERSION;
    for (unsigned c = 0; c < 3; ++c) {
        src.plane[c].data = ip + c * in_plane;
        src.plane[c].stride = ptrdiff_t(in_stride);
        src.plane[c].mask = ZIMG_BUFFER_MAX;
        dst.plane[c].data = op + c * out_plane;
        dst.plane[c].stride = ptrdiff_t(out_stride);
        dst.plane[c].mask = ZIMG_BUFFER_MAX;
    }
    if (zimg_filter_graph_process(g, &src, &dst, ts.tmp.get(), nullptr, nullptr, nullptr, nullptr)) {
        error = zimg_error();
        return false;
    }
    out.w = tw;
    out.h = th;
    out.px.resize(size_t(tw) * size_t(th) * 3);
    for (int y = 0; y < th; ++y) {
        uint8_t* row = out.px.data() + size_t(y) * size_t(tw) * 3;
        for (size_t c = 0; c < 3; ++c) {
            const uint8_t* s = op + c * out_plane + size_t(y) * out_stride;
            for (int x = 0; x < tw; ++x) row[size_t(x) * 3 + c] = s[x];
        }
    }
    return true;
}

}  // namespace curaclip::prep
