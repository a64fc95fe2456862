// A parameterized binary floating-point format ("minifloat"): sign bit,
// exponent bits, mantissa bits, bias and a convention for infinity and NaN.
// One encoder/decoder serves FP16, BF16, TF32, the FP8 variants and FP4, so
// every reduced-precision float in Duet is rounded by the same code.
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

enum class Rounding { NearestEven, TowardZero, NearestAway };

enum class Overflow {
  Saturate,  // clamp to the largest finite value
  Infinity,  // IEEE formats: ±inf; formats without infinity: NaN
};

struct Minifloat {
  std::string name;
  int exponent_bits;
  int mantissa_bits;
  int bias;
  Specials specials;

  int total_bits() const { return 1 + exponent_bits + mantissa_bits; }
  uint32_t max_finite_bits() const;  // magnitude bits of the largest finite value
  uint32_t nan_bits() const;         // canonical quiet NaN (sign clear)
  uint32_t infinity_bits() const;    // only meaningful for IEEE
  double max_finite() const { return decode(max_finite_bits()); }

  // Encode a float. Rounding happens once, from the exact float value.
  uint32_t encode(float x, Rounding rounding = Rounding::NearestEven,
                  Overflow overflow = Overflow::Infinity) const;
  // Decode to float (exact: every format here is a subset of FP32 values,
  // except TF32-like formats wider than FP32, which Duet does not define).
  float decode(uint32_t bits) const;
};

// The named formats of ONNX and common hardware.
const Minifloat& fp16();
const Minifloat& bf16();
const Minifloat& tf32();
const Minifloat& e4m3fn();
const Minifloat& e4m3fnuz();
const Minifloat& e5m2();
const Minifloat& e5m2fnuz();
const Minifloat& e2m1();
const Minifloat& e8m0();

}  // namespace duet::numerics
