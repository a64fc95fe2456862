#include "duet/numerics/minifloat.h"

#include <bit>
#include <cmath>
#include <limits>

namespace duet::numerics {

uint32_t Minifloat::max_finite_bits() const {
  const uint32_t exp_all = (1u << exponent_bits) - 1;
  const uint32_t man_all = (1u << mantissa_bits) - 1;
  switch (specials) {
    case Specials::IEEE: return ((exp_all - 1) << mantissa_bits) | man_all;
    case Specials::FiniteNaN: return (exp_all << mantissa_bits) | (man_all - 1);
    case Specials::FNUZ:
    case Specials::NoNaN: return (exp_all << mantissa_bits) | man_all;
    case Specials::ExponentOnly: return exp_all - 1;
  }
  return 0;
}

uint32_t Minifloat::nan_bits() const {
  const uint32_t exp_all = (1u << exponent_bits) - 1;
  const uint32_t man_all = (1u << mantissa_bits) - 1;
  switch (specials) {
    case Specials::IEEE:
      return (exp_all << mantissa_bits) | (mantissa_bits > 0 ? 1u << (mantissa_bits - 1) : 0u);
    case Specials::FiniteNaN: return (exp_all << mantissa_bits) | man_all;
    case Specials::FNUZ: return 1u << (total_bits() - 1);
    case Specials::NoNaN: return 0;  // no NaN: callers map NaN to zero
    case Specials::ExponentOnly: return 0xFF;
  }
  return 0;
}

uint32_t Minifloat::infinity_bits() const {
  return ((1u << exponent_bits) - 1) << mantissa_bits;
}

uint32_t Minifloat::encode(float x, Rounding rounding, Overflow overflow) const {
  const uint32_t sign_bit = 1u << (total_bits() - 1);
  if (specials == Specials::ExponentOnly) {
    // E8M0: value 2^(e-127). Round the exponent (ties away, as the OCP MX spec's
    // reference conversion does for the nearest power of two).
    if (std::isnan(x) || x <= 0.0f) return 0xFF;
    if (std::isinf(x)) return overflow == Overflow::Saturate ? 0xFE : 0xFF;
    int e = 0;
    const float m = std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
    int exp2 = e - 1;                   // x = (2m) * 2^(e-1)
    if (rounding != Rounding::TowardZero && 2.0f * m >= 1.5f) exp2 += 1;
    const int biased = exp2 + bias;
    if (biased < 0) return 0;
    if (biased > 254) return overflow == Overflow::Saturate ? 0xFE : 0xFF;
    return static_cast<uint32_t>(biased);
  }
  const uint32_t fbits = std::bit_cast<uint32_t>(x);
  const bool negative = (fbits >> 31) != 0;
  const uint32_t sign = negative ? sign_bit : 0u;
  if (std::isnan(x)) return specials == Specials::NoNaN ? 0u : (nan_bits() | (specials == Specials::FNUZ ? 0u : sign));
  const uint32_t max_bits = max_finite_bits();
  auto overflowed = [&]() -> uint32_t {
    if (overflow == Overflow::Saturate || specials == Specials::NoNaN) return sign | max_bits;
    if (specials == Specials::IEEE) return sign | infinity_bits();
    return specials == Specials::FNUZ ? nan_bits() : (sign | nan_bits());
  };
  if (std::isinf(x)) return overflowed();
  uint32_t fexp = (fbits >> 23) & 0xFF;
  uint64_t significand = fbits & 0x7FFFFF;
  if (fexp == 0) {
    if (significand == 0) return specials == Specials::FNUZ ? 0u : sign;
    fexp = 1;  // subnormal float: value = significand * 2^(1-127-23)
  } else {
    significand |= 0x800000;
  }
  const int e = static_cast<int>(fexp) - 127;  // value = significand * 2^(e-23)
  const int emin = 1 - bias;
  const int te = e < emin ? emin : e;
  // Number of quanta of size 2^(te - mantissa_bits): significand * 2^(e - 23 - te + p)
  const int shift = 23 + te - mantissa_bits - e;
  uint64_t q;
  if (shift <= 0) {
    q = significand << (-shift);
  } else if (shift > 40) {
    q = 0;
    if (rounding == Rounding::NearestEven || rounding == Rounding::NearestAway) q = 0;
  } else {
    q = significand >> shift;
    const uint64_t rem = significand & ((uint64_t{1} << shift) - 1);
    const uint64_t half = uint64_t{1} << (shift - 1);
    if (rounding == Rounding::NearestEven) {
      if (rem > half || (rem == half && (q & 1))) ++q;
    } else if (rounding == Rounding::NearestAway) {
      if (rem >= half) ++q;
    }
  }
  // For normal numbers q carries the hidden bit; adding it to the exponent
  // field shifted by one encodes normals and subnormals alike, and a rounding
  // carry moves into the exponent on its own.
  const uint64_t magnitude = (static_cast<uint64_t>(te - emin) << mantissa_bits) + q;
  if (magnitude > max_bits) return overflowed();
  if (magnitude == 0 && specials == Specials::FNUZ) return 0;
  return sign | static_cast<uint32_t>(magnitude);
}

float Minifloat::decode(uint32_t bits) const {
  if (specials == Specials::ExponentOnly) {
    bits &= 0xFF;
    if (bits == 0xFF) return std::numeric_limits<float>::quiet_NaN();
    return std::ldexp(1.0f, static_cast<int>(bits) - bias);
  }
  const int total = total_bits();
  const uint32_t sign_bit = 1u << (total - 1);
  bits &= (total == 32 ? 0xFFFFFFFFu : ((1u << total) - 1));
  const bool negative = (bits & sign_bit) != 0;
  const uint32_t magnitude = bits & (sign_bit - 1);
  const uint32_t exp_all = (1u << exponent_bits) - 1;
  const uint32_t exp_field = magnitude >> mantissa_bits;
  const uint32_t man_field = magnitude & ((1u << mantissa_bits) - 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  switch (specials) {
    case Specials::IEEE:
      if (exp_field == exp_all) {
        if (man_field != 0) return nan;
        return negative ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
      }
      break;
    case Specials::FiniteNaN:
      if (magnitude == max_finite_bits() + 1) return nan;
      break;
    case Specials::FNUZ:
      if (bits == sign_bit) return nan;
      break;
    default: break;
  }
  float value;
  if (exp_field == 0) {
    value = std::ldexp(static_cast<float>(man_field), 1 - bias - mantissa_bits);
  } else {
    value = std::ldexp(static_cast<float>(man_field | (1u << mantissa_bits)),
                       static_cast<int>(exp_field) - bias - mantissa_bits);
  }
  return negative ? -value : value;
}

const Minifloat& fp16() { static const Minifloat f{"float16", 5, 10, 15, Specials::IEEE}; return f; }
const Minifloat& bf16() { static const Minifloat f{"bfloat16", 8, 7, 127, Specials::IEEE}; return f; }
const Minifloat& tf32() { static const Minifloat f{"tf32", 8, 10, 127, Specials::IEEE}; return f; }
const Minifloat& e4m3fn() { static const Minifloat f{"float8e4m3fn", 4, 3, 7, Specials::FiniteNaN}; return f; }
const Minifloat& e4m3fnuz() { static const Minifloat f{"float8e4m3fnuz", 4, 3, 8, Specials::FNUZ}; return f; }
const Minifloat& e5m2() { static const Minifloat f{"float8e5m2", 5, 2, 15, Specials::IEEE}; return f; }
const Minifloat& e5m2fnuz() { static const Minifloat f{"float8e5m2fnuz", 5, 2, 16, Specials::FNUZ}; return f; }
const Minifloat& e2m1() { static const Minifloat f{"float4e2m1", 2, 1, 1, Specials::NoNaN}; return f; }
const Minifloat& e8m0() { static const Minifloat f{"float8e8m0", 8, 0, 127, Specials::ExponentOnly}; return f; }

}  // namespace duet::numerics
