// Storage types for the reduced-precision floats of ONNX. Each holds the raw
// bits and converts to and from float through numerics::Minifloat (round to
// nearest even, as ONNX Cast does); arithmetic happens in float.
#pragma once
#include <bit>
#include <cstdint>
#include <cstring>

#include "duet/numerics/minifloat.h"

namespace duet {

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_bits_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

float fp16_bits_to_float(uint16_t h);
uint16_t float_to_fp16_bits(float f);

#define DUET_DEFINE_SMALL_FLOAT(NAME, STORAGE, TO_BITS, FROM_BITS)               \
  struct NAME {                                                                \
    STORAGE bits = 0;                                                          \
    NAME() = default;                                                          \
    NAME(float f) : bits(static_cast<STORAGE>(TO_BITS(f))) {}                  \
    operator float() const { return FROM_BITS(bits); }                         \
    static NAME from_bits(STORAGE b) { NAME v; v.bits = b; return v; }         \
  };

inline uint32_t e4m3fn_encode(float f) { return numerics::e4m3fn().encode(f, numerics::Rounding::NearestEven, numerics::Overflow::Saturate); }
inline uint32_t e4m3fnuz_encode(float f) { return numerics::e4m3fnuz().encode(f, numerics::Rounding::NearestEven, numerics::Overflow::Saturate); }
inline uint32_t e5m2_encode(float f) { return numerics::e5m2().encode(f, numerics::Rounding::NearestEven, numerics::Overflow::Saturate); }
inline uint32_t e5m2fnuz_encode(float f) { return numerics::e5m2fnuz().encode(f, numerics::Rounding::NearestEven, numerics::Overflow::Saturate); }
inline uint32_t e8m0_encode(float f) { return numerics::e8m0().encode(f, numerics::Rounding::NearestAway, numerics::Overflow::Saturate); }
inline float e4m3fn_decode(uint32_t b) { return numerics::e4m3fn().decode(b); }
inline float e4m3fnuz_decode(uint32_t b) { return numerics::e4m3fnuz().decode(b); }
inline float e5m2_decode(uint32_t b) { return numerics::e5m2().decode(b); }
inline float e5m2fnuz_decode(uint32_t b) { return numerics::e5m2fnuz().decode(b); }
inline float e8m0_decode(uint32_t b) { return numerics::e8m0().decode(b); }

DUET_DEFINE_SMALL_FLOAT(float16, uint16_t, float_to_fp16_bits, fp16_bits_to_float)
DUET_DEFINE_SMALL_FLOAT(bfloat16, uint16_t, float_to_bf16_bits, bf16_bits_to_float)
// FP8 types convert from float with saturation (ONNX Cast's default, saturate=1).
DUET_DEFINE_SMALL_FLOAT(float8e4m3fn, uint8_t, e4m3fn_encode, e4m3fn_decode)
DUET_DEFINE_SMALL_FLOAT(float8e4m3fnuz, uint8_t, e4m3fnuz_encode, e4m3fnuz_decode)
DUET_DEFINE_SMALL_FLOAT(float8e5m2, uint8_t, e5m2_encode, e5m2_decode)
DUET_DEFINE_SMALL_FLOAT(float8e5m2fnuz, uint8_t, e5m2fnuz_encode, e5m2fnuz_decode)
DUET_DEFINE_SMALL_FLOAT(float8e8m0, uint8_t, e8m0_encode, e8m0_decode)

#undef DUET_DEFINE_SMALL_FLOAT

}  // namespace duet
