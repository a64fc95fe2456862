// A parameterized binary floating-point format ("minifloat"): sign bit,
// exponent bits, mantissa bits, bias and a convention for infinity and NaN.
// One encoder/decoder serves FP16, BF16, TF32, the FP8 variants and FP4, so
// every reduced-precision float in Duet is rounded by the same code.
//
// Conventions shared by every path (scalar and the bulk fast paths in
// convert.h, which are tested to agree bit for bit on all 2^32 inputs):
//  - NaN input -> the format's canonical quiet NaN, keeping the input's sign
//    (FNUZ formats have a single unsigned NaN; E2M1 has no NaN and gives +0).
//    NaN payloads are not propagated (native F16C/AVX512-BF16 would keep the
//    top payload bits; the fast paths canonicalize instead).
//  - Infinite input is treated as an overflow and follows the Overflow mode.
//  - FP32 subnormal inputs are honoured exactly (no flush to zero).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

namespace duet::numerics {

enum class Specials {
  IEEE,      // all-ones exponent: infinity (mantissa 0) or NaN
  FiniteNaN, // OCP "fn": no infinity; all-ones exponent and mantissa is NaN (E4M3FN)
  FNUZ,      // no infinity, no negative zero; the pattern 1000...0 is the only NaN
  NoNaN,     // no infinity and no NaN at all (FP4 E2M1); out of range always saturates
  ExponentOnly, // E8M0 scale format: unsigned, no mantissa, 0xFF is NaN
};

enum class Rounding {
  NearestEven,  // IEEE default
  TowardZero,   // truncation
  NearestAway,  // ties away from zero (CUTLASS's TF32 "round half ulp" conversion)
  Stochastic,   // round up with probability (discarded bits)/(quantum); needs random bits
};

enum class Overflow {
  Saturate,  // clamp to the largest finite value
  Infinity,  // IEEE formats: ±inf; formats without infinity: NaN
  NaN,       // always NaN (formats without NaN saturate)
};

const char* rounding_name(Rounding r);
const char* overflow_name(Overflow o);
// Parses "rne"/"nearest-even", "rtz"/"toward-zero", "rna"/"nearest-away", "sr"/"stochastic"
// (and "saturate"/"sat", "inf"/"infinity", "nan"). Throws duet::Error on anything else.
Rounding parse_rounding(const std::string& s);
Overflow parse_overflow(const std::string& s);

struct Minifloat {
  std::string name;
  int exponent_bits;
  int mantissa_bits;
  int bias;
  Specials specials;

  int total_bits() const { return (specials == Specials::ExponentOnly ? 0 : 1) + exponent_bits + mantissa_bits; }
  uint32_t max_finite_bits() const;  // magnitude bits of the largest finite value
  uint32_t nan_bits() const;         // canonical quiet NaN (sign clear)
  uint32_t infinity_bits() const;    // only meaningful for IEEE
  bool has_infinity() const { return specials == Specials::IEEE; }
  bool has_nan() const { return specials != Specials::NoNaN; }
  bool has_negative_zero() const { return specials != Specials::FNUZ && specials != Specials::ExponentOnly; }
  int min_exponent() const { return 1 - bias; }  // exponent of the smallest normal
  double max_finite() const;
  double min_normal() const;
  double min_subnormal() const;  // equals min_normal() when there is no mantissa
  double epsilon() const;        // 2^-mantissa_bits: gap between 1 and the next value
  // True when every value is an FP32 value and FP32's range covers the format, so the
  // exact decode to float holds and the vector encoders apply.
  bool fits_fp32() const;

  // Encode a float. Rounding happens once, from the exact float value.
  // random_bits feeds Rounding::Stochastic (uniform 64-bit); other modes ignore it.
  uint32_t encode(float x, Rounding rounding = Rounding::NearestEven,
                  Overflow overflow = Overflow::Infinity, uint64_t random_bits = 0) const;
  // Decode to float (exact for formats with fits_fp32(); others are rounded to float).
  float decode(uint32_t bits) const;
  double decode_double(uint32_t bits) const;  // exact for every format up to 53 significant bits
  // What an overflowing value of the given sign (already at the format's sign bit) becomes.
  uint32_t overflow_bits(uint32_t sign, Overflow overflow) const;
};

// The named formats of ONNX and common hardware.
const Minifloat& fp32();
const Minifloat& fp16();
const Minifloat& bf16();
const Minifloat& tf32();
const Minifloat& e4m3fn();
const Minifloat& e4m3fnuz();
const Minifloat& e5m2();
const Minifloat& e5m2fnuz();
const Minifloat& e2m1();
const Minifloat& e8m0();

// Counter-based random bits for stochastic rounding: a pure function of
// (seed, index), so bulk results do not depend on threading or chunking.
// (SplitMix64 finalizer applied to seed and index; passes BigCrush as a counter RNG.)
uint64_t stochastic_bits(uint64_t seed, uint64_t index);

// Defined here, not in minifloat.cc, so bulk loops (convert.cc's scalar path, the
// emulated kernels) inline them: the 2^32 exhaustive sweeps spend most of their
// time in this reference encoder.
inline uint32_t Minifloat::max_finite_bits() const {
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

inline uint32_t Minifloat::encode(float x, Rounding rounding, Overflow overflow, uint64_t random_bits) const {
  if (specials == Specials::ExponentOnly) {
    // E8M0: value 2^(e-127). Round the exponent (ties away, as the OCP MX spec's
    // reference conversion does for the nearest power of two).
    if (std::isnan(x) || x <= 0.0f) return 0xFF;
    if (std::isinf(x)) return overflow == Overflow::Saturate ? 0xFE : 0xFF;
    int e = 0;
    const float m = std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
    int exp2 = e - 1;                   // x = (2m) * 2^(e-1)
    if (rounding == Rounding::NearestEven || rounding == Rounding::NearestAway) {
      if (2.0f * m >= 1.5f) exp2 += 1;
    } else if (rounding == Rounding::Stochastic) {
      // Round up with probability (x - 2^k) / 2^k, the distance to the lower power of two.
      if (static_cast<double>(random_bits >> 11) * 0x1p-53 < 2.0 * m - 1.0) exp2 += 1;
    }
    const int biased = exp2 + bias;
    if (biased < 0) return 0;
    if (biased > 254) return overflow == Overflow::Saturate ? 0xFE : 0xFF;
    return static_cast<uint32_t>(biased);
  }
  // Integer-only and branch-light: the rounding decisions depend on low mantissa
  // bits, which no branch predictor can guess, so they are computed as 0/1 values.
  const uint32_t fbits = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (fbits >> 31) << (total_bits() - 1);
  const uint32_t abs_bits = fbits & 0x7FFFFFFFu;
  uint32_t fexp = abs_bits >> 23;
  if (fexp == 0xFF) {
    if (abs_bits != 0x7F800000u) {  // NaN
      return specials == Specials::NoNaN ? 0u : (nan_bits() | (specials == Specials::FNUZ ? 0u : sign));
    }
    return overflow_bits(sign, overflow);  // infinity counts as an overflow
  }
  if (abs_bits == 0) return specials == Specials::FNUZ ? 0u : sign;
  const uint32_t is_normal = fexp != 0;
  const uint64_t significand = (abs_bits & 0x7FFFFFu) | (is_normal << 23);
  fexp += 1 - is_normal;  // FP32 subnormals: value = significand * 2^(1-127-23)
  const int e = static_cast<int>(fexp) - 127;  // value = significand * 2^(e-23)
  const int emin = 1 - bias;
  const int te = e < emin ? emin : e;
  // Number of quanta of size 2^(te - mantissa_bits): significand * 2^(e - 23 - te + p)
  const int shift = 23 + te - mantissa_bits - e;
  uint64_t q;
  if (shift <= 0) {
    q = significand << (-shift);
  } else if (shift >= 64) {
    q = 0;  // below 2^-40 of the smallest subnormal: zero in every rounding mode here
  } else {
    q = significand >> shift;
    const uint64_t rem = significand & ((uint64_t{1} << shift) - 1);
    const uint64_t half = uint64_t{1} << (shift - 1);
    switch (rounding) {
      case Rounding::NearestEven: q += (rem > half) | ((rem == half) & q & 1); break;
      case Rounding::NearestAway: q += rem >= half; break;
      case Rounding::Stochastic:
        // Add a uniform integer in [0, 2^shift): rounds up with probability rem / 2^shift.
        q += (rem + (random_bits >> (64 - shift))) >> shift;
        break;
      case Rounding::TowardZero: break;
    }
  }
  // For normal numbers q carries the hidden bit; adding it to the exponent
  // field shifted by one encodes normals and subnormals alike, and a rounding
  // carry moves into the exponent on its own.
  const uint64_t magnitude = (static_cast<uint64_t>(te - emin) << mantissa_bits) + q;
  if (magnitude > max_finite_bits()) return overflow_bits(sign, overflow);
  if (magnitude == 0 && specials == Specials::FNUZ) return 0;
  return sign | static_cast<uint32_t>(magnitude);
}

}  // namespace duet::numerics
