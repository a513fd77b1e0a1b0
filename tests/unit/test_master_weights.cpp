// fp32 master weights beside the parameters (src/model/parameters.h, core/bf16.h): the
// host's bf16 rounding (the one the CUDA backend's uploads and its AdamW kernel use),
// the agreement rule that decides when a master is still a parameter's true value, and
// the CPU side of the contract (f32/f64 parameters are their own masters). The GPU half
// (masters updated, checkpointed and restored bit for bit) is in test_cuda_backend.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/registry.h"
#include "core/bf16.h"
#include "model/parameters.h"
#include "tests/common/test_files.h"

namespace curaclip {
namespace {

using testing::expect_error;

float with_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

TEST(Bf16, RoundsToNearestTiesToEven) {
    // bf16 keeps 8 significant bits: the spacing at 1.0 is 2^-7.
    EXPECT_EQ(bf16_bits(1.0f), 0x3f80);
    EXPECT_EQ(bf16_bits(1.0f + 0x1p-8f), 0x3f80);             // tie, 1.0 is even
    EXPECT_EQ(bf16_bits(1.0f + 3 * 0x1p-8f), 0x3f82);         // tie, 1 + 2^-6 is even
    EXPECT_EQ(bf16_bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // above the tie: up
    EXPECT_EQ(bf16_bits(-2.5f), 0xc020);
    EXPECT_EQ(bf16_to_float(bf16_bits(0.15625f)), 0.15625f);  // exact in bf16
    EXPECT_EQ(bf16_bits(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to Inf, as torch
}

TEST(Bf16, KeepsInfinitiesAndQuietNaNs) {
    EXPECT_EQ(bf16_bits(std::numeric_limits<float>::infinity()), 0x7f80);
    EXPECT_EQ(bf16_bits(-std::numeric_limits<float>::infinity()), 0xff80);
    // A NaN whose payload lies in the low half only must not become Inf.
    const uint16_t h = bf16_bits(with_bits(0x7f800001u));
    EXPECT_TRUE(std::isnan(bf16_to_float(h)));
    EXPECT_EQ(h & 0x0040, 0x0040);  // quiet
}

TEST(MasterWeights, AgreeWhileTheyRoundToTheStoredValue) {
    const float value = bf16_to_float(bf16_bits(1.0f));
    EXPECT_TRUE(master_agrees(1.0f, value));
    EXPECT_TRUE(master_agrees(1.0f + 0x1p-9f, value));  // an update below bf16's spacing
    EXPECT_FALSE(master_agrees(1.0f + 0x1p-7f, value)); // the value was written since
    EXPECT_FALSE(master_agrees(0.0f, value));           // a fresh (zero) master: seeded on first use
    EXPECT_TRUE(master_agrees(0.0f, 0.0f));             // ... and exact where the value is 0
    // A finite master that rounds to bf16 Inf never hides the Inf (parameters_finite,
    // the checkpoint writer's refusal): the value wins.
    const float inf = std::numeric_limits<float>::infinity();
    const float below_max = std::numeric_limits<float>::max();
    ASSERT_EQ(bf16_bits(below_max), bf16_bits(inf));
    EXPECT_FALSE(master_agrees(below_max, inf));
    EXPECT_FALSE(master_agrees(1.0f, std::numeric_limits<float>::quiet_NaN()));
}

// The CPU backends compute in f32/f64: no master arena, no master tensor, and an
// adamw_step given one is refused (a caller mixing up backends, not a user mistake).
TEST(MasterWeights, CpuParametersAreTheirOwnMasters) {
    for (const char* name : {"cpu", "cpu-f64"}) {
        auto be = make_backend(name);
        ParameterSet ps(*be);
        ps.declare("w", Shape{5}, true);
        ps.finalize();
        EXPECT_FALSE(ps.has_masters()) << name;
        EXPECT_EQ(ps.master_bytes(), 0u) << name;
        EXPECT_TRUE(ps[0].master.empty()) << name;
        const std::vector<double> v = {0.1, -0.2, 0.3, 1e-3, 7.0};
        ps.set_value(0, v.data());
        std::vector<double> got = ps.values_to_host(0);
        for (size_t i = 0; i < v.size(); ++i)
            EXPECT_EQ(got[i], be->dtype() == DType::f64 ? v[i] : double(float(v[i]))) << name << " " << i;
        Tensor stray{be->alloc(5 * 4), DType::f32, Shape{5}};
        AdamWParams hp;
        expect_error([&] { be->adamw_step(ps[0].value, ps[0].grad, ps[0].adam_m, ps[0].adam_v, stray, hp, 1.0f); },
                     {"adamw_step", "has no master copy"});
        be->free(stray.data);
    }
}

}  // namespace
}  // namespace curaclip
