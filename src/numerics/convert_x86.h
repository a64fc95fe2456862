// x86 vector kernels for numerics/convert.cc. Each processes whole vectors from
// the start of the array and returns how many elements it wrote; the caller
// finishes the tail with the scalar encoder. Callers check the CPU first.
#pragma once
#include <cstddef>
#include <cstdint>

namespace duet::numerics::x86 {

// Everything the generic encoder needs about a format, precomputed.
struct GenericParams {
  uint32_t mantissa_bits;   // <= 22
  uint32_t emin_biased;     // FP32 biased exponent of the format's smallest normal (>= 1)
  uint32_t max_bits;        // magnitude of the largest finite value
  uint32_t sign_shift;      // total_bits - 1
  uint32_t nan_value;       // result for NaN input, sign excluded
  uint32_t nan_signed;      // 1: OR the input sign into nan_value
  uint32_t overflow_value;  // result on overflow (and infinite input), sign excluded
  uint32_t overflow_signed;
  uint32_t unsigned_zero;   // 1: FNUZ, zero has no sign
  uint32_t rounding;        // 0 nearest-even, 1 toward-zero, 2 nearest-away
};

size_t encode_generic_avx2(const GenericParams& p, const float* src, size_t n, uint8_t* dst);
size_t encode_generic_avx2(const GenericParams& p, const float* src, size_t n, uint16_t* dst);
size_t encode_generic_avx2(const GenericParams& p, const float* src, size_t n, uint32_t* dst);
size_t encode_generic_avx512(const GenericParams& p, const float* src, size_t n, uint8_t* dst);
size_t encode_generic_avx512(const GenericParams& p, const float* src, size_t n, uint16_t* dst);
size_t encode_generic_avx512(const GenericParams& p, const float* src, size_t n, uint32_t* dst);
size_t encode_fp16_f16c(const float* src, size_t n, uint16_t* dst);
// E5M2 (IEEE-like, bias 15) through F16C, any rounding but stochastic (convert_x86.cc).
size_t encode_e5m2_f16c(const GenericParams& p, const float* src, size_t n, uint8_t* dst);
size_t encode_fp16_avx512(const float* src, size_t n, uint16_t* dst);
size_t encode_bf16_avx512bf16(const float* src, size_t n, uint16_t* dst);

}  // namespace duet::numerics::x86
