#include <gtest/gtest.h>

#include <cmath>

#include "core/philox.h"

namespace curaclip {
namespace {

// Known-answer vectors of Random123 (kat_vectors, philox4x32 10 rounds).
TEST(Philox, KnownAnswerVectors) {
    uint32_t out[4];
    const uint32_t zero_ctr[4] = {0, 0, 0, 0}, zero_key[2] = {0, 0};
    Philox::philox4x32_10(zero_ctr, zero_key, out);
    EXPECT_EQ(out[0], 0x6627e8d5u);
    EXPECT_EQ(out[1], 0xe169c58du);
    EXPECT_EQ(out[2], 0xbc57ac4cu);
    EXPECT_EQ(out[3], 0x9b00dbd8u);
    const uint32_t ones_ctr[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    const uint32_t ones_key[2] = {0xffffffffu, 0xffffffffu};
    Philox::philox4x32_10(ones_ctr, ones_key, out);
    EXPECT_EQ(out[0], 0x408f276du);
    EXPECT_EQ(out[1], 0x41c83b0eu);
    EXPECT_EQ(out[2], 0xa20bc7c6u);
    EXPECT_EQ(out[3], 0x6d5451fdu);
}

TEST(Philox, StreamsAreReproducibleAndDistinct) {
    Philox a(42, RngPurpose::jest, 7, 1), b(42, RngPurpose::jest, 7, 1), c(42, RngPurpose::jest, 8, 1);
    int same_c = 0;
    for (int i = 0; i < 100; ++i) {
        const uint32_t x = a.next_u32();
        EXPECT_EQ(x, b.next_u32());
        same_c += x == c.next_u32();
    }
    EXPECT_LT(same_c, 3);
}

TEST(Philox, UniformAndNormalMoments) {
    Philox r(1, RngPurpose::test);
    double su = 0, sn = 0, sn2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
        const double u = r.uniform();
        ASSERT_GT(u, 0.0);
        ASSERT_LT(u, 1.0);
        su += u;
        const double z = r.normal();
        sn += z;
        sn2 += z * z;
    }
    EXPECT_NEAR(su / n, 0.5, 0.005);
    EXPECT_NEAR(sn / n, 0.0, 0.01);
    EXPECT_NEAR(sn2 / n, 1.0, 0.015);
}

}  // namespace
}  // namespace curaclip
