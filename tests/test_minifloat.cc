#include <gtest/gtest.h>

#include <cmath>

#include "duet/numerics/minifloat.h"

using namespace duet::numerics;

TEST(Minifloat, E4M3FNLargestFiniteIs448AndOverflowSaturatesOrGivesNaN) {
  EXPECT_EQ(e4m3fn().max_finite(), 448.0);
  EXPECT_EQ(e4m3fn().encode(1000.0f, Rounding::NearestEven, Overflow::Saturate), 0x7Eu);
  EXPECT_EQ(e4m3fn().encode(1000.0f, Rounding::NearestEven, Overflow::Infinity), 0x7Fu);
  EXPECT_TRUE(std::isnan(e4m3fn().decode(0x7F)));
}

TEST(Minifloat, E5M2IsIeeeLikeWithMax57344) {
  EXPECT_EQ(e5m2().max_finite(), 57344.0);
  EXPECT_EQ(e5m2().encode(1e6f), 0x7Cu);  // +inf
}

TEST(Minifloat, RoundTripsEveryFp16Pattern) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = fp16().decode(b);
    if (std::isnan(f)) continue;
    EXPECT_EQ(fp16().encode(f), b) << b;
  }
}

TEST(Minifloat, TiesRoundToEvenInBf16) {
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(bf16().encode(1.0f + std::ldexp(1.0f, -8)), 0x3F80u);
  EXPECT_EQ(bf16().encode(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82u);
}
