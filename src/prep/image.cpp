// Image decoding and preprocessing with libvips (see image.h for what is matched).
//
// One call builds a small libvips pipeline (load -> autorot -> colour -> resample
// -> crop/embed) and evaluates it with vips_region_prepare on the calling thread:
// no libvips worker threads for the resampling, no operation cache, and the result
// is copied row by row straight into the caller's buffer.
#include "prep/image.h"

#include <vips/vips.h>
#include <vips/vector.h>  // vips_vector_set_enabled (not included by vips.h)

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/check.h"
#include "prep/image_resample.h"
#include "prep/jpeg_decode.h"

namespace curaclip::prep {

ResizeMode parse_resize_mode(const std::string& s) {
    if (s == "center_crop") return ResizeMode::center_crop;
    if (s == "pad") return ResizeMode::pad;
    if (s == "stretch") return ResizeMode::stretch;
    CC_FAIL("--resize: unknown resize mode '", s, "' (expected center_crop, pad or stretch)");
}

const char* resize_mode_name(ResizeMode m) {
    switch (m) {
    case ResizeMode::center_crop: return "center_crop";
    case ResizeMode::pad: return "pad";
    case ResizeMode::stretch: return "stretch";
    }
    return "unknown";
}

namespace {

// libvips warns (through GLib) about things like "premature end of JPEG data" or
// odd PNG chunks in images it still decodes. On a million-image dataset these are
// noise: an image either decodes or is rejected with libvips' error text.
void drop_log(const gchar*, GLogLevelFlags, const gchar*, gpointer) {}

std::once_flag g_init_once;
std::atomic<bool> g_init_ok{false};

// Owns the images of one pipeline (each holds a reference to its input, so the
// order of release does not matter).
class Pipeline {
public:
    Pipeline() = default;
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;
    ~Pipeline() {
        for (VipsImage* im : owned_) g_object_unref(im);
    }
    VipsImage* own(VipsImage* im) {
        owned_.push_back(im);
        return im;
    }

private:
    std::vector<VipsImage*> owned_;
};

// The first line of libvips' error text, which is then cleared. libvips keeps one
// error buffer per process: when two threads fail at the same moment one may read
// the other's text (or none); the reject reason is right either way.
std::string take_vips_error() {
    char* all = vips_error_buffer_copy();  // copies and clears
    std::string s = all ? all : "";
    g_free(all);
    const size_t nl = s.find('\n');
    if (nl != std::string::npos) s.resize(nl);
    if (s.empty()) s = "libvips could not decode the image";
    return s;
}

// torchvision's CenterCrop offset: int(round((in - out) / 2.0)), Python's round
// (halves to even), e.g. 1 -> 0, 3 -> 2, 5 -> 2.
int center_offset(int in, int out) {
    const int d = in - out;
    const int q = d / 2;
    if (d % 2 == 0) return q;
    return (q % 2 == 0) ? q : q + 1;
}

// Any decoded image -> 8-bit sRGB, 3 bands, alpha composited on white.
bool to_srgb8(Pipeline& pipe, VipsImage*& img) {
    VipsImage* t = nullptr;
    if (vips_image_get_interpretation(img) == VIPS_INTERPRETATION_CMYK) {
        // The embedded ICC profile when there is one, libvips' CMYK profile otherwise.
        if (vips_icc_transform(img, &t, "srgb", "embedded", TRUE, "input_profile", "cmyk", "depth", 8,
                               nullptr))
            return false;
        img = pipe.own(t);
    }
    if (vips_image_hasalpha(img)) {
        const bool wide = img->BandFmt == VIPS_FORMAT_USHORT;  // 16-bit PNG: alpha up to 65535
        const double white = wide ? 65535.0 : 255.0;
        VipsArrayDouble* background = vips_array_double_new(&white, 1);  // one value: every band
        const int rc = vips_flatten(img, &t, "background", background, "max_alpha", white, nullptr);
        vips_area_unref(VIPS_AREA(background));
        if (rc) return false;
        img = pipe.own(t);
    }
    const VipsInterpretation interp = vips_image_get_interpretation(img);
    const bool srgb8 = img->BandFmt == VIPS_FORMAT_UCHAR &&
                       (interp == VIPS_INTERPRETATION_sRGB || interp == VIPS_INTERPRETATION_B_W ||
                        interp == VIPS_INTERPRETATION_MULTIBAND || interp == VIPS_INTERPRETATION_RGB);
    if (!srgb8) {
        // 16-bit grey/RGB (>> 8), Lab, XYZ, ... -> sRGB.
        if (vips_colourspace(img, &t, VIPS_INTERPRETATION_sRGB, nullptr)) return false;
        img = pipe.own(t);
    }
    if (img->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(img, &t, nullptr)) return false;
        img = pipe.own(t);
    }
    if (img->Bands == 1 || img->Bands == 2) {
        VipsImage* g = img;
        if (img->Bands == 2) {
            if (vips_extract_band(img, &t, 0, nullptr)) return false;
            g = pipe.own(t);
        }
        VipsImage* three[3] = {g, g, g};
        if (vips_bandjoin(three, &t, 3, nullptr)) return false;
        img = pipe.own(t);
    } else if (img->Bands > 3) {
        if (vips_extract_band(img, &t, 0, "n", 3, nullptr)) return false;
        img = pipe.own(t);
    }
    // Tag the result sRGB: libvips treats bands past the first of a "b-w" image as
    // alpha (a 3-band b-w image would be premultiplied by vips_affine).
    if (vips_image_get_interpretation(img) != VIPS_INTERPRETATION_sRGB) {
        if (vips_copy(img, &t, "interpretation", VIPS_INTERPRETATION_sRGB, nullptr)) return false;
        img = pipe.own(t);
    }
    return true;
}

// Where the image goes: resampled to tw x th, then cropped at (left, top)
// (center_crop) or placed at (left, top) on a white S x S canvas (pad).
struct Geometry {
    int tw = 0, th = 0, left = 0, top = 0;
};

Geometry geometry(ResizeMode mode, int w, int h, int S) {
    Geometry g{S, S, 0, 0};
    switch (mode) {
    case ResizeMode::center_crop:
        // torchvision Resize(S) on a PIL image: the shorter side becomes S, the
        // longer int(S * long / short) (truncated), then CenterCrop(S).
        if (w <= h) g.th = static_cast<int>(static_cast<double>(int64_t{S} * h) / w);
        else g.tw = static_cast<int>(static_cast<double>(int64_t{S} * w) / h);
        g.left = center_offset(g.tw, S);
        g.top = center_offset(g.th, S);
        break;
    case ResizeMode::pad:
        // The longer side becomes S, the shorter round(S * short / long) (>= 1),
        // centred on white (offsets rounded down).
        if (w >= h) g.th = std::max(1, static_cast<int>((int64_t{S} * h * 2 + w) / (2 * int64_t{w})));
        else g.tw = std::max(1, static_cast<int>((int64_t{S} * w * 2 + h) / (2 * int64_t{h})));
        g.left = (S - g.tw) / 2;
        g.top = (S - g.th) / 2;
        break;
    case ResizeMode::stretch: break;
    }
    return g;
}

// PIL's "L" conversion (Convert.c rgb2l): ITU-R 601-2 luma in 16-bit fixed point.
inline uint8_t pil_luma(const uint8_t* rgb) {
    return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

}  // namespace

void init_image_codecs() {
    std::call_once(g_init_once, [] {
        if (VIPS_INIT("curaclip") != 0) return;
        vips_concurrency_set(1);  // ranks are the parallelism
        vips_cache_set_max(0);    // every image is new: caching operations only costs
        // No Orc: libvips would compile an Orc program for operations it builds per
        // image, which on small images costs more than it saves.
        vips_vector_set_enabled(FALSE);
        g_log_set_handler("VIPS", static_cast<GLogLevelFlags>(G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE),
                          drop_log, nullptr);
        g_init_ok = true;
    });
    if (!g_init_ok) {
        const std::string err = take_vips_error();
        CC_FAIL("libvips could not start: ", err);
    }
}

namespace {

// The general path: whatever libvips reads, with EXIF orientation applied and any
// colour model turned into 8-bit sRGB, decoded whole into `out`.
bool decode_with_vips(const uint8_t* bytes, size_t n, int64_t max_pixels, RgbImage& out, DecodeResult& r) {
    auto reject = [&r](RejectReason why, std::string detail) {
        r.reject = why;
        r.detail = std::move(detail);
        return false;
    };
    Pipeline pipe;
    // Header only: pixels are decoded on the region request below. Truncated data is
    // an error (PIL: "image file is truncated"), not a grey bottom; "memory" keeps the
    // decoded image in RAM (libvips would otherwise use a temporary file above 100 MB).
    VipsImage* img = vips_image_new_from_buffer(bytes, n, "", "access", VIPS_ACCESS_RANDOM, "fail_on",
                                                VIPS_FAIL_ON_TRUNCATED, "memory", TRUE, nullptr);
    if (!img) return reject(RejectReason::undecodable_image, take_vips_error());
    pipe.own(img);
    const int64_t w = img->Xsize, h = img->Ysize;
    const bool swap = vips_image_get_orientation_swap(img);
    r.src_width = static_cast<int>(swap ? h : w);
    r.src_height = static_cast<int>(swap ? w : h);
    if (w * h > max_pixels)
        return reject(RejectReason::image_too_large,
                      detail::concat(w, "x", h, " = ", w * h, " pixels > --max-pixels ", max_pixels));
    VipsImage* t = nullptr;
    bool ok = true;
    if (vips_image_get_orientation(img) != 1) {
        ok = vips_autorot(img, &t, nullptr) == 0;
        if (ok) img = pipe.own(t);
    }
    ok = ok && to_srgb8(pipe, img);
    if (ok) {
        CC_CHECK(img->Bands == 3 && img->BandFmt == VIPS_FORMAT_UCHAR, "internal: ", img->Bands,
                 " bands after the conversion to sRGB");
        // Evaluate on this thread; this is where the pixels are decoded.
        VipsRegion* region = vips_region_new(img);
        VipsRect all{0, 0, img->Xsize, img->Ysize};
        ok = vips_region_prepare(region, &all) == 0;
        if (ok) {
            out.w = img->Xsize;
            out.h = img->Ysize;
            out.px.resize(size_t(out.w) * size_t(out.h) * 3);
            const size_t row = size_t(out.w) * 3;
            for (int y = 0; y < out.h; ++y) std::memcpy(out.px.data() + y * row, VIPS_REGION_ADDR(region, 0, y), row);
        }
        g_object_unref(region);
    }
    if (!ok) return reject(RejectReason::undecodable_image, take_vips_error());
    return true;
}

}  // namespace

DecodeResult decode_image(const uint8_t* bytes, size_t n, const ImageOptions& opt, uint8_t* out) {
    CC_CHECK(g_init_ok, "init_image_codecs() must run before decode_image");
    CC_CHECK(opt.size > 0 && (opt.channels == 1 || opt.channels == 3), "image size ", opt.size,
             " / channels ", opt.channels, " (expected size > 0 and 1 or 3 channels)");
    DecodeResult r;
    if (n == 0) {
        r.reject = RejectReason::undecodable_image;
        r.detail = "empty image file";
        return r;
    }
    thread_local RgbImage src, scaled;
    const FastJpeg fast = decode_plain_jpeg(bytes, n, opt.max_pixels, src, r);
    if (fast == FastJpeg::rejected) return r;
    if (fast == FastJpeg::not_eligible && !decode_with_vips(bytes, n, opt.max_pixels, src, r)) return r;
    if (src.w <= 0 || src.h <= 0) {
        r.reject = RejectReason::undecodable_image;
        r.detail = "the image has no pixels";
        return r;
    }

    const int S = opt.size;
    const Geometry g = geometry(opt.resize, src.w, src.h, S);
    const RgbImage* img = &src;
    if (g.tw != src.w || g.th != src.h) {
        std::string err;
        CC_CHECK(resample_bicubic(src, g.tw, g.th, scaled, err), "resampling ", src.w, "x", src.h, " to ", g.tw,
                 "x", g.th, " failed: ", err);
        img = &scaled;
    }
    // Place it: crop the centre (center_crop), onto white (pad), or as it is (stretch),
    // straight into `out` (or into a scratch row for one channel).
    const size_t row_out = size_t(S) * size_t(opt.channels);
    thread_local std::vector<uint8_t> row_rgb;
    row_rgb.resize(size_t(S) * 3);
    for (int y = 0; y < S; ++y) {
        uint8_t* dst = opt.channels == 3 ? out + size_t(y) * row_out : row_rgb.data();
        if (opt.resize == ResizeMode::pad) {
            // image row y - top lands at columns [left, left + w), white around it.
            const int sy = y - g.top;
            std::memset(dst, 255, size_t(S) * 3);
            if (sy >= 0 && sy < img->h)
                std::memcpy(dst + size_t(g.left) * 3, img->px.data() + size_t(sy) * img->w * 3, size_t(img->w) * 3);
        } else {  // center_crop (stretch: left = top = 0, image S x S)
            std::memcpy(dst, img->px.data() + (size_t(y + g.top) * img->w + g.left) * 3, size_t(S) * 3);
        }
        if (opt.channels == 1)
            for (int x = 0; x < S; ++x) out[size_t(y) * row_out + x] = pil_luma(dst + 3 * x);
    }
    return r;
}

}  // namespace curaclip::prep
