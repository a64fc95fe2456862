#include "duet/core/dtype.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstdint>

#include "duet/core/error.h"

namespace duet {

namespace {
struct DTypeInfo {
  const char* name;
  const char* onnx_name;
  int bits;
};
constexpr std::array<DTypeInfo, kMaxDType + 1> kInfo = {{
    {"undefined", "UNDEFINED", 0},       {"float32", "FLOAT", 32},
    {"uint8", "UINT8", 8},               {"int8", "INT8", 8},
    {"uint16", "UINT16", 16},            {"int16", "INT16", 16},
    {"int32", "INT32", 32},              {"int64", "INT64", 64},
    {"string", "STRING", 0},             {"bool", "BOOL", 8},
    {"float16", "FLOAT16", 16},          {"float64", "DOUBLE", 64},
    {"uint32", "UINT32", 32},            {"uint64", "UINT64", 64},
    {"complex64", "COMPLEX64", 64},      {"complex128", "COMPLEX128", 128},
    {"bfloat16", "BFLOAT16", 16},        {"float8e4m3fn", "FLOAT8E4M3FN", 8},
    {"float8e4m3fnuz", "FLOAT8E4M3FNUZ", 8}, {"float8e5m2", "FLOAT8E5M2", 8},
    {"float8e5m2fnuz", "FLOAT8E5M2FNUZ", 8}, {"uint4", "UINT4", 4},
    {"int4", "INT4", 4},                 {"float4e2m1", "FLOAT4E2M1", 4},
    {"float8e8m0", "FLOAT8E8M0", 8},     {"uint2", "UINT2", 2},
    {"int2", "INT2", 2},
}};

std::string lower(std::string_view s) {
  std::string r(s);
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return std::tolower(c); });
  return r;
}
}  // namespace

bool dtype_is_valid(int code) { return code >= 1 && code <= kMaxDType; }

std::string_view dtype_name(DType t) {
  const int i = static_cast<int>(t);
  if (i < 0 || i > kMaxDType) return "invalid";
  return kInfo[i].name;
}

DType dtype_from_name(std::string_view name) {
  const std::string n = lower(name);
  for (int i = 1; i <= kMaxDType; ++i) {
    if (n == kInfo[i].name || n == lower(kInfo[i].onnx_name)) return static_cast<DType>(i);
  }
  if (n == "float" || n == "f32" || n == "fp32") return DType::Float32;
  if (n == "double" || n == "f64" || n == "fp64") return DType::Float64;
  if (n == "half" || n == "f16" || n == "fp16") return DType::Float16;
  if (n == "bf16") return DType::BFloat16;
  fail("unknown data type '", name, "'");
}

int dtype_bits(DType t) {
  const int i = static_cast<int>(t);
  return (i < 0 || i > kMaxDType) ? 0 : kInfo[i].bits;
}

bool dtype_is_float(DType t) {
  switch (t) {
    case DType::Float32: case DType::Float64: case DType::Float16: case DType::BFloat16:
    case DType::Float8E4M3FN: case DType::Float8E4M3FNUZ: case DType::Float8E5M2:
    case DType::Float8E5M2FNUZ: case DType::Float4E2M1: case DType::Float8E8M0:
      return true;
    default: return false;
  }
}

bool dtype_is_signed(DType t) {
  switch (t) {
    case DType::Int8: case DType::Int16: case DType::Int32: case DType::Int64:
    case DType::Int4: case DType::Int2:
      return true;
    default: return false;
  }
}

bool dtype_is_integer(DType t) {
  switch (t) {
    case DType::Int8: case DType::Int16: case DType::Int32: case DType::Int64:
    case DType::UInt8: case DType::UInt16: case DType::UInt32: case DType::UInt64:
    case DType::Int4: case DType::UInt4: case DType::Int2: case DType::UInt2:
      return true;
    default: return false;
  }
}

bool dtype_is_subbyte(DType t) { return dtype_bits(t) > 0 && dtype_bits(t) < 8; }

size_t dtype_storage_bytes(DType t, int64_t n) {
  const int64_t bits = dtype_bits(t);
  int64_t total = 0;
  DUET_CHECK(n >= 0 && !__builtin_mul_overflow(n, bits, &total) && total <= INT64_MAX - 7, n, " ", dtype_name(t),
             " elements take more bytes than a 64-bit count holds");
  return static_cast<size_t>((total + 7) / 8);
}

float fp16_bits_to_float(uint16_t h) {
  // Exact and branch-light: rebias the exponent, renormalize subnormals.
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    int shift = std::countl_zero(man) - 21;  // bring the leading 1 to bit 10
    man = (man << shift) & 0x3FF;
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t float_to_fp16_bits(float f) {
  return static_cast<uint16_t>(numerics::fp16().encode(f));
}

}  // namespace duet
