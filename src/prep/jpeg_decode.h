// The fast path of `curaclip prep` for the images web corpora are mostly made of:
// plain JPEGs (baseline or progressive; YCbCr, RGB or grey; no EXIF block),
// decoded straight to RGB by libjpeg-turbo's TurboJPEG API, with the same settings
// Pillow's decoder uses (accurate integer DCT, smooth chroma upsampling), so the
// pixels are libjpeg-turbo's as Pillow gets them. Everything else (CMYK and YCCK
// JPEGs, JPEGs carrying EXIF that may rotate them, PNG, WebP, ...) is left to the
// libvips path of src/prep/image.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "prep/image.h"
#include "prep/image_resample.h"

namespace curaclip::prep {

enum class FastJpeg : uint8_t { decoded, not_eligible, rejected };

// Decodes `bytes` into `out` when they are a plain JPEG. r gets the source size
// (decoded), or the reject reason and detail (rejected: truncated, corrupt, or more
// than max_pixels). not_eligible: nothing was decoded; use the general path.
// Thread safe (one TurboJPEG handle per thread).
FastJpeg decode_plain_jpeg(const uint8_t* bytes, size_t n, int64_t max_pixels, RgbImage& out, DecodeResult& r);

}  // namespace curaclip::prep
