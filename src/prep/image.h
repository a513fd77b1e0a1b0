// Image decoding and preprocessing for `curaclip prep` (docs/data.md §What happens to each sample): encoded bytes
// (JPEG, PNG, WebP; whatever libvips reads) -> an S x S uint8 image with C = 3 (RGB)
// or 1 (grey) channels, row-major [S, S, C].
//
// What is done, in order, and whose behaviour is matched (open_clip's
// preprocessing: PIL.Image.open -> .convert("RGB") -> Resize(S, bicubic,
// antialias) -> CenterCrop(S)):
//   1. header only: width x height > max_pixels -> rejected (PIL's
//      Image.MAX_IMAGE_PIXELS = 89,478,485 is the default: a decompression bomb);
//   2. EXIF orientation applied (PIL.ImageOps.exif_transpose);
//   3. colour: grey, grey+alpha, palette, RGB, RGBA, CMYK, 16-bit -> 8-bit sRGB;
//      alpha is composited on white (as open_clip's img2dataset does); for C = 1,
//      grey = PIL's "L" conversion of that RGB (ITU-R 601-2 luma: R*299/1000 +
//      G*587/1000 + B*114/1000);
//   4. geometry (ResizeMode):
//      center_crop: shorter side -> S (bicubic, antialiased: the kernel is widened
//                   by the downscale factor, as PIL's resize), then the centre S x S;
//      pad:         longer side -> S, centred on a white S x S canvas;
//      stretch:     both sides -> S (aspect ratio not kept).
// Decoding: plain JPEGs (no EXIF, not CMYK: most web images) by libjpeg-turbo's
// TurboJPEG API with Pillow's decoder settings (src/prep/jpeg_decode.h), every
// other image by libvips (over libjpeg-turbo, libpng, libwebp). Resampling: zimg
// (src/prep/image_resample.h). No
// pixel is decoded or resampled by our own code.
//
// Thread safety: decode_image may be called from several threads at once.
// init_image_codecs() must run once per process before the first call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "prep/source.h"

namespace curaclip::prep {

enum class ResizeMode : uint8_t { center_crop, pad, stretch };
// "center_crop" | "pad" | "stretch"; anything else -> Error naming the value and option.
ResizeMode parse_resize_mode(const std::string& s);
const char* resize_mode_name(ResizeMode m);

struct ImageOptions {
    int size = 224;                   // S, pixels (the recipe's image size)
    int channels = 3;                 // 3: RGB, 1: grey
    ResizeMode resize = ResizeMode::center_crop;
    int64_t max_pixels = 89478485;    // width*height above this is refused (PIL's default)
};

struct DecodeResult {
    std::optional<RejectReason> reject;  // unset: `out` holds the image
    std::string detail;                  // e.g. "12000x9000 = 108 M pixels > --max-pixels 89478485"
    int src_width = 0, src_height = 0;   // of the encoded image (after EXIF rotation), when known
};

// Starts libvips (idempotent; one thread of its own per call: ranks are the
// parallelism, so each rank uses one core). Throws Error when libvips cannot start.
void init_image_codecs();

// Decodes and preprocesses `bytes` into out[S * S * C]. Never throws for bad
// image bytes (they give a reject); throws Error only for internal failures.
DecodeResult decode_image(const uint8_t* bytes, size_t n, const ImageOptions& opt, uint8_t* out);

}  // namespace curaclip::prep
