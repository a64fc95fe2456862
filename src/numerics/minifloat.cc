#include "duet/numerics/minifloat.h"

#include <bit>
#include <cmath>
#include <limits>

#include "duet/core/error.h"

namespace duet::numerics {

const char* rounding_name(Rounding r) {
  switch (r) {
    case Rounding::NearestEven: return "nearest-even";
    case Rounding::TowardZero: return "toward-zero";
    case Rounding::NearestAway: return "nearest-away";
    case Rounding::Stochastic: return "stochastic";
  }
  return "?";
}

const char* overflow_name(Overflow o) {
  switch (o) {
    case Overflow::Saturate: return "saturate";
    case Overflow::Infinity: return "infinity";
    case Overflow::NaN: return "nan";
  }
  return "?";
}

Rounding parse_rounding(const std::string& s) {
  if (s == "rne" || s == "nearest-even" || s == "nearest") return Rounding::NearestEven;
  if (s == "rtz" || s == "toward-zero" || s == "truncate") return Rounding::TowardZero;
  if (s == "rna" || s == "nearest-away") return Rounding::NearestAway;
  if (s == "sr" || s == "stochastic") return Rounding::Stochastic;
  fail("unknown rounding mode '", s, "' (expected rne, rtz, rna or sr)");
}

Overflow parse_overflow(const std::string& s) {
  if (s == "saturate" || s == "sat") return Overflow::Saturate;
  if (s == "infinity" || s == "inf") return Overflow::Infinity;
  if (s == "nan") return Overflow::NaN;
  fail("unknown overflow mode '", s, "' (expected saturate, inf or nan)");
}

uint64_t stochastic_bits(uint64_t seed, uint64_t index) {
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(mix(seed + 0x9E3779B97F4A7C15ull) ^ (index * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull));
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

double Minifloat::max_finite() const { return decode_double(max_finite_bits()); }
double Minifloat::min_normal() const { return std::ldexp(1.0, min_exponent()); }
double Minifloat::min_subnormal() const { return std::ldexp(1.0, min_exponent() - mantissa_bits); }
double Minifloat::epsilon() const { return std::ldexp(1.0, -mantissa_bits); }

bool Minifloat::fits_fp32() const {
  if (specials == Specials::ExponentOnly) return false;
  const int exp_all = (1 << exponent_bits) - 1;
  const int emax = (specials == Specials::IEEE ? exp_all - 1 : exp_all) - bias;
  return exponent_bits <= 8 && mantissa_bits <= 23 && min_exponent() >= -126 && emax <= 127;
}

uint32_t Minifloat::overflow_bits(uint32_t sign, Overflow overflow) const {
  if (overflow == Overflow::Saturate || specials == Specials::NoNaN) return sign | max_finite_bits();
  if (specials == Specials::IEEE && overflow == Overflow::Infinity) return sign | infinity_bits();
  return specials == Specials::FNUZ ? nan_bits() : (sign | nan_bits());
}

double Minifloat::decode_double(uint32_t bits) const {
  if (specials == Specials::ExponentOnly) {
    bits &= 0xFF;
    if (bits == 0xFF) return std::numeric_limits<double>::quiet_NaN();
    return std::ldexp(1.0, static_cast<int>(bits) - bias);
  }
  const int total = total_bits();
  const uint32_t sign_bit = 1u << (total - 1);
  bits &= (total == 32 ? 0xFFFFFFFFu : ((1u << total) - 1));
  const bool negative = (bits & sign_bit) != 0;
  const uint32_t magnitude = bits & (sign_bit - 1);
  const uint32_t exp_all = (1u << exponent_bits) - 1;
  const uint32_t exp_field = magnitude >> mantissa_bits;
  const uint32_t man_field = magnitude & ((1u << mantissa_bits) - 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  switch (specials) {
    case Specials::IEEE:
      if (exp_field == exp_all) {
        if (man_field != 0) return nan;
        return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
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
  double value;
  if (exp_field == 0) {
    value = std::ldexp(static_cast<double>(man_field), 1 - bias - mantissa_bits);
  } else {
    value = std::ldexp(static_cast<double>(man_field | (1u << mantissa_bits)),
                       static_cast<int>(exp_field) - bias - mantissa_bits);
  }
  return negative ? -value : value;
}

float Minifloat::decode(uint32_t bits) const { return static_cast<float>(decode_double(bits)); }

const Minifloat& fp32() { static const Minifloat f{"float32", 8, 23, 127, Specials::IEEE}; return f; }
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
