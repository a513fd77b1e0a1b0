#include "prep/image_resample.h"

#include <zimg.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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


// ---- packed RGB <-> three planes ------------------------------------------------------
// 16 pixels at a time with SSSE3 byte shuffles where the CPU has them (x86-64 has
// since 2006), one at a time otherwise. Shuffle masks: byte i of 16-byte input
// vector v is pixel (16v + i) / 3, channel (16v + i) % 3.
struct ShuffleMasks {
    alignas(16) int8_t split[3][3][16];  // [input vector][channel][pixel k]: byte of that vector, or -1
    alignas(16) int8_t join[3][3][16];   // [output vector][channel][byte j]: pixel k of that channel, or -1
    constexpr ShuffleMasks() : split{}, join{} {
        for (int v = 0; v < 3; ++v)
            for (int c = 0; c < 3; ++c)
                for (int i = 0; i < 16; ++i) {
                    const int at = 3 * i + c - 16 * v;  // pixel i, channel c within vector v
                    split[v][c][i] = at >= 0 && at < 16 ? int8_t(at) : int8_t(-1);
                    const int byte = 16 * v + i;
                    join[v][c][i] = byte % 3 == c ? int8_t(byte / 3) : int8_t(-1);
                }
    }
};
constexpr ShuffleMasks kMasks;

void split_scalar(const uint8_t* __restrict src, uint8_t* __restrict r, uint8_t* __restrict g,
                  uint8_t* __restrict b, int from, int n) {
    for (int x = from; x < n; ++x) {
        r[x] = src[3 * x];
        g[x] = src[3 * x + 1];
        b[x] = src[3 * x + 2];
    }
}
void join_scalar(const uint8_t* __restrict r, const uint8_t* __restrict g, const uint8_t* __restrict b,
                 uint8_t* __restrict dst, int from, int n) {
    for (int x = from; x < n; ++x) {
        dst[3 * x] = r[x];
        dst[3 * x + 1] = g[x];
        dst[3 * x + 2] = b[x];
    }
}

#if defined(__x86_64__)
__attribute__((target("ssse3"))) void split_ssse3(const uint8_t* src, uint8_t* r, uint8_t* g, uint8_t* b, int n) {
    int x = 0;
    for (; x + 16 <= n; x += 16) {
        const __m128i in[3] = {_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 3 * x)),
                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 3 * x + 16)),
                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 3 * x + 32))};
        uint8_t* out[3] = {r, g, b};
        for (int c = 0; c < 3; ++c) {
            __m128i v = _mm_setzero_si128();
            for (int k = 0; k < 3; ++k)
                v = _mm_or_si128(v, _mm_shuffle_epi8(in[k], _mm_load_si128(reinterpret_cast<const __m128i*>(
                                                               kMasks.split[k][c]))));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out[c] + x), v);
        }
    }
    split_scalar(src, r, g, b, x, n);
}
__attribute__((target("ssse3"))) void join_ssse3(const uint8_t* r, const uint8_t* g, const uint8_t* b, uint8_t* dst,
                                                 int n) {
    int x = 0;
    for (; x + 16 <= n; x += 16) {
        const __m128i in[3] = {_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + x)),
                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(g + x)),
                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + x))};
        for (int v = 0; v < 3; ++v) {
            __m128i o = _mm_setzero_si128();
            for (int c = 0; c < 3; ++c)
                o = _mm_or_si128(o, _mm_shuffle_epi8(in[c], _mm_load_si128(reinterpret_cast<const __m128i*>(
                                                               kMasks.join[v][c]))));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 3 * x + 16 * v), o);
        }
    }
    join_scalar(r, g, b, dst, x, n);
}
const bool kHaveSsse3 = __builtin_cpu_supports("ssse3");
#endif

void split_rgb(const uint8_t* src, uint8_t* r, uint8_t* g, uint8_t* b, int n) {
#if defined(__x86_64__)
    if (kHaveSsse3) return split_ssse3(src, r, g, b, n);
#endif
    split_scalar(src, r, g, b, 0, n);
}
void join_rgb(const uint8_t* r, const uint8_t* g, const uint8_t* b, uint8_t* dst, int n) {
#if defined(__x86_64__)
    if (kHaveSsse3) return join_ssse3(r, g, b, dst, n);
#endif
    join_scalar(r, g, b, dst, 0, n);
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
    params.cpu_type = ZIMG_CPU_AUTO_64B;    // the widest SIMD the CPU has (AVX-512 where present)
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
        uint8_t* r = ip + size_t(y) * in_stride;
        split_rgb(in.px.data() + size_t(y) * size_t(in.w) * 3, r, r + in_plane, r + 2 * in_plane, in.w);
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
        const uint8_t* r = op + size_t(y) * out_stride;
        join_rgb(r, r + out_plane, r + 2 * out_plane, out.px.data() + size_t(y) * size_t(tw) * 3, tw);
    }
    return true;
}

}  // namespace curaclip::prep
