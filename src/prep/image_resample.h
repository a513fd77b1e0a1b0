// Resampling for `curaclip prep` (src/prep/image.h): an RGB image to another size
// with PIL's BICUBIC filter (Keys cubic, a = -0.5: Catmull-Rom), antialiased the way
// PIL.Image.resize is (the kernel is widened by the reduction factor), with pixel
// centres aligned as PIL aligns them. The work is zimg's (the resizer of VapourSynth
// and FFmpeg's zscale; SIMD); this file only describes the images to it.
//
// Thread safety: any number of threads; each keeps its own cache of filter graphs
// (one per (input size, output size), as a dataset repeats the same few sizes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace curaclip::prep {

// Packed 8-bit RGB, row-major [h, w, 3].
struct RgbImage {
    int w = 0, h = 0;
    std::vector<uint8_t> px;
};

// `in` resampled to tw x th (either side may grow or shrink). Returns false with
// `error` set only when zimg refuses (out of memory); never for valid sizes.
bool resample_bicubic(const RgbImage& in, int tw, int th, RgbImage& out, std::string& error);

}  // namespace curaclip::prep
