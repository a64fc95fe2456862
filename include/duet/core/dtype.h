// Element types: every ONNX TensorProto data type, numbered as ONNX numbers
// them so that import and export are a cast.
#pragma once
#include <complex>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "duet/core/error.h"
#include "duet/core/float_types.h"

namespace duet {

enum class DType : int {
  Undefined = 0,
  Float32 = 1,
  UInt8 = 2,
  Int8 = 3,
  UInt16 = 4,
  Int16 = 5,
  Int32 = 6,
  Int64 = 7,
  String = 8,
  Bool = 9,
  Float16 = 10,
  Float64 = 11,
  UInt32 = 12,
  UInt64 = 13,
  Complex64 = 14,
  Complex128 = 15,
  BFloat16 = 16,
  Float8E4M3FN = 17,
  Float8E4M3FNUZ = 18,
  Float8E5M2 = 19,
  Float8E5M2FNUZ = 20,
  UInt4 = 21,
  Int4 = 22,
  Float4E2M1 = 23,
  Float8E8M0 = 24,
  UInt2 = 25,
  Int2 = 26,
};

constexpr int kMaxDType = 26;

std::string_view dtype_name(DType t);          // "float32", "int4", ...
DType dtype_from_name(std::string_view name);  // accepts ONNX spellings too ("float", "FLOAT16")
bool dtype_is_valid(int onnx_code);
int dtype_bits(DType t);                       // storage bits per element (string: 0)
bool dtype_is_float(DType t);                  // any floating type, FP8/FP4 included
bool dtype_is_integer(DType t);                // signed or unsigned integer, sub-byte included
bool dtype_is_signed(DType t);
bool dtype_is_subbyte(DType t);                // packed: int4/uint4/float4e2m1/int2/uint2
// Bytes needed for n elements (sub-byte types packed, low bits first).
size_t dtype_storage_bytes(DType t, int64_t n);

template <typename T> struct dtype_of;
#define DUET_DTYPE_OF(T, D) template <> struct dtype_of<T> { static constexpr DType value = DType::D; };
DUET_DTYPE_OF(float, Float32)
DUET_DTYPE_OF(double, Float64)
DUET_DTYPE_OF(uint8_t, UInt8)
DUET_DTYPE_OF(int8_t, Int8)
DUET_DTYPE_OF(uint16_t, UInt16)
DUET_DTYPE_OF(int16_t, Int16)
DUET_DTYPE_OF(uint32_t, UInt32)
DUET_DTYPE_OF(int32_t, Int32)
DUET_DTYPE_OF(uint64_t, UInt64)
DUET_DTYPE_OF(int64_t, Int64)
DUET_DTYPE_OF(bool, Bool)
DUET_DTYPE_OF(float16, Float16)
DUET_DTYPE_OF(bfloat16, BFloat16)
DUET_DTYPE_OF(float8e4m3fn, Float8E4M3FN)
DUET_DTYPE_OF(float8e4m3fnuz, Float8E4M3FNUZ)
DUET_DTYPE_OF(float8e5m2, Float8E5M2)
DUET_DTYPE_OF(float8e5m2fnuz, Float8E5M2FNUZ)
DUET_DTYPE_OF(float8e8m0, Float8E8M0)
DUET_DTYPE_OF(std::complex<float>, Complex64)
DUET_DTYPE_OF(std::complex<double>, Complex128)
#undef DUET_DTYPE_OF

template <typename T> struct TypeTag { using type = T; };

// Calls fn(TypeTag<T>{}) with the C++ type of dtype t. Sub-byte, string and
// complex types are excluded: kernels that take them handle them explicitly.
// The Float8/float16 types convert through float.
template <typename Fn>
decltype(auto) dispatch_numeric(DType t, Fn&& fn) {
  switch (t) {
    case DType::Float32: return fn(TypeTag<float>{});
    case DType::Float64: return fn(TypeTag<double>{});
    case DType::Float16: return fn(TypeTag<float16>{});
    case DType::BFloat16: return fn(TypeTag<bfloat16>{});
    case DType::Int8: return fn(TypeTag<int8_t>{});
    case DType::UInt8: return fn(TypeTag<uint8_t>{});
    case DType::Int16: return fn(TypeTag<int16_t>{});
    case DType::UInt16: return fn(TypeTag<uint16_t>{});
    case DType::Int32: return fn(TypeTag<int32_t>{});
    case DType::UInt32: return fn(TypeTag<uint32_t>{});
    case DType::Int64: return fn(TypeTag<int64_t>{});
    case DType::UInt64: return fn(TypeTag<uint64_t>{});
    case DType::Bool: return fn(TypeTag<bool>{});
    case DType::Float8E4M3FN: return fn(TypeTag<float8e4m3fn>{});
    case DType::Float8E4M3FNUZ: return fn(TypeTag<float8e4m3fnuz>{});
    case DType::Float8E5M2: return fn(TypeTag<float8e5m2>{});
    case DType::Float8E5M2FNUZ: return fn(TypeTag<float8e5m2fnuz>{});
    case DType::Float8E8M0: return fn(TypeTag<float8e8m0>{});
    default: unsupported("data type ", dtype_name(t), " is not supported here");
  }
}

// Like dispatch_numeric, restricted to float32/float64/float16/bfloat16 (the
// types of most float-only ops).
template <typename Fn>
decltype(auto) dispatch_float(DType t, Fn&& fn) {
  switch (t) {
    case DType::Float32: return fn(TypeTag<float>{});
    case DType::Float64: return fn(TypeTag<double>{});
    case DType::Float16: return fn(TypeTag<float16>{});
    case DType::BFloat16: return fn(TypeTag<bfloat16>{});
    default: unsupported("data type ", dtype_name(t), " is not supported here (float types only)");
  }
}

}  // namespace duet
