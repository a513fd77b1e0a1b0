// Resizing a ViT's positional embedding to another patch grid, exactly as open_clip's
// resize_pos_embed (open_clip/model.py, 3.3.0) does when a checkpoint is loaded into a
// model of another image size: the class token's row is kept, the grid rows are viewed
// as a [width, old, old] image and resized with
//     F.interpolate(mode="bicubic", align_corners=False, antialias=antialias)
// (open_clip's load_checkpoint calls it with antialias=True, its default).
//
// torch's two bicubic kernels differ even when upsampling: without antialias it is
// upsample_bicubic2d (Keys cubic, A = -0.75, 4 taps, border indices clamped); with
// antialias it is _upsample_bicubic2d_aa (PIL's cubic, a = -0.5, support scaled by
// the downsampling factor, weights normalised to sum 1). Both are reproduced here in
// float64 (torch computes in float32: results agree to ~1e-7 of the values' scale).
#pragma once

#include <vector>

namespace curaclip::interop {

// The [n_out, n_in] 1-D weights of torch's bicubic resize (align_corners=False).
std::vector<double> bicubic_weights_1d(int n_in, int n_out, bool antialias);

// pos: [1 + old*old, width] row-major (class token first) -> [1 + grid*grid, width].
// old must be a whole square root of the grid rows (an Error otherwise).
std::vector<float> resize_pos_embed(const std::vector<float>& pos, int width, int grid, bool antialias);

}  // namespace curaclip::interop
