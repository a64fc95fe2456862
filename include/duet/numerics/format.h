// Number formats as data: a registry of named formats (floats and integers)
// and a parser for run-time format specs.
//
// Spec grammar (case-sensitive, spaces ignored):
//   spec     := NAME | eXmY [fn|fnuz] | fp-spec | int-spec
//   NAME     := fp32 float32 tf32 fp16 float16 half bf16 bfloat16 e4m3fn e4m3fnuz e5m2
//               e5m2fnuz e2m1 e8m0 int4 uint4 int8 uint8 int16 int32 (and ONNX names
//               such as float8e4m3fn)
//   eXmY     := e.g. e3m4, e5m10: 1 sign bit, X exponent bits, Y mantissa bits, bias
//               2^(X-1)-1, IEEE infinity/NaN unless followed by "fn" or "fnuz"
//   fp-spec  := "fp(" S "," E "," M {"," opt} ")"        e.g. fp(1,5,10)
//             | "fp(" kwarg {"," kwarg} ")"              e.g. fp(e=4,m=3,bias=7,fn,sat)
//     S must be 1; kwarg := e=N | m=N | bias=N | opt; opt := ieee | fn | fnuz | nonan | sat
//     (bias defaults to 2^(E-1)-1; "sat" makes saturation the format's default overflow)
//   int-spec := "int(" N ")" | "uint(" N ")" | "int"N | "uint"N     2 <= N <= 32
// Formats are at most 32 bits wide; float formats need 1 <= E <= 11, 0 <= M <= 23
// and E + M <= 31 (values outside FP32's range decode through double).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "duet/numerics/minifloat.h"

namespace duet::numerics {

enum class FormatKind { Float, Integer };

struct Format {
  std::string name;         // canonical short name ("e4m3fn", "int8", or the spec)
  std::string description;  // one line for listings
  FormatKind kind = FormatKind::Float;
  Minifloat fp{};           // kind == Float
  int int_bits = 0;         // kind == Integer
  bool int_signed = true;
  Overflow default_overflow = Overflow::Infinity;

  bool is_float() const { return kind == FormatKind::Float; }
  int bits() const;
  double max_finite() const;     // largest finite value
  double lowest() const;         // most negative finite value (0 for unsigned)
  double min_normal() const;     // integers: 1
  double min_subnormal() const;  // integers: 1
  double epsilon() const;        // machine epsilon 2^-M; integers: 1
  bool has_infinity() const;
  bool has_nan() const;

  // Encode to the format's bit pattern (integers: two's complement in the low
  // int_bits bits; values are rounded with `rounding`, NaN gives 0 and out-of-range
  // values saturate whatever `overflow` says, since integers have nothing else).
  uint32_t encode(float x, Rounding rounding, Overflow overflow, uint64_t random_bits = 0) const;
  uint32_t encode(float x, Rounding rounding = Rounding::NearestEven) const {
    return encode(x, rounding, default_overflow);
  }
  double decode(uint32_t bits) const;
  // Split the bit pattern into named fields for display: "s eeee mmm" style.
  std::string bit_fields(uint32_t bits) const;
};

// Every named format, in listing order.
const std::vector<Format>& named_formats();
// A named format or an alias of one; nullptr when unknown.
const Format* find_format(std::string_view name);
// Named formats and run-time specs (grammar above). Throws duet::Error on a bad spec.
Format parse_format(const std::string& spec);

}  // namespace duet::numerics
