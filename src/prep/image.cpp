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

// (w, h) -> (tw, th) with PIL.Image.resize(BICUBIC)'s resampling: the horizontal
// pass first, then the vertical one, each only when that side changes; the cubic
// (Catmull-Rom, a = -0.5, as PIL's bicubic) kernel is widened by the reduction
// factor (gap 0: no box pre-shrink, which PIL's resize without reducing_gap does
// not do either). Enlarging sides go through vips_affine (reduce* cannot enlarge).
bool resample(Pipeline& pipe, VipsImage*& img, int tw, int th) {
    VipsImage* t = nullptr;
    if (tw < img->Xsize) {
        if (vips_reduceh(img, &t, static_cast<double>(img->Xsize) / tw, "kernel", VIPS_KERNEL_CUBIC,
                         "gap", 0.0, nullptr))
            return false;
        img = pipe.own(t);
    }
    if (th < img->Ysize) {
        if (vips_reducev(img, &t, static_cast<double>(img->Ysize) / th, "kernel", VIPS_KERNEL_CUBIC,
                         "gap", 0.0, nullptr))
            return false;
        img = pipe.own(t);
    }
    if (tw > img->Xsize || th > img->Ysize) {
        // Enlarging: Catmull-Rom interpolation (PIL's bicubic kernel at scale 1) with
        // PIL's pixel-centre alignment: output pixel X samples the input at
        // (X + 0.5) / scale - 0.5, i.e. x = (X - odx) / scale - idx with idx = 0.5,
        // odx = -0.5. A side that does not change maps to whole pixels (identity).
        const double sx = static_cast<double>(tw) / img->Xsize, sy = static_cast<double>(th) / img->Ysize;
        VipsInterpolate* bicubic = vips_interpolate_new("bicubic");
        if (!bicubic) return false;
        const int area[4] = {0, 0, tw, th};
        VipsArrayInt* oarea = vips_array_int_new(area, 4);
        const int rc = vips_affine(img, &t, sx, 0.0, 0.0, sy, "interpolate", bicubic, "oarea", oarea, "idx", 0.5,
                                   "idy", 0.5, "odx", -0.5, "ody", -0.5, "extend", VIPS_EXTEND_COPY, nullptr);
        vips_area_unref(VIPS_AREA(oarea));
        g_object_unref(bicubic);
        if (rc) return false;
        img = pipe.own(t);
    }
    // libvips rounds the output size from the (floating) factor; it lands on the
    // target for every size we ask for, but should it ever be a pixel off, pad with
    // copies of the edge / cut, rather than shift the whole crop.
    if (img->Xsize != tw || img->Ysize != th) {
        if (vips_embed(img, &t, 0, 0, tw, th, "extend", VIPS_EXTEND_COPY, nullptr)) return false;
        img = pipe.own(t);
    }
    return true;
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
        // No Orc: libvips compiles an Orc program for every vips_reducev it builds,
        // which on small images costs more than it saves (CPU ms per 256x256 JPEG:
        // -> 64 1.9 instead of 3.2, -> 224 2.7 against 2.6), and its C path is closer
        // to Pillow (mean |diff| 0.07 instead of 0.09 at 224, 0.07 instead of 0.20
        // at 64: bench/image_parity_vs_pillow.py).
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

DecodeResult decode_image(const uint8_t* bytes, size_t n, const ImageOptions& opt, uint8_t* out) {
    CC_CHECK(g_init_ok, "init_image_codecs() must run before decode_image");
    CC_CHECK(opt.size > 0 && (opt.channels == 1 || opt.channels == 3), "image size ", opt.size,
             " / channels ", opt.channels, " (expected size > 0 and 1 or 3 channels)");
    DecodeResult r;
    auto reject = [&r](RejectReason why, std::string detail) {
        r.reject = why;
        r.detail = std::move(detail);
        return r;
    };
    if (n == 0) return reject(RejectReason::undecodable_image, "empty image file");

    Pipeline pipe;
    // Header only: pixels are decoded on the first region request below. Random
    // access (the whole image decoded into memory on first use) works for every
    // EXIF rotation and measured as fast as sequential access on small images.
    // Truncated data is an error (PIL: "image file is truncated"), not a grey
    // bottom; "memory" keeps the decoded image in RAM (libvips would otherwise use a
    // temporary file above 100 MB).
    VipsImage* img = vips_image_new_from_buffer(bytes, n, "", "access", VIPS_ACCESS_RANDOM, "fail_on",
                                                VIPS_FAIL_ON_TRUNCATED, "memory", TRUE, nullptr);
    if (!img) return reject(RejectReason::undecodable_image, take_vips_error());
    pipe.own(img);

    const int64_t w = img->Xsize, h = img->Ysize;
    const bool swap = vips_image_get_orientation_swap(img);
    r.src_width = static_cast<int>(swap ? h : w);
    r.src_height = static_cast<int>(swap ? w : h);
    if (w * h > opt.max_pixels)
        return reject(RejectReason::image_too_large,
                      detail::concat(w, "x", h, " = ", w * h, " pixels > --max-pixels ", opt.max_pixels));

    const int S = opt.size;
    const Geometry g = geometry(opt.resize, r.src_width, r.src_height, S);

    VipsImage* t = nullptr;
    bool ok = true;
    if (vips_image_get_orientation(img) != 1) {
        ok = vips_autorot(img, &t, nullptr) == 0;
        if (ok) img = pipe.own(t);
    }
    ok = ok && to_srgb8(pipe, img);
    ok = ok && resample(pipe, img, g.tw, g.th);
    if (ok && (g.tw != S || g.th != S)) {
        if (opt.resize == ResizeMode::pad) {
            const double white = 255.0;
            VipsArrayDouble* bg = vips_array_double_new(&white, 1);
            ok = vips_embed(img, &t, g.left, g.top, S, S, "extend", VIPS_EXTEND_BACKGROUND, "background", bg,
                            nullptr) == 0;
            vips_area_unref(VIPS_AREA(bg));
        } else {
            ok = vips_crop(img, &t, g.left, g.top, S, S, nullptr) == 0;
        }
        if (ok) img = pipe.own(t);
    }
    if (ok) {
        CC_CHECK(img->Xsize == S && img->Ysize == S && img->Bands == 3 && img->BandFmt == VIPS_FORMAT_UCHAR,
                 "internal: pipeline gives ", img->Xsize, "x", img->Ysize, "x", img->Bands, " for size ", S);
        // Evaluate on this thread; this is where the pixels are decoded.
        VipsRegion* region = vips_region_new(img);
        VipsRect all{0, 0, S, S};
        ok = vips_region_prepare(region, &all) == 0;
        if (ok) {
            const size_t row = static_cast<size_t>(S) * 3;
            if (opt.channels == 3) {
                for (int y = 0; y < S; ++y)
                    std::memcpy(out + y * row, VIPS_REGION_ADDR(region, 0, y), row);
            } else {
                for (int y = 0; y < S; ++y) {
                    const uint8_t* p = VIPS_REGION_ADDR(region, 0, y);
                    uint8_t* q = out + static_cast<size_t>(y) * S;
                    for (int x = 0; x < S; ++x) q[x] = pil_luma(p + 3 * x);
                }
            }
        }
        g_object_unref(region);
    }
    if (!ok) return reject(RejectReason::undecodable_image, take_vips_error());
    return r;
}

}  // namespace curaclip::prep
