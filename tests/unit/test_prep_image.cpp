// Image decoding and preprocessing for `curaclip prep` (src/prep/image.h). Every
// input is encoded here by the real encoders (libvips' jpegsave/pngsave/webpsave)
// and every pixel that lands is checked against what is exactly known: solid
// colours stay solid, same-size lossless images stay identical, EXIF orientations
// 1..8 land as PIL.ImageOps.exif_transpose puts them (checked with Pillow 13 when
// this test was written), alpha composites on white, 16-bit v*257 -> v.
#include <gtest/gtest.h>
#include <vips/vips.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "prep/image.h"
#include "prep/image_resample.h"

namespace curaclip::prep {
namespace {

using Bytes = std::vector<uint8_t>;

struct Rgb {
    int r, g, b;
};

// A w x h image with `bands` bands of format `fmt`; px(x, y, band) gives each value.
VipsImage* make_image(int w, int h, int bands, VipsBandFormat fmt,
                      const std::function<int(int, int, int)>& px) {
    const size_t es = fmt == VIPS_FORMAT_USHORT ? 2 : 1;
    std::vector<uint8_t> mem(static_cast<size_t>(w) * h * bands * es);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int b = 0; b < bands; ++b) {
                const size_t i = (static_cast<size_t>(y) * w + x) * bands + b;
                const int v = px(x, y, b);
                if (es == 2) reinterpret_cast<uint16_t*>(mem.data())[i] = static_cast<uint16_t>(v);
                else mem[i] = static_cast<uint8_t>(v);
            }
    VipsImage* im = vips_image_new_from_memory_copy(mem.data(), mem.size(), w, h, bands, fmt);
    EXPECT_NE(im, nullptr);
    return im;
}

VipsImage* make_rgb(int w, int h, const std::function<Rgb(int, int)>& px) {
    return make_image(w, h, 3, VIPS_FORMAT_UCHAR, [&](int x, int y, int b) {
        const Rgb c = px(x, y);
        return b == 0 ? c.r : b == 1 ? c.g : c.b;
    });
}

Bytes take_buffer(int rc, void* buf, size_t len) {
    EXPECT_EQ(rc, 0) << vips_error_buffer();
    Bytes out(static_cast<uint8_t*>(buf), static_cast<uint8_t*>(buf) + len);
    g_free(buf);
    return out;
}

// Encoders; each takes ownership of `im`.
Bytes png(VipsImage* im, int bitdepth = 8, bool palette = false) {
    void* buf = nullptr;
    size_t len = 0;
    const int rc = palette ? vips_pngsave_buffer(im, &buf, &len, "palette", TRUE, "dither", 0.0, nullptr)
                           : vips_pngsave_buffer(im, &buf, &len, "bitdepth", bitdepth, nullptr);
    g_object_unref(im);
    return take_buffer(rc, buf, len);
}

// Without an orientation: no metadata at all, as img2dataset writes its JPEGs (they
// go the TurboJPEG way); with one, an EXIF block holding it (the libvips way).
Bytes jpeg(VipsImage* im, int orientation = 0, int quality = 95) {
    VipsImage* c = nullptr;
    EXPECT_EQ(vips_copy(im, &c, nullptr), 0);
    g_object_unref(im);
    if (orientation) vips_image_set_int(c, "orientation", orientation);
    void* buf = nullptr;
    size_t len = 0;
    const int rc = vips_jpegsave_buffer(c, &buf, &len, "Q", quality, "strip", orientation == 0, nullptr);
    g_object_unref(c);
    return take_buffer(rc, buf, len);
}

Bytes webp_lossless(VipsImage* im) {
    void* buf = nullptr;
    size_t len = 0;
    const int rc = vips_webpsave_buffer(im, &buf, &len, "lossless", TRUE, nullptr);
    g_object_unref(im);
    return take_buffer(rc, buf, len);
}

struct Decoded {
    DecodeResult res;
    Bytes px;
    int S = 0, C = 0;
    const uint8_t* at(int x, int y) const { return px.data() + (static_cast<size_t>(y) * S + x) * C; }
};

Decoded decode(const Bytes& b, int S, ResizeMode mode = ResizeMode::center_crop, int C = 3,
               int64_t max_pixels = 89478485) {
    init_image_codecs();
    ImageOptions o;
    o.size = S;
    o.channels = C;
    o.resize = mode;
    o.max_pixels = max_pixels;
    Decoded d;
    d.S = S;
    d.C = C;
    d.px.assign(static_cast<size_t>(S) * S * C, 0xAB);
    d.res = decode_image(b.data(), b.size(), o, d.px.data());
    return d;
}

void expect_all(const Decoded& d, Rgb c, int tol = 0) {
    ASSERT_FALSE(d.res.reject.has_value()) << d.res.detail;
    int bad = 0;
    for (int y = 0; y < d.S; ++y)
        for (int x = 0; x < d.S; ++x) {
            const uint8_t* p = d.at(x, y);
            if (std::abs(p[0] - c.r) > tol || std::abs(p[1] - c.g) > tol || std::abs(p[2] - c.b) > tol) {
                if (++bad <= 3)
                    ADD_FAILURE() << "pixel (" << x << "," << y << ") = " << int(p[0]) << "," << int(p[1])
                                  << "," << int(p[2]) << " expected " << c.r << "," << c.g << "," << c.b;
            }
        }
    EXPECT_EQ(bad, 0);
}

uint32_t noise(int x, int y, int b) {
    uint32_t h = static_cast<uint32_t>(x) * 73856093u ^ static_cast<uint32_t>(y) * 19349663u ^
                 static_cast<uint32_t>(b) * 83492791u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return h;
}

TEST(PrepImage, ResizeModeNames) {
    for (ResizeMode m : {ResizeMode::center_crop, ResizeMode::pad, ResizeMode::stretch})
        EXPECT_EQ(parse_resize_mode(resize_mode_name(m)), m);
    EXPECT_STREQ(resize_mode_name(ResizeMode::pad), "pad");
    try {
        parse_resize_mode("crop");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'crop'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("center_crop, pad or stretch"), std::string::npos) << e.what();
    }
}

// Solid colours stay exactly that colour through every resampling path:
// downscale, upscale, one side only, each mode, each lossless format.
TEST(PrepImage, SolidColoursStayExact) {
    const Rgb c{10, 200, 31};
    const std::vector<std::pair<int, int>> sizes = {{200, 150}, {150, 200}, {37, 300}, {16, 8}, {64, 64}, {1000, 999}};
    for (auto [w, h] : sizes) {
        const Bytes p = png(make_rgb(w, h, [&](int, int) { return c; }));
        // (Up to a reduction of 62x; beyond ~90x libvips 8.14's 12-bit fixed-point
        // kernels drift: a solid 200 comes out 198 at 6000 -> 64.)
        for (int S : {224, 64, 16}) {
            SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h) + " -> " + std::to_string(S));
            expect_all(decode(p, S, ResizeMode::center_crop), c);
            expect_all(decode(p, S, ResizeMode::stretch), c);
        }
    }
    const Bytes wp = webp_lossless(make_rgb(90, 60, [&](int, int) { return c; }));
    expect_all(decode(wp, 32), c);
}

// Same size, lossless: byte-identical; a longer side is only cropped, at
// torchvision's offset int(round((H - S) / 2.0)) with Python's half-to-even round.
TEST(PrepImage, SameSizeIsIdenticalAndCropOffsetsMatchTorchvision) {
    auto px = [](int x, int y) {
        return Rgb{static_cast<int>(noise(x, y, 0) & 255), static_cast<int>(noise(x, y, 1) & 255),
                   static_cast<int>(noise(x, y, 2) & 255)};
    };
    const Decoded d = decode(png(make_rgb(64, 64, px)), 64);
    ASSERT_FALSE(d.res.reject) << d.res.detail;
    EXPECT_EQ(d.res.src_width, 64);
    EXPECT_EQ(d.res.src_height, 64);
    for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x) {
            const Rgb e = px(x, y);
            ASSERT_EQ(d.at(x, y)[0], e.r);
            ASSERT_EQ(d.at(x, y)[1], e.g);
            ASSERT_EQ(d.at(x, y)[2], e.b);
        }
    // (extra rows, expected top): 1 -> round(0.5) = 0, 3 -> round(1.5) = 2, 5 -> round(2.5) = 2,
    // 16 -> 8. The red channel holds the source row, green the column.
    for (auto [extra, top] : std::vector<std::pair<int, int>>{{1, 0}, {3, 2}, {5, 2}, {16, 8}, {7, 4}}) {
        const Bytes tall = png(make_rgb(32, 32 + extra, [](int x, int y) { return Rgb{y, x, 0}; }));
        const Decoded t = decode(tall, 32);
        ASSERT_FALSE(t.res.reject) << t.res.detail;
        EXPECT_EQ(t.at(0, 0)[0], top) << "extra rows " << extra;
        EXPECT_EQ(t.at(5, 31)[0], top + 31);
        EXPECT_EQ(t.at(5, 31)[1], 5);
        // The same sideways.
        const Bytes wide = png(make_rgb(32 + extra, 32, [](int x, int y) { return Rgb{x, y, 0}; }));
        const Decoded u = decode(wide, 32);
        ASSERT_FALSE(u.res.reject) << u.res.detail;
        EXPECT_EQ(u.at(0, 0)[0], top) << "extra columns " << extra;
        EXPECT_EQ(u.at(31, 9)[0], top + 31);
        EXPECT_EQ(u.at(31, 9)[1], 9);
    }
}

// center_crop of a wide image: the shorter side becomes S, the longer
// int(S * long / short), then the centre: a 300x100 image with thirds red, green,
// blue at S = 50 is 150x50 and keeps only (most of) the green third.
TEST(PrepImage, CenterCropKeepsTheMiddle) {
    const Bytes b = png(make_rgb(300, 100, [](int x, int) {
        return x < 100 ? Rgb{255, 0, 0} : x < 200 ? Rgb{0, 255, 0} : Rgb{0, 0, 255};
    }));
    const Decoded d = decode(b, 50);
    ASSERT_FALSE(d.res.reject) << d.res.detail;
    EXPECT_EQ(d.res.src_width, 300);
    EXPECT_EQ(d.res.src_height, 100);
    // 150 wide, crop from 50: the green third is columns 50..99 of the resized image,
    // i.e. all of the output; the cubic kernel (support 2 source px = 1 output px
    // plus its neighbours) touches only the outermost output column or two.
    for (int y = 0; y < 50; ++y)
        for (int x = 2; x < 48; ++x) {
            ASSERT_EQ(d.at(x, y)[0], 0) << x << "," << y;
            ASSERT_EQ(d.at(x, y)[1], 255) << x << "," << y;
            ASSERT_EQ(d.at(x, y)[2], 0) << x << "," << y;
        }
}

// pad: the longer side becomes S, centred on white.
TEST(PrepImage, PadPutsWhiteBars) {
    const Rgb red{200, 0, 0};
    const Decoded d = decode(png(make_rgb(64, 32, [&](int, int) { return red; })), 32, ResizeMode::pad);
    ASSERT_FALSE(d.res.reject) << d.res.detail;
    for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
            const bool bar = y < 8 || y >= 24;
            const Rgb e = bar ? Rgb{255, 255, 255} : red;
            ASSERT_EQ(d.at(x, y)[0], e.r) << x << "," << y;
            ASSERT_EQ(d.at(x, y)[1], e.g) << x << "," << y;
            ASSERT_EQ(d.at(x, y)[2], e.b) << x << "," << y;
        }
    // Portrait 30x90 -> 11x33 (round(33 * 30 / 90) = 11) at S = 33: left bar 11 columns.
    const Decoded p = decode(png(make_rgb(30, 90, [&](int, int) { return red; })), 33, ResizeMode::pad);
    ASSERT_FALSE(p.res.reject) << p.res.detail;
    for (int y = 0; y < 33; ++y)
        for (int x = 0; x < 33; ++x) {
            const bool bar = x < 11 || x >= 22;
            ASSERT_EQ(p.at(x, y)[1], bar ? 255 : 0) << x << "," << y;
        }
}

// stretch: both sides become S; the left/right split stays at the middle.
TEST(PrepImage, StretchMakesSquare) {
    const Bytes b = png(make_rgb(100, 40, [](int x, int) { return x < 50 ? Rgb{0, 0, 0} : Rgb{255, 255, 255}; }));
    const Decoded d = decode(b, 20, ResizeMode::stretch);
    ASSERT_FALSE(d.res.reject) << d.res.detail;
    for (int y = 0; y < 20; ++y) {
        for (int x = 0; x < 8; ++x) ASSERT_EQ(d.at(x, y)[0], 0) << x << "," << y;
        for (int x = 12; x < 20; ++x) ASSERT_EQ(d.at(x, y)[0], 255) << x << "," << y;
        // Symmetric around the split.
        for (int x = 0; x < 10; ++x) ASSERT_NEAR(d.at(x, y)[0] + d.at(19 - x, y)[0], 255, 1);
    }
}

// Upscaling (smaller than S) works, and a left/right split stays split.
TEST(PrepImage, UpscaleKeepsSplit) {
    const Bytes b = png(make_rgb(12, 12, [](int x, int) { return x < 6 ? Rgb{0, 50, 0} : Rgb{250, 50, 0}; }));
    const Decoded d = decode(b, 48);
    ASSERT_FALSE(d.res.reject) << d.res.detail;
    for (int y = 0; y < 48; ++y) {
        // Catmull-Rom rings (over- and undershoots, clipped) up to 2 source pixels =
        // 8 output pixels from the edge, as PIL's bicubic does.
        for (int x = 0; x < 16; ++x) ASSERT_EQ(d.at(x, y)[0], 0) << x << "," << y;
        for (int x = 32; x < 48; ++x) ASSERT_EQ(d.at(x, y)[0], 250) << x << "," << y;
        for (int x = 16; x < 24; ++x) ASSERT_LE(d.at(x, y)[0], d.at(x + 1, y)[0]) << x << "," << y;
        for (int x = 0; x < 48; ++x) ASSERT_EQ(d.at(x, y)[1], 50) << x << "," << y;
    }
}

// EXIF orientation k (JPEG written by libvips with the tag set) lands as
// PIL.ImageOps.exif_transpose puts it. The stored 48x32 image has quadrants
// TL red, TR green, BL blue, BR white.
TEST(PrepImage, ExifOrientationAllEight) {
    const Rgb TL{255, 0, 0}, TR{0, 255, 0}, BL{0, 0, 255}, BR{255, 255, 255};
    auto stored = [&](int x, int y) { return y < 16 ? (x < 24 ? TL : TR) : (x < 24 ? BL : BR); };
    // Quadrants of the displayed image (TL, TR, BL, BR), per Pillow's exif_transpose.
    const std::vector<std::vector<Rgb>> expect = {
        {TL, TR, BL, BR}, {TR, TL, BR, BL}, {BR, BL, TR, TL}, {BL, BR, TL, TR},
        {TL, BL, TR, BR}, {BL, TL, BR, TR}, {BR, TR, BL, TL}, {TR, BR, TL, BL}};
    for (int k = 1; k <= 8; ++k) {
        SCOPED_TRACE("orientation " + std::to_string(k));
        const Decoded d = decode(jpeg(make_rgb(48, 32, stored), k), 32, ResizeMode::stretch);
        ASSERT_FALSE(d.res.reject) << d.res.detail;
        EXPECT_EQ(d.res.src_width, k >= 5 ? 32 : 48);
        EXPECT_EQ(d.res.src_height, k >= 5 ? 48 : 32);
        const int pos[4][2] = {{8, 8}, {24, 8}, {8, 24}, {24, 24}};
        for (int q = 0; q < 4; ++q) {
            const uint8_t* p = d.at(pos[q][0], pos[q][1]);
            const Rgb e = expect[k - 1][q];
            EXPECT_NEAR(p[0], e.r, 12) << "quadrant " << q;
            EXPECT_NEAR(p[1], e.g, 12) << "quadrant " << q;
            EXPECT_NEAR(p[2], e.b, 12) << "quadrant " << q;
        }
    }
}

TEST(PrepImage, AlphaCompositesOnWhite) {
    auto rgba = [](int a) {
        return png(make_image(40, 30, 4, VIPS_FORMAT_UCHAR, [a](int, int, int b) {
            const int v[4] = {0, 100, 200, a};
            return v[b];
        }));
    };
    expect_all(decode(rgba(0), 16), Rgb{255, 255, 255});
    expect_all(decode(rgba(255), 16), Rgb{0, 100, 200});
    // Half transparent: c * a / 255 + 255 * (1 - a / 255), within one level.
    const double a = 128 / 255.0;
    expect_all(decode(rgba(128), 16),
               Rgb{static_cast<int>(255 * (1 - a) + 0.5), static_cast<int>(100 * a + 255 * (1 - a) + 0.5),
                   static_cast<int>(200 * a + 255 * (1 - a) + 0.5)},
               1);
    // Grey + alpha.
    auto ga = [](int a) {
        return png(make_image(20, 20, 2, VIPS_FORMAT_UCHAR, [a](int, int, int b) { return b ? a : 40; }));
    };
    expect_all(decode(ga(0), 8), Rgb{255, 255, 255});
    expect_all(decode(ga(255), 8), Rgb{40, 40, 40});
}

TEST(PrepImage, GreyBecomesEqualChannels) {
    const Bytes g = png(make_image(30, 30, 1, VIPS_FORMAT_UCHAR, [](int x, int y, int) { return (x * 7 + y * 3) & 255; }));
    const Decoded d = decode(g, 30);
    ASSERT_FALSE(d.res.reject) << d.res.detail;
    for (int y = 0; y < 30; ++y)
        for (int x = 0; x < 30; ++x) {
            ASSERT_EQ(d.at(x, y)[0], (x * 7 + y * 3) & 255);
            ASSERT_EQ(d.at(x, y)[1], d.at(x, y)[0]);
            ASSERT_EQ(d.at(x, y)[2], d.at(x, y)[0]);
        }
    // A grey JPEG too (one-band JPEG).
    const Bytes gj = jpeg(make_image(30, 30, 1, VIPS_FORMAT_UCHAR, [](int, int, int) { return 77; }));
    expect_all(decode(gj, 10), Rgb{77, 77, 77}, 1);
}

TEST(PrepImage, PaletteBecomesRgb) {
    const Rgb a{255, 0, 0}, b{0, 0, 255};
    const Bytes p = png(make_rgb(16, 16, [&](int x, int) { return x < 8 ? a : b; }), 8, /*palette=*/true);
    const Decoded d = decode(p, 16);
    ASSERT_FALSE(d.res.reject) << d.res.detail;
    for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 16; ++x) {
            const Rgb e = x < 8 ? a : b;
            ASSERT_EQ(d.at(x, y)[0], e.r) << x << "," << y;
            ASSERT_EQ(d.at(x, y)[1], e.g) << x << "," << y;
            ASSERT_EQ(d.at(x, y)[2], e.b) << x << "," << y;
        }
}

TEST(PrepImage, SixteenBitBecomesEightBit) {
    auto v = [](int x, int y, int b) { return (x * 5 + y * 11 + b * 60) & 255; };
    for (int bands : {1, 3}) {
        VipsImage* im = make_image(24, 24, bands, VIPS_FORMAT_USHORT, [&](int x, int y, int b) { return v(x, y, b) * 257; });
        im->Type = bands == 1 ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_RGB16;
        const Decoded d = decode(png(im, 16), 24);
        ASSERT_FALSE(d.res.reject) << d.res.detail;
        for (int y = 0; y < 24; ++y)
            for (int x = 0; x < 24; ++x)
                for (int c = 0; c < 3; ++c) ASSERT_EQ(d.at(x, y)[c], v(x, y, bands == 1 ? 0 : c)) << x << "," << y;
    }
    // 16-bit RGBA: alpha 0 -> white, alpha 65535 -> the colour.
    for (int a : {0, 65535}) {
        VipsImage* im = make_image(10, 10, 4, VIPS_FORMAT_USHORT, [a](int, int, int b) {
            const int c[4] = {10 * 257, 20 * 257, 30 * 257, a};
            return c[b];
        });
        im->Type = VIPS_INTERPRETATION_RGB16;
        expect_all(decode(png(im, 16), 10), a ? Rgb{10, 20, 30} : Rgb{255, 255, 255});
    }
}

// CMYK JPEG: converted through ICC profiles (libvips' CMYK profile, as there is no
// embedded one here), so only the broad colours are exactly known.
TEST(PrepImage, CmykJpegBecomesSrgb) {
    auto cmyk = [](int c, int m, int y, int k) {
        VipsImage* im = make_image(16, 16, 4, VIPS_FORMAT_UCHAR, [=](int, int, int b) {
            const int v[4] = {c, m, y, k};
            return v[b];
        });
        im->Type = VIPS_INTERPRETATION_CMYK;
        return decode(jpeg(im), 8);
    };
    const Decoded paper = cmyk(0, 0, 0, 0);
    ASSERT_FALSE(paper.res.reject) << paper.res.detail;
    for (int c = 0; c < 3; ++c) EXPECT_GE(paper.at(4, 4)[c], 235) << c;
    const Decoded black = cmyk(0, 0, 0, 255);
    for (int c = 0; c < 3; ++c) EXPECT_LE(black.at(4, 4)[c], 70) << c;
    const Decoded cyan = cmyk(255, 0, 0, 0);
    EXPECT_LE(cyan.at(4, 4)[0], 80);
    EXPECT_GE(cyan.at(4, 4)[1], 120);
    EXPECT_GE(cyan.at(4, 4)[2], 180);
    const Decoded magenta = cmyk(0, 255, 0, 0);
    EXPECT_GE(magenta.at(4, 4)[0], 180);
    EXPECT_LE(magenta.at(4, 4)[1], 80);
}

// C = 1: PIL's "L" of the RGB output (ITU-R 601-2), within one level of the
// decimal formula.
TEST(PrepImage, OneChannelIsLumaOfRgb) {
    const Bytes b = jpeg(make_rgb(120, 90, [](int x, int y) {
        return Rgb{static_cast<int>(noise(x, y, 0) & 255), (x * 2) & 255, (y * 3) & 255};
    }));
    for (ResizeMode m : {ResizeMode::center_crop, ResizeMode::pad}) {
        const Decoded rgb = decode(b, 40, m, 3);
        const Decoded grey = decode(b, 40, m, 1);
        ASSERT_FALSE(grey.res.reject) << grey.res.detail;
        for (int y = 0; y < 40; ++y)
            for (int x = 0; x < 40; ++x) {
                const uint8_t* p = rgb.at(x, y);
                const double l = p[0] * 299 / 1000.0 + p[1] * 587 / 1000.0 + p[2] * 114 / 1000.0;
                ASSERT_NEAR(grey.at(x, y)[0], l, 1.0) << x << "," << y;
            }
    }
}

TEST(PrepImage, MaxPixelsRefusedBeforeDecoding) {
    const Bytes b = png(make_rgb(100, 100, [](int, int) { return Rgb{1, 2, 3}; }));
    const Decoded d = decode(b, 16, ResizeMode::center_crop, 3, 9999);
    ASSERT_TRUE(d.res.reject.has_value());
    EXPECT_EQ(*d.res.reject, RejectReason::image_too_large);
    EXPECT_EQ(d.res.detail, "100x100 = 10000 pixels > --max-pixels 9999");
    EXPECT_EQ(d.px[0], 0xAB);  // nothing written
    EXPECT_FALSE(decode(b, 16, ResizeMode::center_crop, 3, 10000).res.reject.has_value());

    // A 12000 x 9000 PNG that is only a header (IHDR, an empty IDAT, IEND): refused
    // from the header, with PIL's default limit, without decoding 324 MB.
    auto chunk = [](Bytes& out, const char* type, const Bytes& data) {
        const uint32_t n = static_cast<uint32_t>(data.size());
        for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(n >> s));
        Bytes td(type, type + 4);
        td.insert(td.end(), data.begin(), data.end());
        out.insert(out.end(), td.begin(), td.end());
        const uint32_t crc = static_cast<uint32_t>(crc32(0, td.data(), static_cast<uInt>(td.size())));
        for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(crc >> s));
    };
    Bytes bomb = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint32_t W = 12000, H = 9000;
    Bytes ihdr;
    for (uint32_t v : {W, H})
        for (int s = 24; s >= 0; s -= 8) ihdr.push_back(static_cast<uint8_t>(v >> s));
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, deflate, no filter, no interlace
    chunk(bomb, "IHDR", ihdr);
    chunk(bomb, "IDAT", {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01});
    chunk(bomb, "IEND", {});
    const Decoded big = decode(bomb, 16);
    ASSERT_TRUE(big.res.reject.has_value()) << "decoded a bomb";
    EXPECT_EQ(*big.res.reject, RejectReason::image_too_large) << big.res.detail;
    EXPECT_EQ(big.res.detail, "12000x9000 = 108000000 pixels > --max-pixels 89478485");
    EXPECT_EQ(big.res.src_width, 12000);
    EXPECT_EQ(big.res.src_height, 9000);
    // Allowed by the limit, the same header is then undecodable (no pixel data).
    const Decoded allowed = decode(bomb, 16, ResizeMode::center_crop, 3, int64_t{1} << 40);
    ASSERT_TRUE(allowed.res.reject.has_value());
    EXPECT_EQ(*allowed.res.reject, RejectReason::undecodable_image);
}

TEST(PrepImage, TruncatedAndGarbageAreUndecodable) {
    const Bytes full = jpeg(make_rgb(256, 256, [](int x, int y) {
        return Rgb{static_cast<int>(noise(x, y, 0) & 255), static_cast<int>(noise(x, y, 1) & 255), 7};
    }));
    ASSERT_FALSE(decode(full, 64).res.reject.has_value());
    const Bytes half(full.begin(), full.begin() + static_cast<long>(full.size() / 2));
    const Decoded t = decode(half, 64);
    ASSERT_TRUE(t.res.reject.has_value());
    EXPECT_EQ(*t.res.reject, RejectReason::undecodable_image);
    EXPECT_FALSE(t.res.detail.empty());
    EXPECT_EQ(t.res.detail.find('\n'), std::string::npos);
    EXPECT_STREQ(vips_error_buffer(), "") << "libvips' error buffer is left clean";

    Bytes garbage(5000);
    for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(noise(static_cast<int>(i), 1, 2));
    const Decoded g = decode(garbage, 64);
    ASSERT_TRUE(g.res.reject.has_value());
    EXPECT_EQ(*g.res.reject, RejectReason::undecodable_image);
    EXPECT_NE(g.res.detail.find("not in a known format"), std::string::npos) << g.res.detail;

    const Decoded e = decode(Bytes{}, 64);
    ASSERT_TRUE(e.res.reject.has_value());
    EXPECT_EQ(*e.res.reject, RejectReason::undecodable_image);

    // A truncated PNG as well.
    const Bytes p = png(make_rgb(200, 200, [](int x, int y) { return Rgb{int(noise(x, y, 0) & 255), 0, 0}; }));
    const Decoded tp = decode(Bytes(p.begin(), p.begin() + static_cast<long>(p.size() / 2)), 32);
    ASSERT_TRUE(tp.res.reject.has_value());
    EXPECT_EQ(*tp.res.reject, RejectReason::undecodable_image);
    EXPECT_STREQ(vips_error_buffer(), "");
}

// The resampler at scale 1 is the identity: checks the packed <-> planar shuffles
// (16-pixel SIMD blocks and the tail) and the channel order.
TEST(PrepImage, ResamplerAtScaleOneIsIdentity) {
    for (int w : {1, 15, 16, 17, 53}) {
        RgbImage in;
        in.w = w;
        in.h = 7;
        in.px.resize(size_t(w) * 7 * 3);
        for (size_t i = 0; i < in.px.size(); ++i) in.px[i] = static_cast<uint8_t>(noise(int(i), w, 3));
        RgbImage out;
        std::string err;
        ASSERT_TRUE(resample_bicubic(in, w, 7, out, err)) << err;
        EXPECT_EQ(out.w, w);
        EXPECT_EQ(out.px, in.px) << "width " << w;
    }
}

// A plain JPEG goes the TurboJPEG way; the same JPEG carrying an EXIF block (here
// orientation 1: nothing to rotate) goes the libvips way. Both decode with
// libjpeg-turbo's defaults and resize with zimg: the same bytes.
TEST(PrepImage, FastJpegPathEqualsLibvipsPath) {
    auto image = [] {
        return make_rgb(300, 200, [](int x, int y) {
            return Rgb{static_cast<int>(noise(x, y, 0) & 255), (x * 255) / 299, (y * 255) / 199};
        });
    };
    const Bytes plain = jpeg(image()), with_exif = jpeg(image(), /*orientation=*/1);
    ASSERT_NE(plain, with_exif);  // the EXIF block is there
    for (int S : {64, 224, 400})
        for (ResizeMode m : {ResizeMode::center_crop, ResizeMode::pad, ResizeMode::stretch}) {
            const Decoded a = decode(plain, S, m), b = decode(with_exif, S, m);
            ASSERT_FALSE(a.res.reject.has_value());
            ASSERT_FALSE(b.res.reject.has_value());
            EXPECT_EQ(a.px, b.px) << "S " << S << " " << resize_mode_name(m);
        }
}

// Several threads at once give the same bytes as one thread, good images and bad.
TEST(PrepImage, ThreadsAgreeWithOneThread) {
    std::vector<Bytes> inputs;
    for (int i = 0; i < 6; ++i) {
        const int w = 120 + 37 * i, h = 200 - 19 * i;
        inputs.push_back(jpeg(make_rgb(w, h, [i](int x, int y) {
            return Rgb{static_cast<int>(noise(x, y, i) & 255), (x + y) & 255, (x * i) & 255};
        })));
    }
    inputs.push_back(Bytes(inputs[0].begin(), inputs[0].begin() + 300));  // truncated
    std::vector<Decoded> want;
    for (const Bytes& b : inputs) want.push_back(decode(b, 48));
    ASSERT_TRUE(want.back().res.reject.has_value());
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int rep = 0; rep < 5; ++rep)
                for (size_t i = 0; i < inputs.size(); ++i) {
                    const Decoded d = decode(inputs[(i + t) % inputs.size()], 48);
                    const Decoded& w = want[(i + t) % inputs.size()];
                    if (d.res.reject != w.res.reject || (!d.res.reject && d.px != w.px)) ++mismatches[t];
                }
        });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace curaclip::prep
