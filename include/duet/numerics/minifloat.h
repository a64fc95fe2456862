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

}  // namespace duet::numerics
