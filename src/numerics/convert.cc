#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include "duet/numerics/convert.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "duet/core/error.h"
#include "numerics/convert_x86.h"

namespace duet::numerics {

namespace {

bool same_format(const Minifloat& a, const Minifloat& b) {
  return a.exponent_bits == b.exponent_bits && a.mantissa_bits == b.mantissa_bits && a.bias == b.bias &&
         a.specials == b.specials;
}

bool generic_vector_ok(const Minifloat& f, Rounding r) {
  return f.fits_fp32() && f.mantissa_bits <= 22 && r != Rounding::Stochastic;
}

x86::GenericParams generic_params(const Minifloat& f, Overflow o, Rounding r) {
  x86::GenericParams p{};
  p.mantissa_bits = static_cast<uint32_t>(f.mantissa_bits);
  p.emin_biased = static_cast<uint32_t>(f.min_exponent() + 127);
  p.max_bits = f.max_finite_bits();
  p.sign_shift = static_cast<uint32_t>(f.total_bits() - 1);
  // NaN and overflow results, derived from the scalar encoder itself so the two cannot drift.
  const uint32_t sign_bit = 1u << p.sign_shift;
  const uint32_t nan_pos = f.encode(std::bit_cast<float>(0x7FC00000u), r, o);
  const uint32_t nan_neg = f.encode(std::bit_cast<float>(0xFFC00000u), r, o);
  p.nan_value = nan_pos;
  p.nan_signed = nan_neg != nan_pos;
  const uint32_t inf_pos = f.encode(std::bit_cast<float>(0x7F800000u), r, o);
  const uint32_t inf_neg = f.encode(std::bit_cast<float>(0xFF800000u), r, o);
  p.overflow_value = inf_pos;
  p.overflow_signed = inf_neg != inf_pos;
  DUET_CHECK(!p.nan_signed || nan_neg == (nan_pos | sign_bit), "internal: NaN sign convention");
  DUET_CHECK(!p.overflow_signed || inf_neg == (inf_pos | sign_bit), "internal: overflow sign convention");
  p.unsigned_zero = f.specials == Specials::FNUZ;
  p.rounding = r == Rounding::NearestEven ? 0 : r == Rounding::TowardZero ? 1 : 2;
  return p;
}

template <typename OutT>
void check_width(const Minifloat& f) {
  DUET_CHECK(f.total_bits() <= static_cast<int>(8 * sizeof(OutT)), "encode_bulk: ", f.name, " has ", f.total_bits(),
             " bits, too wide for ", 8 * sizeof(OutT), "-bit output elements");
}

template <typename OutT>
size_t run_vector(ConvertPath path, const Minifloat& f, const float* src, size_t n, OutT* dst, const ConvertOptions& o) {
  switch (path) {
    case ConvertPath::AVX2: return x86::encode_generic_avx2(generic_params(f, o.overflow, o.rounding), src, n, dst);
    case ConvertPath::AVX512: return x86::encode_generic_avx512(generic_params(f, o.overflow, o.rounding), src, n, dst);
    default: break;
  }
  if constexpr (std::is_same_v<OutT, uint8_t>) {
    if (path == ConvertPath::F16C) return x86::encode_e5m2_f16c(generic_params(f, o.overflow, o.rounding), src, n, dst);
  }
  if constexpr (std::is_same_v<OutT, uint16_t>) {
    if (path == ConvertPath::F16C) return x86::encode_fp16_f16c(src, n, dst);
    if (path == ConvertPath::AVX512FP16C) return x86::encode_fp16_avx512(src, n, dst);
    if (path == ConvertPath::AVX512BF16) return x86::encode_bf16_avx512bf16(src, n, dst);
  }
  return 0;
}

template <typename OutT>
ConvertPath encode_impl(const Minifloat& f, const float* src, size_t n, OutT* dst, const ConvertOptions& o) {
  check_width<OutT>(f);
  ConvertPath path = o.path;
  // Bytes per element an instruction path writes (0: the generic encoders write any width).
  auto width = [&f](ConvertPath p) -> size_t {
    if (p == ConvertPath::F16C) return same_format(f, e5m2()) ? 1 : 2;
    return p == ConvertPath::AVX512FP16C || p == ConvertPath::AVX512BF16 ? 2 : 0;
  };
  auto fits = [&](ConvertPath p) { return width(p) == 0 || width(p) == sizeof(OutT); };
  if (path == ConvertPath::Auto) {
    // Dedicated instructions first, then the widest generic encoder.
    const auto paths = usable_paths(f, o.rounding, o.overflow);
    path = ConvertPath::Scalar;
    for (ConvertPath pref : {ConvertPath::AVX512BF16, ConvertPath::AVX512FP16C, ConvertPath::AVX512, ConvertPath::F16C,
                             ConvertPath::AVX2}) {
      if (fits(pref) && std::find(paths.begin(), paths.end(), pref) != paths.end()) {
        path = pref;
        break;
      }
    }
  } else {
    DUET_CHECK(cpu_supports(path), "conversion path ", path_name(path), " needs instructions this CPU lacks");
    DUET_CHECK(fits(path), "conversion path ", path_name(path), " writes ", 8 * width(path), "-bit elements only");
    DUET_CHECK(path_handles(path, f, o.rounding, o.overflow), "conversion path ", path_name(path), " cannot produce ",
               f.name, " with ", rounding_name(o.rounding), " rounding and ", overflow_name(o.overflow), " overflow");
  }
  size_t done = path == ConvertPath::Scalar ? 0 : run_vector(path, f, src, n, dst, o);
  for (size_t i = done; i < n; ++i) {
    const uint64_t random = o.rounding == Rounding::Stochastic ? stochastic_bits(o.seed, o.index_offset + i) : 0;
    dst[i] = static_cast<OutT>(f.encode(src[i], o.rounding, o.overflow, random));
  }
  return path;
}

// Every pattern's value for formats of at most 16 bits, built once per format
// (by Minifloat::decode, so exact by construction) and shared by all callers.
std::shared_ptr<const std::vector<float>> decode_table(const Minifloat& f) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int, int>, std::shared_ptr<const std::vector<float>>> tables;
  const auto key = std::make_tuple(f.exponent_bits, f.mantissa_bits, f.bias, static_cast<int>(f.specials));
  std::lock_guard<std::mutex> lock(mu);
  auto& t = tables[key];
  if (!t) {
    auto table = std::make_shared<std::vector<float>>(size_t{1} << f.total_bits());
    for (uint32_t b = 0; b < table->size(); ++b) (*table)[b] = f.decode(b);
    t = std::move(table);
  }
  return t;
}

template <typename InT>
void decode_impl(const Minifloat& f, const InT* src, size_t n, float* dst) {
  if (f.specials == Specials::IEEE && f.exponent_bits == 8 && f.bias == 127 && f.mantissa_bits <= 23) {
    // FP32's exponent (BF16, TF32, FP32 itself): the pattern is a truncated float32.
    const int m = f.mantissa_bits;
    const uint32_t magnitude = (uint32_t{1} << (8 + m)) - 1;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t b = static_cast<uint32_t>(src[i]);
      const uint32_t bits = ((b >> (8 + m)) & 1u) << 31 | (b & magnitude) << (23 - m);
      std::memcpy(dst + i, &bits, sizeof bits);
    }
    return;
  }
  if (f.total_bits() <= 16) {
    const auto table = decode_table(f);
    const uint32_t mask = static_cast<uint32_t>(table->size() - 1);
    for (size_t i = 0; i < n; ++i) dst[i] = (*table)[src[i] & mask];
    return;
  }
  for (size_t i = 0; i < n; ++i) dst[i] = f.decode(src[i]);
}

}  // namespace

const char* path_name(ConvertPath p) {
  switch (p) {
    case ConvertPath::Auto: return "auto";
    case ConvertPath::Scalar: return "scalar";
    case ConvertPath::F16C: return "f16c";
    case ConvertPath::AVX512FP16C: return "avx512-f16c";
    case ConvertPath::AVX512BF16: return "avx512-bf16";
    case ConvertPath::AVX2: return "avx2";
    case ConvertPath::AVX512: return "avx512";
  }
  return "?";
}

#if defined(__x86_64__)
// clang 14's __builtin_cpu_supports does not know "f16c": ask CPUID (leaf 1, ECX bit 29).
static bool cpu_has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

bool cpu_supports(ConvertPath p) {
#if defined(__x86_64__)
  switch (p) {
    case ConvertPath::Auto:
    case ConvertPath::Scalar: return true;
    case ConvertPath::F16C: return cpu_has_f16c() && __builtin_cpu_supports("avx2");
    case ConvertPath::AVX2: return __builtin_cpu_supports("avx2");
    case ConvertPath::AVX512FP16C:
    case ConvertPath::AVX512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    case ConvertPath::AVX512BF16:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return p == ConvertPath::Auto || p == ConvertPath::Scalar;
#endif
}

bool path_handles(ConvertPath p, const Minifloat& f, Rounding r, Overflow o) {
  switch (p) {
    case ConvertPath::Auto:
    case ConvertPath::Scalar: return true;
    case ConvertPath::F16C:  // FP16 (nearest-even, IEEE overflow) and E5M2 (FP16's top byte: any rounding but stochastic)
      return (same_format(f, fp16()) && r == Rounding::NearestEven && o == Overflow::Infinity) ||
             (same_format(f, e5m2()) && r != Rounding::Stochastic);
    case ConvertPath::AVX512FP16C:
      return same_format(f, fp16()) && r == Rounding::NearestEven && o == Overflow::Infinity;
    case ConvertPath::AVX512BF16:
      return same_format(f, bf16()) && r == Rounding::NearestEven && o == Overflow::Infinity;
    case ConvertPath::AVX2:
    case ConvertPath::AVX512: return generic_vector_ok(f, r);
  }
  return false;
}

std::vector<ConvertPath> usable_paths(const Minifloat& f, Rounding r, Overflow o) {
  std::vector<ConvertPath> out;
  for (ConvertPath p : {ConvertPath::Scalar, ConvertPath::AVX2, ConvertPath::AVX512, ConvertPath::F16C,
                        ConvertPath::AVX512FP16C, ConvertPath::AVX512BF16}) {
    if (cpu_supports(p) && path_handles(p, f, r, o)) out.push_back(p);
  }
  return out;
}

ConvertPath encode_bulk(const Minifloat& f, const float* src, size_t n, uint8_t* dst, const ConvertOptions& o) {
  return encode_impl(f, src, n, dst, o);
}
ConvertPath encode_bulk(const Minifloat& f, const float* src, size_t n, uint16_t* dst, const ConvertOptions& o) {
  return encode_impl(f, src, n, dst, o);
}
ConvertPath encode_bulk(const Minifloat& f, const float* src, size_t n, uint32_t* dst, const ConvertOptions& o) {
  return encode_impl(f, src, n, dst, o);
}

void decode_bulk(const Minifloat& f, const uint8_t* src, size_t n, float* dst) { decode_impl(f, src, n, dst); }
void decode_bulk(const Minifloat& f, const uint16_t* src, size_t n, float* dst) { decode_impl(f, src, n, dst); }
void decode_bulk(const Minifloat& f, const uint32_t* src, size_t n, float* dst) { decode_impl(f, src, n, dst); }

void pack_nibbles(const uint8_t* nibbles, size_t n, uint8_t* packed) {
  for (size_t i = 0; i < n; i += 2) {
    const uint8_t lo = nibbles[i] & 0xF;
    const uint8_t hi = i + 1 < n ? (nibbles[i + 1] & 0xF) : 0;
    packed[i / 2] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void unpack_nibbles(const uint8_t* packed, size_t n, uint8_t* nibbles) {
  for (size_t i = 0; i < n; ++i) nibbles[i] = (packed[i / 2] >> ((i & 1) * 4)) & 0xF;
}

void pack_int4(const int8_t* values, size_t n, uint8_t* packed) {
  for (size_t i = 0; i < n; i += 2) {
    DUET_CHECK(values[i] >= -8 && values[i] <= 7, "pack_int4: value ", int(values[i]), " at ", i, " is outside [-8, 7]");
    const uint8_t lo = static_cast<uint8_t>(values[i]) & 0xF;
    uint8_t hi = 0;
    if (i + 1 < n) {
      DUET_CHECK(values[i + 1] >= -8 && values[i + 1] <= 7, "pack_int4: value ", int(values[i + 1]), " at ", i + 1,
                 " is outside [-8, 7]");
      hi = static_cast<uint8_t>(values[i + 1]) & 0xF;
    }
    packed[i / 2] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void unpack_int4(const uint8_t* packed, size_t n, int8_t* values) {
  for (size_t i = 0; i < n; ++i) {
    const int nibble = (packed[i / 2] >> ((i & 1) * 4)) & 0xF;
    values[i] = static_cast<int8_t>(nibble >= 8 ? nibble - 16 : nibble);
  }
}

}  // namespace duet::numerics
