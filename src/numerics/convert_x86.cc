// Vector kernels for bulk float32 -> minifloat conversion. Functions that use
// wider instructions carry __attribute__((target(...))), so the project builds
// for baseline x86-64 and the dispatcher (convert.cc) picks a kernel at run time.
#include "numerics/convert_x86.h"

#if defined(__x86_64__)
// GCC 12 reports false "may be used uninitialized" inside the AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace duet::numerics::x86 {

#if defined(__x86_64__)

namespace {

// The generic encoder, written once with GCC vector extensions and instantiated
// for 8 lanes (AVX2) and 16 lanes (AVX-512); it is always inlined into a function
// with the right target attribute, so it compiles to that instruction set. It
// mirrors Minifloat::encode step for step in 32-bit integer lanes:
//   significand with hidden bit, effective exponent te = max(e, emin),
//   q = significand >> shift rounded, magnitude = (te - emin) << m + q.
template <typename VU, typename OutT>
[[gnu::always_inline]] inline size_t generic_kernel(const GenericParams& p, const float* src, size_t n, OutT* dst) {
  constexpr size_t W = sizeof(VU) / sizeof(uint32_t);
  typedef OutT VO __attribute__((vector_size(W * sizeof(OutT))));
  const uint32_t base_shift = 23 - p.mantissa_bits;
  size_t i = 0;
  for (; i + W <= n; i += W) {
    VU b;
    __builtin_memcpy(&b, src + i, sizeof b);
    const VU a = b & 0x7FFFFFFFu;
    const VU sign = (b >> 31) << p.sign_shift;
    const VU fexp = a >> 23;
    const VU is_sub = (VU)(fexp == 0);                 // all ones where FP32 exponent is 0
    const VU sig = (a & 0x7FFFFFu) | (~is_sub & 0x800000u);
    const VU eeff = fexp + (is_sub & 1u);
    const VU below = (VU)(eeff < p.emin_biased);
    const VU te = (below & p.emin_biased) | (~below & eeff);
    VU shift = base_shift + (te - eeff);
    shift = shift > 31u ? (VU){} + 31u : shift;
    VU q = sig >> shift;
    const VU one = (VU){} + 1u;
    const VU rem = sig & ((one << shift) - 1u);
    const VU half = one << (shift - 1u);
    if (p.rounding == 0) {
      q -= (VU)(rem > half) | ((VU)(rem == half) & (0u - (q & 1u)));
    } else if (p.rounding == 2) {
      q -= (VU)(rem >= half);
    }
    const VU mag = ((te - p.emin_biased) << p.mantissa_bits) + q;
    VU res = sign | mag;
    if (p.unsigned_zero) res = mag == 0u ? (VU){} : res;
    const VU ovf_value = p.overflow_value | (p.overflow_signed ? sign : (VU){});
    res = mag > p.max_bits ? ovf_value : res;
    const VU nan_value = p.nan_value | (p.nan_signed ? sign : (VU){});
    res = a > 0x7F800000u ? nan_value : res;
    const VO out = __builtin_convertvector(res, VO);
    __builtin_memcpy(dst + i, &out, sizeof out);
  }
  return i;
}

typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint32_t v16u __attribute__((vector_size(64)));

}  // namespace

#define DUET_AVX2 __attribute__((target("avx2")))
#define DUET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

DUET_AVX2 size_t encode_generic_avx2(const GenericParams& p, const float* src, size_t n, uint8_t* dst) {
  return generic_kernel<v8u>(p, src, n, dst);
}
DUET_AVX2 size_t encode_generic_avx2(const GenericParams& p, const float* src, size_t n, uint16_t* dst) {
  return generic_kernel<v8u>(p, src, n, dst);
}
DUET_AVX2 size_t encode_generic_avx2(const GenericParams& p, const float* src, size_t n, uint32_t* dst) {
  return generic_kernel<v8u>(p, src, n, dst);
}
DUET_AVX512 size_t encode_generic_avx512(const GenericParams& p, const float* src, size_t n, uint8_t* dst) {
  return generic_kernel<v16u>(p, src, n, dst);
}
DUET_AVX512 size_t encode_generic_avx512(const GenericParams& p, const float* src, size_t n, uint16_t* dst) {
  return generic_kernel<v16u>(p, src, n, dst);
}
DUET_AVX512 size_t encode_generic_avx512(const GenericParams& p, const float* src, size_t n, uint32_t* dst) {
  return generic_kernel<v16u>(p, src, n, dst);
}

// FP16 RNE with F16C; NaN lanes rewritten to the canonical quiet NaN with sign.
__attribute__((target("avx2,f16c"))) size_t encode_fp16_f16c(const float* src, size_t n, uint16_t* dst) {
  const __m128i abs_mask = _mm_set1_epi16(0x7FFF);
  const __m128i inf = _mm_set1_epi16(0x7C00);
  const __m128i sign_mask = _mm_set1_epi16(static_cast<short>(0x8000));
  const __m128i qnan = _mm_set1_epi16(0x7E00);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m128i is_nan = _mm_cmpgt_epi16(_mm_and_si128(h, abs_mask), inf);
    const __m128i canon = _mm_or_si128(_mm_and_si128(h, sign_mask), qnan);
    h = _mm_blendv_epi8(h, canon, is_nan);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  return i;
}

// E5M2 is FP16's top byte (same exponent field and bias), so FP32 -> E5M2 is
// FP32 -> FP16 rounded to odd (F16C toward zero, then the low bit set where the
// conversion was inexact: it keeps "exactly half" apart from "more than half")
// followed by an integer rounding of the FP16 pattern to its top byte, in
// 16-bit lanes. Rounding to odd first and then to 8 fewer bits equals one
// rounding of the FP32 value in every mode (nearest-even, toward zero,
// nearest-away), subnormals included; overflow and NaN results come from p.
// Magnitudes of 2^16 and more (beyond FP16's range, where toward-zero stops at
// 65504) become FP16 infinity, so that they overflow E5M2 in every rounding mode
// as the scalar encoder does (overflow = the rounded magnitude exceeds the largest finite).
__attribute__((target("avx2,f16c"), always_inline)) inline __m128i pack_mask(__m256 m) {
  const __m256i i = _mm256_castps_si256(m);
  return _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
}
__attribute__((target("avx2,f16c"), always_inline)) inline __m128i to_fp16_odd(const float* s) {
  const __m256 v = _mm256_loadu_ps(s);
  __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m128i inexact = pack_mask(_mm256_cmp_ps(_mm256_cvtph_ps(h), v, _CMP_NEQ_UQ));
  h = _mm_or_si128(h, _mm_and_si128(inexact, _mm_set1_epi16(1)));
  const __m256 abs = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  const __m128i huge = pack_mask(_mm256_cmp_ps(abs, _mm256_set1_ps(65536.0f), _CMP_GE_OQ));
  const __m128i inf = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16(static_cast<short>(0x8000))), _mm_set1_epi16(0x7C00));
  return _mm_blendv_epi8(h, inf, huge);
}

__attribute__((target("avx2,f16c"))) size_t encode_e5m2_f16c(const GenericParams& p, const float* src, size_t n,
                                                            uint8_t* dst) {
  const __m256i abs_mask = _mm256_set1_epi16(0x7FFF);
  const __m256i sign_mask = _mm256_set1_epi16(static_cast<short>(0x8000));
  const __m256i one = _mm256_set1_epi16(1);
  const __m256i inf = _mm256_set1_epi16(0x7C00);
  const __m256i max_bits = _mm256_set1_epi16(static_cast<short>(p.max_bits));
  const __m256i ovf = _mm256_set1_epi16(static_cast<short>(p.overflow_value));
  const __m256i nan = _mm256_set1_epi16(static_cast<short>(p.nan_value));
  const __m256i bias = _mm256_set1_epi16(p.rounding == 2 ? 0x80 : 0x7F);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_set_m128i(to_fp16_odd(src + i + 8), to_fp16_odd(src + i));
    const __m256i sign = _mm256_srli_epi16(_mm256_and_si256(h, sign_mask), 8);
    const __m256i mag = _mm256_and_si256(h, abs_mask);
    __m256i q;
    if (p.rounding == 1) {
      q = _mm256_srli_epi16(mag, 8);
    } else {
      __m256i add = bias;
      if (p.rounding == 0) add = _mm256_add_epi16(add, _mm256_and_si256(_mm256_srli_epi16(mag, 8), one));
      q = _mm256_srli_epi16(_mm256_add_epi16(mag, add), 8);
    }
    __m256i res = _mm256_or_si256(sign, q);
    const __m256i ovf_value = p.overflow_signed ? _mm256_or_si256(ovf, sign) : ovf;
    res = _mm256_blendv_epi8(res, ovf_value, _mm256_cmpgt_epi16(q, max_bits));
    const __m256i nan_value = p.nan_signed ? _mm256_or_si256(nan, sign) : nan;
    res = _mm256_blendv_epi8(res, nan_value, _mm256_cmpgt_epi16(mag, inf));
    const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(res), _mm256_extracti128_si256(res, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), bytes);
  }
  return i;
}

DUET_AVX512 size_t encode_fp16_avx512(const float* src, size_t n, uint16_t* dst) {
  const __m256i abs_mask = _mm256_set1_epi16(0x7FFF);
  const __m256i inf = _mm256_set1_epi16(0x7C00);
  const __m256i sign_mask = _mm256_set1_epi16(static_cast<short>(0x8000));
  const __m256i qnan = _mm256_set1_epi16(0x7E00);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(src + i);
    __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __mmask16 is_nan = _mm256_cmpgt_epi16_mask(_mm256_and_si256(h, abs_mask), inf);
    const __m256i canon = _mm256_or_si256(_mm256_and_si256(h, sign_mask), qnan);
    h = _mm256_mask_blend_epi16(is_nan, h, canon);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
  }
  return i;
}

// BF16 RNE with VCVTNEPS2BF16. That instruction flushes subnormal inputs to zero
// and keeps NaN payloads; lanes with such inputs are recomputed with integer RNE
// ((x + 0x7FFF + lsb) >> 16, exact for subnormals) or the canonical NaN.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) size_t encode_bf16_avx512bf16(const float* src, size_t n,
                                                                                             uint16_t* dst) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i min_normal = _mm512_set1_epi32(0x00800000);
  const __m512i inf = _mm512_set1_epi32(0x7F800000);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(src + i);
    __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
    const __m512i b = _mm512_castps_si512(v);
    const __m512i a = _mm512_and_si512(b, abs_mask);
    const __mmask16 special = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(a, _mm512_set1_epi32(1)),
                                                      _mm512_sub_epi32(min_normal, _mm512_set1_epi32(1))) |
                              _mm512_cmpgt_epi32_mask(a, inf);
    if (special) {
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
      const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb), 16);
      const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(a, inf);
      const __m512i nan = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x8000)),
                                          _mm512_set1_epi32(0x7FC0));
      const __m512i fix = _mm512_mask_blend_epi32(is_nan, rounded, nan);
      h = _mm256_mask_blend_epi16(special, h, _mm512_cvtepi32_epi16(fix));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
  }
  return i;
}

#else  // not x86-64: no vector kernels; the dispatcher never calls these.

size_t encode_generic_avx2(const GenericParams&, const float*, size_t, uint8_t*) { return 0; }
size_t encode_generic_avx2(const GenericParams&, const float*, size_t, uint16_t*) { return 0; }
size_t encode_generic_avx2(const GenericParams&, const float*, size_t, uint32_t*) { return 0; }
size_t encode_generic_avx512(const GenericParams&, const float*, size_t, uint8_t*) { return 0; }
size_t encode_generic_avx512(const GenericParams&, const float*, size_t, uint16_t*) { return 0; }
size_t encode_generic_avx512(const GenericParams&, const float*, size_t, uint32_t*) { return 0; }
size_t encode_fp16_f16c(const float*, size_t, uint16_t*) { return 0; }
size_t encode_e5m2_f16c(const GenericParams&, const float*, size_t, uint8_t*) { return 0; }
size_t encode_fp16_avx512(const float*, size_t, uint16_t*) { return 0; }
size_t encode_bf16_avx512bf16(const float*, size_t, uint16_t*) { return 0; }

#endif

}  // namespace duet::numerics::x86
