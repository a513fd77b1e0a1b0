// The host-side linear maps of FlexiViT (Beyer et al. 2023, "FlexiViT: one
// model for all patch sizes"), built once in float64:
//
//  * bilinear_resize_matrix(n_in, n_out): the [n_out², n_in²] matrix of a
//    bilinear resize of an n_in×n_in grid (row-major flattening y*n + x) to
//    n_out×n_out, exactly torch's F.interpolate(mode="bilinear",
//    align_corners=False, antialias=False) applied to one-hot inputs.
//    It resizes patches (B) and the positional-embedding grid (M).
//  * pi_resize_matrix(p, p'): R = pinv(Bᵀ) [p'², p²] with B the p→p' patch
//    resize. A patch-embedding kernel w (one (out, in) channel, p² values) maps
//    to ŵ = R w, so that <x, w> = <B x, ŵ> for every patch x when p' >= p
//    (B injective), and ŵ = argmin ||Bᵀŵ - w|| (least squares, minimum norm)
//    when p' < p. On the backend this is W' = W Rᵀ (W viewed [C·Cin, p²]).
//
// The pseudo-inverse comes from LAPACK's SVD least-squares solver (dgelsd),
// which OpenBLAS ships.
#pragma once

#include <vector>

namespace curaclip {

// 1-D bilinear weights [n_out, n_in] (torch's upsample_bilinear2d index rule).
std::vector<double> bilinear_weights_1d(int n_in, int n_out);
// [n_out², n_in²] = kron(A, A) with A = bilinear_weights_1d(n_in, n_out).
std::vector<double> bilinear_resize_matrix(int n_in, int n_out);
// Moore-Penrose pseudo-inverse of a row-major [rows, cols] matrix -> row-major [cols, rows].
std::vector<double> pseudo_inverse(const std::vector<double>& a, int rows, int cols);
// R = pinv(Bᵀ) [p_out², p_in²], B = bilinear_resize_matrix(p_in, p_out).
std::vector<double> pi_resize_matrix(int p_in, int p_out);

}  // namespace curaclip
