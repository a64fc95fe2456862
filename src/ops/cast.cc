// Cast and CastLike between every ONNX element type: all floats (FP8 with the
// saturate attribute, FP4, E8M0 with round_mode), all integers including the
// packed 4- and 2-bit ones, bool and string. Values follow the ONNX reference
// (numpy astype): floats to integers truncate toward zero, integers narrow
// modulo 2^n, minifloats round to nearest even through numerics::Minifloat.
#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "duet/numerics/convert.h"
#include "duet/numerics/format.h"
#include "duet/ops/kernel_util.h"
#include "elementwise_util.h"
#include "families.h"

namespace duet::ops {

namespace {

using numerics::Minifloat;
using numerics::Overflow;
using numerics::Rounding;

enum class E8M0Rounding { Up, Down, Nearest };

struct CastOptions {
  bool saturate = true;                      // FP8 targets: clamp out-of-range values
  E8M0Rounding e8m0 = E8M0Rounding::Up;      // E8M0 target rounding
};

// --- scalar conversions --------------------------------------------------------

// Rounds a double to float with round-to-odd, so that a second rounding to
// any format with at most 22 significand bits equals one direct rounding.
float double_to_float_odd(double d) {
  float f = static_cast<float>(d);
  if (std::isnan(d) || static_cast<double>(f) == d) return f;
  if (std::isinf(f) && std::isinf(d)) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);  // truncate
  return std::bit_cast<float>(std::bit_cast<uint32_t>(f) | 1u);
}

// The float handed to a minifloat encoder for a wide value W.
template <typename W> float narrow_source(W w) {
  if constexpr (std::is_same_v<W, float>) return w;
  else return double_to_float_odd(static_cast<double>(w));
}

// Float to integer as numpy does on x86: truncate toward zero; NaN and values
// outside int64 give INT64_MIN; the result then narrows modulo 2^n.
template <typename D, typename W> D float_to_int(W w) {
  const double d = static_cast<double>(w);
  if constexpr (std::is_same_v<D, uint64_t>) {
    if (d >= 9223372036854775808.0 && d < 18446744073709551616.0) return static_cast<uint64_t>(d);
  }
  if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0)) return static_cast<D>(std::numeric_limits<int64_t>::min());
  return static_cast<D>(static_cast<int64_t>(d));
}

// ONNX E8M0 conversion: the float32 exponent field, rounded per round_mode.
uint8_t encode_e8m0(float x, const CastOptions& opt) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  uint32_t exponent = (bits >> 23) & 0xFF;
  if (exponent == 0xFF) return 0xFF;  // NaN and infinity
  bool round_up = false;
  if (opt.e8m0 == E8M0Rounding::Up) {
    round_up = (bits & 0x7FFFFF) != 0;
  } else if (opt.e8m0 == E8M0Rounding::Nearest) {
    const bool guard = bits & 0x400000, round = bits & 0x200000, sticky = bits & 0x1FFFFF;
    round_up = guard && (round || sticky || exponent > 0);
  }
  if (round_up && opt.saturate && exponent == 0xFE) round_up = false;
  return static_cast<uint8_t>(exponent + (round_up ? 1 : 0));
}

// --- number to string, as numpy's astype(str) prints -------------------------------

// Shortest decimal digits (and exponent) that read back to the same value of
// the source type, checked through `same`.
template <typename Same>
std::pair<std::string, int> shortest_digits(double v, Same same) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*e", precision - 1, v);
    if (same(std::strtod(buf, nullptr)) || precision == 17) break;
  }
  // buf is "d.ddde[+-]xx"
  std::string s(buf);
  const size_t e = s.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i) if (std::isdigit(static_cast<unsigned char>(s[i]))) digits += s[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  return {digits, std::atoi(s.c_str() + e + 1)};
}

// numpy prints positionally when 1e-4 <= |v| < 10^limit (limit 16 for
// float64, the format's decimal precision for narrower floats), else in
// scientific notation with a two-digit exponent; integral values get ".0".
template <typename Same>
std::string format_float(double v, int positional_limit, Same same) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  const std::string sign = std::signbit(v) ? "-" : "";
  if (v == 0) return sign + "0.0";
  auto [digits, exp] = shortest_digits(std::fabs(v), [&](double r) { return same(std::copysign(r, v)); });
  const double a = std::fabs(v);
  if (a >= 1e-4 && exp < positional_limit) {
    std::string out = sign;
    const int n = static_cast<int>(digits.size());
    if (exp < 0) {
      out.append("0.").append(static_cast<size_t>(-exp - 1), '0').append(digits);
    } else if (n <= exp + 1) {
      out.append(digits).append(static_cast<size_t>(exp + 1 - n), '0').append(".0");
    } else {
      out.append(digits, 0, static_cast<size_t>(exp + 1)).append(".").append(digits, static_cast<size_t>(exp + 1));
    }
    return out;
  }
  std::string out = sign;
  out.append(digits, 0, 1);
  if (digits.size() > 1) out.append(".").append(digits, 1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out.append(ebuf);
}

template <typename W>
std::string to_string_value(W w, DType from) {
  if (from == DType::Bool) return w != 0 ? "True" : "False";
  if constexpr (std::is_integral_v<W>) {
    return std::to_string(w);
  } else {
    const double v = static_cast<double>(w);
    switch (from) {
      case DType::Float64: return format_float(v, 16, [&](double r) { return r == v; });
      case DType::Float32: return format_float(v, 6, [&](double r) { return static_cast<float>(r) == static_cast<float>(v); });
      case DType::Float16: return format_float(v, 3, [&](double r) { return static_cast<float>(float16(double_to_float_odd(r))) == static_cast<float>(v); });
      case DType::BFloat16: return format_float(v, 2, [&](double r) { return static_cast<float>(bfloat16(double_to_float_odd(r))) == static_cast<float>(v); });
      default: return format_float(v, 1, [&](double r) { return static_cast<float>(r) == static_cast<float>(v); });
    }
  }
}

// --- string to number ----------------------------------------------------------------

std::string trimmed(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

double parse_double(const std::string& s, const KernelContext& ctx) {
  const std::string t = trimmed(s);
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  DUET_CHECK(!t.empty() && end == t.c_str() + t.size(), ctx.node.label(), ": cannot convert string '", s, "' to a number");
  return v;
}

int64_t parse_int(const std::string& s, const KernelContext& ctx) {
  const std::string t = trimmed(s);
  int64_t v = 0;
  const char* b = t.c_str() + (!t.empty() && t[0] == '+' ? 1 : 0);
  auto [p, ec] = std::from_chars(b, t.c_str() + t.size(), v);
  if (ec == std::errc() && p == t.c_str() + t.size()) return v;
  return float_to_int<int64_t>(parse_double(s, ctx));  // "1e3", "2.0"
}

// --- the element loops ---------------------------------------------------------------

// Wide representation of a source element: int64 (signed ints), uint64
// (unsigned ints, bool), float (float32 and narrower floats) or double.
template <typename S> struct wide_of { using type = std::conditional_t<std::is_signed_v<S>, int64_t, uint64_t>; };
template <> struct wide_of<bool> { using type = uint64_t; };
template <> struct wide_of<double> { using type = double; };
template <> struct wide_of<float> { using type = float; };
template <typename S> requires ew::is_small_float_v<S> struct wide_of<S> { using type = float; };

// Calls fn(TypeTag<W>{}, reader) where reader(i) returns source element i as W.
template <typename Fn>
void with_source(const KernelContext& ctx, const Tensor& x, Fn&& fn) {
  switch (x.dtype()) {
    case DType::Int4: case DType::Int2:
      return fn(TypeTag<int64_t>{}, [&](int64_t i) { return static_cast<int64_t>(subbyte_get(x, i)); });
    case DType::UInt4: case DType::UInt2:
      return fn(TypeTag<uint64_t>{}, [&](int64_t i) { return static_cast<uint64_t>(subbyte_get(x, i)); });
    case DType::Float4E2M1:
      return fn(TypeTag<float>{}, [&](int64_t i) { return numerics::e2m1().decode(static_cast<uint32_t>(subbyte_get(x, i))); });
    case DType::Complex64: case DType::Complex128:
      unsupported(ctx.node.label(), ": casting from ", dtype_name(x.dtype()), " is not supported");
    default:
      return dispatch_numeric(x.dtype(), [&](auto tag) {
        using S = typename decltype(tag)::type;
        using W = typename wide_of<S>::type;
        const S* p = x.data<S>();
        if constexpr (std::is_same_v<S, bool>) {
          const uint8_t* b = x.data<uint8_t>();
          fn(TypeTag<W>{}, [b](int64_t i) { return static_cast<W>(b[i] != 0); });
        } else if constexpr (ew::is_small_float_v<S>) {
          fn(TypeTag<W>{}, [p](int64_t i) { return static_cast<float>(p[i]); });
        } else {
          fn(TypeTag<W>{}, [p](int64_t i) { return static_cast<W>(p[i]); });
        }
      });
  }
}

// Converts a wide value to the byte-addressable destination type D.
template <typename D, typename W>
D convert(W w, const CastOptions& opt) {
  if constexpr (std::is_same_v<D, bool>) {
    return w != 0;
  } else if constexpr (std::is_integral_v<D>) {
    if constexpr (std::is_floating_point_v<W>) return float_to_int<D>(w);
    else return static_cast<D>(w);
  } else if constexpr (std::is_floating_point_v<D>) {
    return static_cast<D>(w);
  } else if constexpr (std::is_same_v<D, float16>) {
    return D(narrow_source(w));  // the storage type rounds to nearest even
  } else if constexpr (std::is_same_v<D, bfloat16>) {
    return D(narrow_source(w));
  } else if constexpr (std::is_same_v<D, float8e8m0>) {
    return D::from_bits(encode_e8m0(static_cast<float>(w), opt));
  } else {
    const Minifloat* mf = nullptr;
    if constexpr (std::is_same_v<D, float8e4m3fn>) mf = &numerics::e4m3fn();
    else if constexpr (std::is_same_v<D, float8e4m3fnuz>) mf = &numerics::e4m3fnuz();
    else if constexpr (std::is_same_v<D, float8e5m2>) mf = &numerics::e5m2();
    else mf = &numerics::e5m2fnuz();
    const Overflow overflow = opt.saturate ? Overflow::Saturate : Overflow::Infinity;
    return D::from_bits(static_cast<uint8_t>(mf->encode(narrow_source(w), Rounding::NearestEven, overflow)));
  }
}

void cast_tensor(const KernelContext& ctx, const Tensor& x, Tensor& y, const CastOptions& opt) {
  const int64_t n = x.numel();
  const DType to = y.dtype();
  if (x.dtype() == to) {
    if (to == DType::String) y.strings() = x.strings();
    else if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
    return;
  }
  if (x.dtype() == DType::String) {
    // Parse, then convert like any other number. Integers parse exactly.
    const auto& s = x.strings();
    Tensor wide(dtype_is_integer(to) ? DType::Int64 : DType::Float64, x.dims());
    for (int64_t i = 0; i < n; ++i) {
      if (to == DType::Bool) wide.data<double>()[i] = trimmed(s[i]).empty() ? 0.0 : parse_double(s[i], ctx);
      else if (dtype_is_integer(to)) wide.data<int64_t>()[i] = parse_int(s[i], ctx);
      else wide.data<double>()[i] = parse_double(s[i], ctx);
    }
    cast_tensor(ctx, wide, y, opt);
    return;
  }
  with_source(ctx, x, [&](auto wtag, auto read) {
    using W = typename decltype(wtag)::type;
    if (to == DType::String) {
      auto& out = y.strings();
      for (int64_t i = 0; i < n; ++i) out[i] = to_string_value<W>(read(i), x.dtype());
      return;
    }
    if (dtype_is_subbyte(to)) {
      for (int64_t i = 0; i < n; ++i) {
        const W w = read(i);
        int32_t field;
        if (to == DType::Float4E2M1) {
          field = static_cast<int32_t>(numerics::e2m1().encode(narrow_source(w), Rounding::NearestEven, Overflow::Saturate));
        } else if constexpr (std::is_floating_point_v<W>) {
          field = static_cast<int32_t>(float_to_int<int64_t>(w));  // keeps the low bits: wraps like ml_dtypes
        } else {
          field = static_cast<int32_t>(static_cast<int64_t>(w));
        }
        subbyte_set(y, i, field);
      }
      return;
    }
    if (to == DType::Complex64 || to == DType::Complex128) {
      unsupported(ctx.node.label(), ": casting to ", dtype_name(to), " is not supported");
    }
    dispatch_numeric(to, [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      if constexpr (std::is_same_v<D, bool>) {
        uint8_t* out = y.data<uint8_t>();
        ew::parallel_chunks(ctx, n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) out[i] = read(i) != 0;
        });
      } else {
        D* out = y.data<D>();
        ew::parallel_chunks(ctx, n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) out[i] = convert<D>(read(i), opt);
        });
      }
    });
  });
}

CastOptions cast_options(const KernelContext& ctx) {
  CastOptions opt;
  opt.saturate = ctx.node.attr_int("saturate", 1) != 0;
  const std::string mode = ctx.node.attr_string("round_mode", "up");
  if (mode == "up") opt.e8m0 = E8M0Rounding::Up;
  else if (mode == "down") opt.e8m0 = E8M0Rounding::Down;
  else if (mode == "nearest") opt.e8m0 = E8M0Rounding::Nearest;
  else fail(ctx.node.label(), ": round_mode must be 'up', 'down' or 'nearest', got '", mode, "'");
  return opt;
}

DType target_type(const ir::Node& node) {
  const int64_t to = node.attr_int("to", -1);
  DUET_CHECK(to > 0 && dtype_is_valid(static_cast<int>(to)), node.label(), ": attribute 'to' is missing or not a valid data type (", to, ")");
  return static_cast<DType>(to);
}

void cast_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const DType to = target_type(ctx.node);
  Tensor& y = ctx.allocate_output(0, to, x.dims());
  cast_tensor(ctx, x, y, cast_options(ctx));
}

void cast_like_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const DType to = ctx.input(1).dtype();
  Tensor& y = ctx.allocate_output(0, to, x.dims());
  cast_tensor(ctx, x, y, cast_options(ctx));
}

std::vector<ir::ValueType> infer_cast(InferContext& ctx) {
  const int64_t to = ctx.node.attr_int("to", -1);
  const DType dt = to > 0 && dtype_is_valid(static_cast<int>(to)) ? static_cast<DType>(to) : DType::Undefined;
  return {tensor_type(dt, ctx.inputs.empty() ? Shape::unknown_rank() : ctx.inputs[0].shape)};
}

std::vector<ir::ValueType> infer_cast_like(InferContext& ctx) {
  const DType dt = ctx.inputs.size() > 1 ? ctx.inputs[1].dtype : DType::Undefined;
  return {tensor_type(dt, ctx.inputs.empty() ? Shape::unknown_rank() : ctx.inputs[0].shape)};
}


// RoundToFormat (com.duet): float32 values rounded to a number format and
// back (numerics::parse_format names: bf16, fp16, tf32, e4m3fn, e5m2, eXmY...),
// so float32 arithmetic downstream sees exactly the values a device holding
// that format would. Attributes: format (default bf16), rounding (rne, rtz,
// rna, sr), saturate (1: clamp out-of-range values; 0, the default: the
// format's own overflow, infinity for IEEE formats), seed (stochastic
// rounding: element i uses stochastic_bits(seed, i)). Autocast and its
// gradients are written with it (train::autocast).
//
// ScaledRoundToFormat (com.duet): FP8 with a per-tensor scale, as Transformer
// Engine casts: y = round(x * scale) / scale (saturating by default), and a
// second output amax = max |x| for the delayed-scaling history. Inputs X and
// scale (float32 scalar); the same attributes plus grad_format (the format the
// gradient is cast to by its gradient rule, e.g. e5m2).
void round_to_format(KernelContext& ctx, bool scaled) {
  const Tensor& x = ctx.input(0);
  if (x.dtype() != DType::Float32)
    unsupported(ctx.node.label(), ": ", ctx.node.op_type, " rounds float32 values, got ", x.describe());
  const numerics::Format f = numerics::parse_format(ctx.node.attr_string("format", scaled ? "e4m3fn" : "bf16"));
  if (!f.is_float() || !f.fp.fits_fp32())
    unsupported(ctx.node.label(), ": format ", f.name, " is not a float format within float32's range");
  numerics::ConvertOptions o;
  o.rounding = numerics::parse_rounding(ctx.node.attr_string("rounding", "rne"));
  o.overflow = ctx.node.attr_int("saturate", scaled ? 1 : 0) != 0 ? Overflow::Saturate : f.default_overflow;
  o.seed = static_cast<uint64_t>(ctx.node.attr_int("seed", 0));
  float scale = 1.0f;
  if (scaled) {
    const Tensor& s = ctx.input(1);
    if (s.numel() != 1 || s.dtype() != DType::Float32)
      fail(ctx.node.label(), ": scale must be a float32 scalar, got ", s.describe());
    scale = s.data<float>()[0];
    if (!(scale > 0) || !std::isfinite(scale)) fail(ctx.node.label(), ": scale must be positive and finite, got ", scale);
  }
  Tensor& y = ctx.allocate_output(0, DType::Float32, x.dims());
  const int64_t n = x.numel();
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<float> amax(static_cast<size_t>(chunks), 0.0f);
  auto run = [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> bits(kChunk);
    std::vector<float> tmp(scaled ? kChunk : 0);
    for (int64_t c = begin; c < end; ++c) {
      const int64_t i0 = c * kChunk, m = std::min(kChunk, n - i0);
      const float* src = x.data<float>() + i0;
      float* dst = y.data<float>() + i0;
      numerics::ConvertOptions oc = o;
      oc.index_offset = static_cast<uint64_t>(i0);
      if (scaled) {
        float a = 0;
        for (int64_t i = 0; i < m; ++i) {
          a = std::max(a, std::fabs(src[i]));  // NaN compares false: ignored
          tmp[i] = src[i] * scale;
        }
        amax[c] = a;
        src = tmp.data();
      }
      numerics::encode_bulk(f.fp, src, static_cast<size_t>(m), bits.data(), oc);
      numerics::decode_bulk(f.fp, bits.data(), static_cast<size_t>(m), dst);
      if (scaled)
        for (int64_t i = 0; i < m; ++i) dst[i] /= scale;
    }
  };
  if (n < 2 * kChunk) run(0, chunks); else ctx.parallel_for(chunks, run);
  if (scaled && ctx.num_outputs() > 1 && ctx.output_requested(1))
    ctx.allocate_output(1, DType::Float32, {}).data<float>()[0] = amax.empty() ? 0.0f : *std::max_element(amax.begin(), amax.end());
}

std::vector<ir::ValueType> infer_scaled_round(InferContext& ctx) {
  std::vector<ir::ValueType> out{ctx.inputs.at(0)};
  if (ctx.num_outputs > 1) out.push_back(tensor_type(DType::Float32, Shape(std::vector<Dim>{})));
  return out;
}

}  // namespace

void register_cast(Registry& r) {
  r.add({.name = "Cast", .kernel = cast_kernel, .infer = infer_cast});
  r.add({.name = "CastLike", .kernel = cast_like_kernel, .infer = infer_cast_like});
  r.add({.domain = "com.duet", .name = "RoundToFormat", .kernel = [](KernelContext& c) { round_to_format(c, false); },
         .infer = infer_same_as(0), .cost = cost_per_output_element(1)});
  r.add({.domain = "com.duet", .name = "ScaledRoundToFormat", .kernel = [](KernelContext& c) { round_to_format(c, true); },
         .infer = infer_scaled_round, .cost = cost_per_output_element(3)});
}

}  // namespace duet::ops
