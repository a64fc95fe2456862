// Bulk conversions between float32 arrays and format bit patterns, with native
// fast paths chosen at run time (__builtin_cpu_supports) and a portable scalar
// path. Every path gives exactly Minifloat::encode's result (tested on all
// 2^32 inputs), so a path is a speed choice, never a numerics choice.
//
// Native instructions vs Duet's (IEEE) rules, and what the fast paths do about it:
//  - F16C VCVTPS2PH (RNE): IEEE-exact for finite values and infinities; NaN keeps
//    the top payload bits. The path rewrites NaN to the canonical 0x7E00 | sign.
//    It only serves Overflow::Infinity (IEEE's own overflow rule).
//    E5M2 (FP16's top byte) also goes through F16C: VCVTPS2PH toward zero, the low
//    bit set where it was inexact (round to odd), then an integer rounding to the
//    top byte in 16-bit lanes; exact in every mode but stochastic, any overflow rule.
//  - AVX512-BF16 VCVTNEPS2BF16 (RNE): treats FP32 subnormal inputs as zero
//    (output ±0) regardless of MXCSR.DAZ, and quiets NaNs keeping payload bits.
//    Duet keeps subnormals (as PyTorch's c10::BFloat16 does), so the path recomputes
//    lanes with subnormal or NaN inputs with integer RNE and blends them in;
//    the fix-up costs one compare per 16 elements when no such lane exists.
//    (PyTorch maps every NaN to 0x7FC0, dropping the sign; Duet keeps the sign.)
//  - The AVX2/AVX-512 generic encoders are integer-only (no dependence on MXCSR)
//    and serve any format with fits_fp32() and at most 22 mantissa bits
//    (TF32, BF16, FP16, all FP8, E2M1, user formats) for RNE, RTZ and RNA.
//  - Stochastic rounding always uses the scalar path; element i of a call uses the
//    random bits stochastic_bits(seed, index_offset + i), so results do not depend
//    on how a caller splits the array across threads.
//  - The fast paths assume MXCSR.DAZ is clear (the default) for F16C.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "duet/numerics/minifloat.h"

namespace duet::numerics {

enum class ConvertPath {
  Auto,        // the fastest path this CPU and format allow
  Scalar,      // Minifloat::encode per element
  F16C,        // FP16 RNE with VCVTPS2PH (256-bit); E5M2 via round-to-odd FP16
  AVX512FP16C, // FP16 RNE with the 512-bit VCVTPS2PH (AVX512F)
  AVX512BF16,  // BF16 RNE with VCVTNEPS2BF16 plus subnormal/NaN fix-up
  AVX2,        // generic vectorized minifloat encoder, 8 lanes
  AVX512,      // generic vectorized minifloat encoder, 16 lanes (AVX512F+BW)
};

const char* path_name(ConvertPath p);
// The CPU has the instructions the path needs (Scalar and Auto: always).
bool cpu_supports(ConvertPath p);
// The path can produce this format with these modes (ignores the CPU).
bool path_handles(ConvertPath p, const Minifloat& f, Rounding r, Overflow o);
// Every path usable here for (f, r, o), Scalar first.
std::vector<ConvertPath> usable_paths(const Minifloat& f, Rounding r, Overflow o);

struct ConvertOptions {
  Rounding rounding = Rounding::NearestEven;
  Overflow overflow = Overflow::Infinity;
  uint64_t seed = 0;          // stochastic rounding
  uint64_t index_offset = 0;  // element i uses stochastic_bits(seed, index_offset + i)
  ConvertPath path = ConvertPath::Auto;
};

// float32[n] -> bit patterns, one per output element. The output type must hold
// the format (uint8_t: up to 8 bits, uint16_t: up to 16, uint32_t: any). Returns
// the path used; throws duet::Error when an explicit path cannot serve the request.
ConvertPath encode_bulk(const Minifloat& f, const float* src, size_t n, uint8_t* dst, const ConvertOptions& o = {});
ConvertPath encode_bulk(const Minifloat& f, const float* src, size_t n, uint16_t* dst, const ConvertOptions& o = {});
ConvertPath encode_bulk(const Minifloat& f, const float* src, size_t n, uint32_t* dst, const ConvertOptions& o = {});

// Bit patterns -> float32 (exact for formats with fits_fp32()).
void decode_bulk(const Minifloat& f, const uint8_t* src, size_t n, float* dst);
void decode_bulk(const Minifloat& f, const uint16_t* src, size_t n, float* dst);
void decode_bulk(const Minifloat& f, const uint32_t* src, size_t n, float* dst);

// 4-bit packing as ONNX stores INT4/UINT4/FP4: two per byte, element 2k in the low
// nibble. n values -> (n+1)/2 bytes; an odd tail leaves the high nibble zero.
void pack_nibbles(const uint8_t* nibbles, size_t n, uint8_t* packed);
void unpack_nibbles(const uint8_t* packed, size_t n, uint8_t* nibbles);
// INT4: values in [-8, 7] (out-of-range values are a caller error: checked).
void pack_int4(const int8_t* values, size_t n, uint8_t* packed);
void unpack_int4(const uint8_t* packed, size_t n, int8_t* values);

}  // namespace duet::numerics
