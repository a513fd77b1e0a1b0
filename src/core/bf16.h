// bfloat16 on the host: the rounding every part of curaclip uses when an fp32 value
// becomes bf16 (the CUDA backend's uploads, its AdamW kernel's __float2bfloat16_rn, the
// checkpoint writer's master check), so that the host and the device agree bit for bit
// on every value but NaN (NaN stays NaN; its payload may differ from the device's).
//
//  * bf16_bits(f): round to nearest, ties to even (as __float2bfloat16_rn and
//    torch's float -> bfloat16); Inf stays Inf; NaN stays a quiet NaN (its payload
//    truncated, the quiet bit set), never rounded up into Inf.
//  * bf16_to_float(h): exact (bf16 is the top half of an fp32).
//  * master_agrees(master, value): the rule of fp32 master weights (docs/cuda.md "Master
//    weights"): the fp32 master of a bf16 parameter is its true value only while rounding
//    it gives the parameter's current bf16 bits. A write to the parameter behind the
//    optimizer's back (a clamp, an upload) breaks the agreement, and the parameter's
//    own value wins. A non-finite value always wins: a finite master just below
//    FLT_MAX rounds to bf16 Inf, and must not hide that the model holds an Inf.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace curaclip {

inline uint16_t bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) {  // Inf or NaN: truncate, keep NaN quiet
        uint16_t h = uint16_t(u >> 16);
        if (u & 0x007fffffu) h |= 0x0040u;
        return h;
    }
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return uint16_t(u >> 16);
}

inline float bf16_to_float(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// value: the parameter as stored (a bf16 widened to float); master: its fp32 copy.
inline bool master_agrees(float master, float value) {
    return std::isfinite(value) && bf16_bits(master) == bf16_bits(value);
}

}  // namespace curaclip
