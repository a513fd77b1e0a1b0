#include "prep/jpeg_decode.h"

#include <turbojpeg.h>

#include <cstring>
#include <string>

#include "core/check.h"

namespace curaclip::prep {
namespace {

// One TurboJPEG decompressor per thread, destroyed with the thread.
struct Handle {
    tjhandle h = tjInitDecompress();
    ~Handle() {
        if (h) tjDestroy(h);
    }
};

// Whether the JPEG carries an EXIF block (which may hold an orientation: those go
// the libvips way, which applies it). Walks the marker segments before the first
// scan; reads lengths only, no image data.
bool has_exif(const uint8_t* b, size_t n) {
    size_t i = 2;  // after SOI
    while (i + 4 <= n && b[i] == 0xFF) {
        const uint8_t marker = b[i + 1];
        if (marker == 0xDA || marker == 0xD9) return false;  // start of scan / end of image
        if (marker == 0xFF) {                                // fill byte
            ++i;
            continue;
        }
        const size_t len = size_t(b[i + 2]) << 8 | b[i + 3];
        if (marker == 0xE1 && len >= 8 && i + 10 <= n && std::memcmp(b + i + 4, "Exif\0\0", 6) == 0) return true;
        i += 2 + len;
    }
    return false;
}

}  // namespace

FastJpeg decode_plain_jpeg(const uint8_t* bytes, size_t n, int64_t max_pixels, RgbImage& out, DecodeResult& r) {
    if (n < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 || bytes[2] != 0xFF) return FastJpeg::not_eligible;
    if (has_exif(bytes, n)) return FastJpeg::not_eligible;
    thread_local Handle tj;
    CC_CHECK(tj.h != nullptr, "TurboJPEG could not start: ", tjGetErrorStr2(nullptr));
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    // A header TurboJPEG cannot read: libvips gives the reason in its words.
    if (tjDecompressHeader3(tj.h, bytes, static_cast<unsigned long>(n), &w, &h, &subsamp, &colorspace) != 0)
        return FastJpeg::not_eligible;
    if (w <= 0 || h <= 0 || colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) return FastJpeg::not_eligible;
    r.src_width = w;
    r.src_height = h;
    if (int64_t(w) * h > max_pixels) {
        r.reject = RejectReason::image_too_large;
        r.detail = detail::concat(w, "x", h, " = ", int64_t(w) * h, " pixels > --max-pixels ", max_pixels);
        return FastJpeg::rejected;
    }
    out.w = w;
    out.h = h;
    out.px.resize(size_t(w) * size_t(h) * 3);
    // Flags 0: accurate integer DCT and smooth ("fancy") chroma upsampling, libjpeg's
    // defaults and what Pillow decodes with.
    if (tjDecompress2(tj.h, bytes, static_cast<unsigned long>(n), out.px.data(), w, 0, h, TJPF_RGB, 0) != 0) {
        const std::string msg = tjGetErrorStr2(tj.h);
        // Warnings leave a usable image (e.g. "extraneous bytes before marker", which
        // Pillow accepts too), except a file that ends early: Pillow refuses it
        // ("image file is truncated") and so do we.
        if (tjGetErrorCode(tj.h) == TJERR_FATAL || msg.find("Premature end") != std::string::npos) {
            r.reject = RejectReason::undecodable_image;
            r.detail = "JPEG: " + msg;
            return FastJpeg::rejected;
        }
    }
    return FastJpeg::decoded;
}

}  // namespace curaclip::prep
