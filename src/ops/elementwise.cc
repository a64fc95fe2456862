// Elementwise ops: arithmetic, math functions, comparison, logical and
// bitwise ops, Where, the variadic Max/Min/Sum/Mean, Clip and BitCast. Binary
// and variadic ops broadcast like numpy. Integer arithmetic wraps modulo 2^n;
// reduced-precision floats compute in float and round once per op.
#include <cmath>
#include <cstring>
#include <limits>

#include "duet/ops/kernel_util.h"
#include "elementwise_util.h"
#include "families.h"

namespace duet::ops {

namespace {

using ew::binary_loop;
using ew::compute_t;
using ew::unary_loop;

// --- type dispatch ------------------------------------------------------------

// Types of the arithmetic ops: all integers and float32/64/16, bfloat16.
template <typename Fn>
void dispatch_arith(const KernelContext& ctx, DType t, Fn&& fn) {
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
    default: unsupported(ctx.node.label(), ": data type ", dtype_name(t), " is not supported");
  }
}

template <typename Fn>
void dispatch_ints(const KernelContext& ctx, DType t, Fn&& fn) {
  switch (t) {
    case DType::Int8: return fn(TypeTag<int8_t>{});
    case DType::UInt8: return fn(TypeTag<uint8_t>{});
    case DType::Int16: return fn(TypeTag<int16_t>{});
    case DType::UInt16: return fn(TypeTag<uint16_t>{});
    case DType::Int32: return fn(TypeTag<int32_t>{});
    case DType::UInt32: return fn(TypeTag<uint32_t>{});
    case DType::Int64: return fn(TypeTag<int64_t>{});
    case DType::UInt64: return fn(TypeTag<uint64_t>{});
    default: unsupported(ctx.node.label(), ": data type ", dtype_name(t), " is not supported (integer types only)");
  }
}

// Float types including the FP8 formats (IsNaN, IsInf accept those).
template <typename Fn>
void dispatch_all_floats(const KernelContext& ctx, DType t, Fn&& fn) {
  switch (t) {
    case DType::Float8E4M3FN: return fn(TypeTag<float8e4m3fn>{});
    case DType::Float8E4M3FNUZ: return fn(TypeTag<float8e4m3fnuz>{});
    case DType::Float8E5M2: return fn(TypeTag<float8e5m2>{});
    case DType::Float8E5M2FNUZ: return fn(TypeTag<float8e5m2fnuz>{});
    default: return dispatch_float(t, fn);
  }
}

void check_same_dtype(const KernelContext& ctx, const Tensor& a, const Tensor& b) {
  DUET_CHECK(a.dtype() == b.dtype(), ctx.node.label(), ": input types differ (", dtype_name(a.dtype()), " vs ",
             dtype_name(b.dtype()), ")");
}

Tensor& allocate_broadcast(KernelContext& ctx, DType dtype, const Tensor& a, const Tensor& b) {
  return ctx.allocate_output(0, dtype, broadcast_dims({a.dims(), b.dims()}, ctx.node));
}

// --- integer helpers ------------------------------------------------------------

// Wrapping arithmetic: computed on uint64 (modular), converted back (modular in C++20).
template <typename T> T wrap_add(T a, T b) { return static_cast<T>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
template <typename T> T wrap_sub(T a, T b) { return static_cast<T>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b)); }
template <typename T> T wrap_mul(T a, T b) { return static_cast<T>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b)); }

// C division (truncates); x/0 gives 0 and MIN/-1 wraps rather than trapping.
template <typename T> T int_div(T a, T b) {
  if (b == 0) return 0;
  if constexpr (std::is_signed_v<T>) {
    if (b == -1) return wrap_sub<T>(0, a);
  }
  return static_cast<T>(a / b);
}

// C remainder (sign of the dividend), as np.fmod.
template <typename T> T int_fmod(T a, T b) {
  if (b == 0) return 0;
  if constexpr (std::is_signed_v<T>) {
    if (b == -1) return 0;
  }
  return static_cast<T>(a % b);
}

// Python remainder (sign of the divisor), as np.mod.
template <typename T> T int_pymod(T a, T b) {
  T r = int_fmod(a, b);
  if constexpr (std::is_signed_v<T>) {
    if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
  }
  return r;
}

template <typename T> T float_pymod(T a, T b) {
  T r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// --- arithmetic ------------------------------------------------------------------

// Binary op on one type T (both inputs and the output). op(C, C) -> C where C
// is compute_t<T>.
template <typename Op>
void same_type_binary(KernelContext& ctx, Op op) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  check_same_dtype(ctx, a, b);
  Tensor& y = allocate_broadcast(ctx, a.dtype(), a, b);
  dispatch_arith(ctx, a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    binary_loop<T, T, T>(ctx, a, b, y, [&](T x, T z) { return static_cast<T>(op(static_cast<C>(x), static_cast<C>(z))); });
  });
}

void add_kernel(KernelContext& ctx) {
  same_type_binary(ctx, [](auto x, auto y) {
    if constexpr (std::is_integral_v<decltype(x)>) return wrap_add(x, y); else return x + y;
  });
}
void sub_kernel(KernelContext& ctx) {
  same_type_binary(ctx, [](auto x, auto y) {
    if constexpr (std::is_integral_v<decltype(x)>) return wrap_sub(x, y); else return x - y;
  });
}
void mul_kernel(KernelContext& ctx) {
  same_type_binary(ctx, [](auto x, auto y) {
    if constexpr (std::is_integral_v<decltype(x)>) return wrap_mul(x, y); else return x * y;
  });
}
void div_kernel(KernelContext& ctx) {
  same_type_binary(ctx, [](auto x, auto y) {
    if constexpr (std::is_integral_v<decltype(x)>) return int_div(x, y); else return x / y;
  });
}

void mod_kernel(KernelContext& ctx) {
  const bool c_style = ctx.node.attr_int("fmod", 0) != 0;
  if (c_style) {
    same_type_binary(ctx, [](auto x, auto y) {
      if constexpr (std::is_integral_v<decltype(x)>) return int_fmod(x, y); else return std::fmod(x, y);
    });
  } else {
    same_type_binary(ctx, [](auto x, auto y) {
      if constexpr (std::is_integral_v<decltype(x)>) return int_pymod(x, y); else return float_pymod(x, y);
    });
  }
}

// Exact integer power by squaring (wrapping); negative exponents give the
// truncated reciprocal (0 unless |base| is 1).
template <typename T, typename E>
T int_pow(T base, E exp) {
  if constexpr (std::is_signed_v<E>) {
    if (exp < 0) {
      if (base == 1) return 1;
      if constexpr (std::is_signed_v<T>) {
        if (base == -1) return (exp % 2 == 0) ? T(1) : T(-1);
      }
      return 0;
    }
  }
  T result = 1;
  uint64_t e = static_cast<uint64_t>(exp);
  while (e) {
    if (e & 1) result = wrap_mul(result, base);
    base = wrap_mul(base, base);
    e >>= 1;
  }
  return result;
}

// Exponents converted to one wide type (int64 or double) so Pow needs one
// loop per base type rather than one per type pair.
Tensor widen_exponent(const Tensor& e, DType wide) {
  Tensor w(wide, e.dims());
  for (int64_t i = 0; i < e.numel(); ++i) {
    if (wide == DType::Int64) w.data<int64_t>()[i] = e.get_int(i);
    else w.data<double>()[i] = e.get_double(i);
  }
  return w;
}

// Pow(T, T1): the output has the base's type. Mixed types compute in double
// (as numpy promotes) and convert back, truncating toward zero for integers.
void pow_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  Tensor& y = allocate_broadcast(ctx, a.dtype(), a, b);
  if (a.dtype() == DType::Float32 && b.dtype() == DType::Float32) {
    binary_loop<float, float, float>(ctx, a, b, y, [](float x, float e) { return std::pow(x, e); });
    return;
  }
  const bool int_exponent = dtype_is_integer(b.dtype()) && !dtype_is_subbyte(b.dtype());
  DUET_CHECK(int_exponent || b.dtype() == DType::Float32 || b.dtype() == DType::Float64 || b.dtype() == DType::Float16 ||
             b.dtype() == DType::BFloat16, ctx.node.label(), ": exponent type ", dtype_name(b.dtype()), " is not supported");
  dispatch_arith(ctx, a.dtype(), [&](auto ta) {
    using T = typename decltype(ta)::type;
    if (std::is_integral_v<T> && int_exponent) {
      const Tensor e = widen_exponent(b, DType::Int64);
      binary_loop<T, int64_t, T>(ctx, a, e, y, [](T x, int64_t k) {
        if constexpr (std::is_integral_v<T>) return int_pow(x, k); else return x;
      });
      return;
    }
    const Tensor e = widen_exponent(b, DType::Float64);
    binary_loop<T, double, T>(ctx, a, e, y, [](T x, double k) {
      const double r = std::pow(static_cast<double>(static_cast<compute_t<T>>(x)), k);
      if constexpr (std::is_integral_v<T>) {
        if (!std::isfinite(r)) return T(0);
        return static_cast<T>(static_cast<int64_t>(std::trunc(std::clamp(r, -9.2e18, 9.2e18))));
      } else {
        return static_cast<T>(static_cast<compute_t<T>>(r));
      }
    });
  });
}

// --- unary math -------------------------------------------------------------------

// y = op(x) on float types, computed in compute_t<T>.
template <typename Op>
void float_unary(KernelContext& ctx, Op op) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    unary_loop<T, T>(ctx, x, y, [&](T v) { return static_cast<T>(op(static_cast<C>(v))); });
  });
}

// y = op(x) on every numeric type (ints and floats).
template <typename Op>
void numeric_unary(KernelContext& ctx, Op op) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_arith(ctx, x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    unary_loop<T, T>(ctx, x, y, [&](T v) { return static_cast<T>(op(static_cast<C>(v))); });
  });
}

void neg_kernel(KernelContext& ctx) {
  numeric_unary(ctx, [](auto v) {
    if constexpr (std::is_integral_v<decltype(v)>) return wrap_sub<decltype(v)>(0, v); else return -v;
  });
}
void abs_kernel(KernelContext& ctx) {
  numeric_unary(ctx, [](auto v) {
    using C = decltype(v);
    if constexpr (std::is_unsigned_v<C>) return v;
    else if constexpr (std::is_integral_v<C>) return v < 0 ? wrap_sub<C>(0, v) : v;
    else return std::fabs(v);
  });
}
void sign_kernel(KernelContext& ctx) {
  numeric_unary(ctx, [](auto v) {
    using C = decltype(v);
    if (v > 0) return C(1);
    if (v < 0) return static_cast<C>(-1);
    return v;  // zero, or NaN
  });
}

// --- IsNaN / IsInf -------------------------------------------------------------------

void isnan_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.allocate_output(0, DType::Bool, x.dims());
  dispatch_all_floats(ctx, x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_loop<T, uint8_t>(ctx, x, y, [](T v) { return static_cast<uint8_t>(std::isnan(static_cast<float>(static_cast<compute_t<T>>(v)))); });
  });
}

void isinf_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const bool neg = ctx.node.attr_int("detect_negative", 1) != 0;
  const bool pos = ctx.node.attr_int("detect_positive", 1) != 0;
  Tensor& y = ctx.allocate_output(0, DType::Bool, x.dims());
  dispatch_all_floats(ctx, x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_loop<T, uint8_t>(ctx, x, y, [&](T v) {
      const compute_t<T> c = static_cast<compute_t<T>>(v);
      return static_cast<uint8_t>(std::isinf(c) && ((c > 0 && pos) || (c < 0 && neg)));
    });
  });
}

// --- comparison ------------------------------------------------------------------

template <typename Cmp>
void compare_kernel(KernelContext& ctx, Cmp cmp, bool allow_strings) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  check_same_dtype(ctx, a, b);
  Tensor& y = allocate_broadcast(ctx, DType::Bool, a, b);
  if (a.dtype() == DType::String) {
    if (!allow_strings) unsupported(ctx.node.label(), ": string inputs are not supported");
    const auto& sa = a.strings();
    const auto& sb = b.strings();
    uint8_t* out = y.data<uint8_t>();
    ew::broadcast_indices<2>(ctx, y.dims(), {&a.dims(), &b.dims()},
                             [&](int64_t o, const std::array<int64_t, 2>& off) { out[o] = cmp(sa[off[0]], sb[off[1]]); });
    return;
  }
  if (a.dtype() == DType::Bool) {
    binary_loop<uint8_t, uint8_t, uint8_t>(ctx, a, b, y, [&](uint8_t x, uint8_t z) { return static_cast<uint8_t>(cmp(x != 0, z != 0)); });
    return;
  }
  dispatch_arith(ctx, a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    binary_loop<T, T, uint8_t>(ctx, a, b, y, [&](T x, T z) { return static_cast<uint8_t>(cmp(static_cast<C>(x), static_cast<C>(z))); });
  });
}

// --- logical and bitwise ---------------------------------------------------------

template <typename Op>
void logical_binary(KernelContext& ctx, Op op) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  DUET_CHECK(a.dtype() == DType::Bool && b.dtype() == DType::Bool, ctx.node.label(), ": inputs must be bool, got ",
             dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  Tensor& y = allocate_broadcast(ctx, DType::Bool, a, b);
  binary_loop<uint8_t, uint8_t, uint8_t>(ctx, a, b, y, [&](uint8_t x, uint8_t z) { return static_cast<uint8_t>(op(x != 0, z != 0)); });
}

void not_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  DUET_CHECK(x.dtype() == DType::Bool, ctx.node.label(), ": input must be bool, got ", dtype_name(x.dtype()));
  Tensor& y = ctx.allocate_output(0, DType::Bool, x.dims());
  unary_loop<uint8_t, uint8_t>(ctx, x, y, [](uint8_t v) { return static_cast<uint8_t>(v == 0); });
}

template <typename Op>
void bitwise_binary(KernelContext& ctx, Op op) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  check_same_dtype(ctx, a, b);
  Tensor& y = allocate_broadcast(ctx, a.dtype(), a, b);
  if (a.dtype() == DType::Bool) {
    binary_loop<uint8_t, uint8_t, uint8_t>(ctx, a, b, y, [&](uint8_t x, uint8_t z) { return static_cast<uint8_t>(op(x, z) & 1); });
    return;
  }
  dispatch_ints(ctx, a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    binary_loop<T, T, T>(ctx, a, b, y, [&](T x, T z) { return static_cast<T>(op(x, z)); });
  });
}

void bitwise_not_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  if (x.dtype() == DType::Bool) {
    unary_loop<uint8_t, uint8_t>(ctx, x, y, [](uint8_t v) { return static_cast<uint8_t>(v == 0); });
    return;
  }
  dispatch_ints(ctx, x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_loop<T, T>(ctx, x, y, [](T v) { return static_cast<T>(~v); });
  });
}

void bitshift_kernel(KernelContext& ctx) {
  const std::string dir = ctx.node.attr_string("direction", "");
  DUET_CHECK(dir == "LEFT" || dir == "RIGHT", ctx.node.label(), ": direction must be LEFT or RIGHT, got '", dir, "'");
  const bool left = dir == "LEFT";
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  check_same_dtype(ctx, a, b);
  Tensor& y = allocate_broadcast(ctx, a.dtype(), a, b);
  dispatch_ints(ctx, a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using U = std::make_unsigned_t<T>;
    constexpr uint64_t bits = sizeof(T) * 8;
    binary_loop<T, T, T>(ctx, a, b, y, [&](T x, T s) {
      const uint64_t amount = static_cast<uint64_t>(s);
      if (amount >= bits) return T(0);  // shifting every bit out
      if (left) return static_cast<T>(static_cast<U>(static_cast<U>(x) << amount));
      return static_cast<T>(static_cast<U>(x) >> amount);
    });
  });
}

// --- Where -------------------------------------------------------------------------

void where_kernel(KernelContext& ctx) {
  const Tensor& c = ctx.input(0);
  const Tensor& a = ctx.input(1);
  const Tensor& b = ctx.input(2);
  DUET_CHECK(c.dtype() == DType::Bool, ctx.node.label(), ": condition must be bool, got ", dtype_name(c.dtype()));
  check_same_dtype(ctx, a, b);
  const Dims dims = broadcast_dims({c.dims(), a.dims(), b.dims()}, ctx.node);
  Tensor& y = ctx.allocate_output(0, a.dtype(), dims);
  const uint8_t* cond = c.data<uint8_t>();
  const std::array<const Dims*, 3> shapes{&c.dims(), &a.dims(), &b.dims()};
  if (a.dtype() == DType::String) {
    auto& out = y.strings();
    const auto& sa = a.strings();
    const auto& sb = b.strings();
    ew::broadcast_indices<3>(ctx, dims, shapes, [&](int64_t o, const std::array<int64_t, 3>& off) {
      out[o] = cond[off[0]] ? sa[off[1]] : sb[off[2]];
    });
    return;
  }
  if (dtype_is_subbyte(a.dtype())) unsupported(ctx.node.label(), ": data type ", dtype_name(a.dtype()), " is not supported");
  // Selection only moves bits: dispatch on the element size.
  auto select = [&](auto tag) {
    using W = typename decltype(tag)::type;
    const W* pa = static_cast<const W*>(a.raw());
    const W* pb = static_cast<const W*>(b.raw());
    W* py = static_cast<W*>(y.raw());
    ew::broadcast_indices<3>(ctx, dims, shapes, [&](int64_t o, const std::array<int64_t, 3>& off) {
      py[o] = cond[off[0]] ? pa[off[1]] : pb[off[2]];
    });
  };
  switch (dtype_bits(a.dtype())) {
    case 8: select(TypeTag<uint8_t>{}); break;
    case 16: select(TypeTag<uint16_t>{}); break;
    case 32: select(TypeTag<uint32_t>{}); break;
    case 64: select(TypeTag<uint64_t>{}); break;
    case 128: {
      struct W128 { uint64_t lo, hi; };
      select(TypeTag<W128>{});
      break;
    }
    default: unsupported(ctx.node.label(), ": data type ", dtype_name(a.dtype()), " is not supported");
  }
}

// --- variadic Max / Min / Sum / Mean -------------------------------------------------

// Folds the inputs left to right: out = op(...op(op(x0, x1), x2)..., xn), each
// step rounding to T as numpy's pairwise evaluation does.
template <typename Op>
void variadic_fold(KernelContext& ctx, Op op, bool floats_only, bool mean) {
  DUET_CHECK(ctx.num_inputs() >= 1, ctx.node.label(), ": needs at least one input");
  std::vector<Dims> shapes;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& t = ctx.input(i);
    check_same_dtype(ctx, ctx.input(0), t);
    shapes.push_back(t.dims());
  }
  const Tensor& first = ctx.input(0);
  const Dims dims = broadcast_dims(shapes, ctx.node);
  Tensor& y = ctx.allocate_output(0, first.dtype(), dims);
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    // Start from x0 broadcast to the output shape, then combine in place.
    Tensor acc = y;
    {
      T* py = y.data<T>();
      const T* px = first.data<T>();
      ew::broadcast_indices<1>(ctx, dims, {&first.dims()}, [&](int64_t o, const std::array<int64_t, 1>& off) { py[o] = px[off[0]]; });
    }
    for (size_t i = 1; i < ctx.num_inputs(); ++i) {
      binary_loop<T, T, T>(ctx, acc, ctx.input(i), y, [&](T x, T z) { return static_cast<T>(op(static_cast<C>(x), static_cast<C>(z))); });
    }
    if (mean) {
      const C n = static_cast<C>(ctx.num_inputs());
      T* py = y.data<T>();
      for (int64_t i = 0; i < y.numel(); ++i) py[i] = static_cast<T>(static_cast<C>(py[i]) / n);
    }
  };
  if (floats_only) dispatch_float(first.dtype(), run); else dispatch_arith(ctx, first.dtype(), run);
}

// np.maximum / np.minimum: NaN wins.
template <typename C> C nan_max(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) { if (std::isnan(a) || std::isnan(b)) return a + b; }
  return a < b ? b : a;
}
template <typename C> C nan_min(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) { if (std::isnan(a) || std::isnan(b)) return a + b; }
  return b < a ? b : a;
}

void max_kernel(KernelContext& ctx) { variadic_fold(ctx, [](auto a, auto b) { return nan_max(a, b); }, false, false); }
void min_kernel(KernelContext& ctx) { variadic_fold(ctx, [](auto a, auto b) { return nan_min(a, b); }, false, false); }
void sum_kernel(KernelContext& ctx) {
  variadic_fold(ctx, [](auto a, auto b) {
    if constexpr (std::is_integral_v<decltype(a)>) return wrap_add(a, b); else return a + b;
  }, false, false);
}
void mean_kernel(KernelContext& ctx) { variadic_fold(ctx, [](auto a, auto b) { return a + b; }, true, true); }

// --- Clip ----------------------------------------------------------------------------

// Clip bounds: attributes before opset 11, optional scalar inputs after.
// np.clip semantics: min(max(x, lo), hi), so lo > hi gives hi everywhere.
void clip_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_arith(ctx, x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    C lo = std::numeric_limits<C>::lowest();
    C hi = std::numeric_limits<C>::max();
    if constexpr (std::is_floating_point_v<C>) {
      lo = -std::numeric_limits<C>::infinity();
      hi = std::numeric_limits<C>::infinity();
    }
    if (ctx.opset < 11) {
      if (ctx.node.has_attr("min")) lo = static_cast<C>(ctx.node.attr_float("min", 0));
      if (ctx.node.has_attr("max")) hi = static_cast<C>(ctx.node.attr_float("max", 0));
    } else {
      for (size_t i = 1; i <= 2; ++i) {
        const Tensor* bound = ctx.optional_input(i);
        if (!bound) continue;
        DUET_CHECK(bound->dtype() == x.dtype(), ctx.node.label(), ": bound type ", dtype_name(bound->dtype()),
                   " differs from input type ", dtype_name(x.dtype()));
        DUET_CHECK(bound->numel() == 1, ctx.node.label(), ": ", i == 1 ? "min" : "max", " must be a scalar, got shape ",
                   dims_str(bound->dims()));
        (i == 1 ? lo : hi) = static_cast<C>(bound->data<T>()[0]);
      }
    }
    unary_loop<T, T>(ctx, x, y, [=](T v) {
      C c = static_cast<C>(v);
      if constexpr (std::is_floating_point_v<C>) { if (std::isnan(c)) return v; }
      c = c < lo ? lo : c;
      c = c > hi ? hi : c;
      return static_cast<T>(c);
    });
  });
}

// --- BitCast -------------------------------------------------------------------------

void bitcast_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t to = ctx.node.attr_int("to", 0);
  DUET_CHECK(dtype_is_valid(static_cast<int>(to)), ctx.node.label(), ": 'to' is not a valid data type (", to, ")");
  const DType out = static_cast<DType>(to);
  if (x.dtype() == DType::String || out == DType::String) unsupported(ctx.node.label(), ": BitCast of strings is not defined");
  DUET_CHECK(dtype_bits(x.dtype()) == dtype_bits(out), ctx.node.label(), ": BitCast needs equal bit widths (",
             dtype_name(x.dtype()), " is ", dtype_bits(x.dtype()), " bits, ", dtype_name(out), " is ", dtype_bits(out), ")");
  Tensor& y = ctx.allocate_output(0, out, x.dims());
  if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
}

// --- inference -------------------------------------------------------------------------

InferFn infer_unary(DType dtype) {
  return [dtype](InferContext& ctx) {
    std::vector<ir::ValueType> out(1);
    if (!ctx.inputs.empty()) out[0] = tensor_type(dtype, ctx.inputs[0].shape);
    return out;
  };
}

std::vector<ir::ValueType> infer_where(InferContext& ctx) {
  std::vector<Shape> shapes;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) shapes.push_back(ctx.inputs[i].shape);
  const DType dt = ctx.inputs.size() > 1 ? ctx.inputs[1].dtype : DType::Undefined;
  return {tensor_type(dt, broadcast_shapes(shapes, ctx.node))};
}

std::vector<ir::ValueType> infer_bitcast(InferContext& ctx) {
  const int64_t to = ctx.node.attr_int("to", 0);
  const DType dt = dtype_is_valid(static_cast<int>(to)) ? static_cast<DType>(to) : DType::Undefined;
  return {tensor_type(dt, ctx.inputs.empty() ? Shape::unknown_rank() : ctx.inputs[0].shape)};
}

}  // namespace

void register_elementwise(Registry& r) {
  const InferFn broadcast = infer_broadcast();
  const InferFn broadcast_bool = infer_broadcast(DType::Bool);
  const InferFn same = infer_same_as(0);
  const CostFn transcendental = cost_per_output_element(10);
  auto add = [&](const char* name, KernelFn k, InferFn inf, CostFn cost = nullptr) {
    r.add({.name = name, .kernel = std::move(k), .infer = std::move(inf), .cost = std::move(cost)});
  };

  // arithmetic
  add("Add", add_kernel, broadcast);
  add("Sub", sub_kernel, broadcast);
  add("Mul", mul_kernel, broadcast);
  add("Div", div_kernel, broadcast);
  add("Mod", mod_kernel, broadcast);
  add("Pow", pow_kernel, broadcast, transcendental);

  // unary math
  add("Neg", neg_kernel, same);
  add("Abs", abs_kernel, same);
  add("Sign", sign_kernel, same);
  add("Reciprocal", [](KernelContext& c) { float_unary(c, [](auto v) { return decltype(v)(1) / v; }); }, same);
  add("Sqrt", [](KernelContext& c) { float_unary(c, [](auto v) { return std::sqrt(v); }); }, same);
  add("Exp", [](KernelContext& c) { float_unary(c, [](auto v) { return std::exp(v); }); }, same, transcendental);
  add("Log", [](KernelContext& c) { float_unary(c, [](auto v) { return std::log(v); }); }, same, transcendental);
  add("Ceil", [](KernelContext& c) { float_unary(c, [](auto v) { return std::ceil(v); }); }, same);
  add("Floor", [](KernelContext& c) { float_unary(c, [](auto v) { return std::floor(v); }); }, same);
  // Round half to even: nearbyint under the default rounding mode.
  add("Round", [](KernelContext& c) { float_unary(c, [](auto v) { return std::nearbyint(v); }); }, same);
  add("Sin", [](KernelContext& c) { float_unary(c, [](auto v) { return std::sin(v); }); }, same, transcendental);
  add("Cos", [](KernelContext& c) { float_unary(c, [](auto v) { return std::cos(v); }); }, same, transcendental);
  add("Tan", [](KernelContext& c) { float_unary(c, [](auto v) { return std::tan(v); }); }, same, transcendental);
  add("Asin", [](KernelContext& c) { float_unary(c, [](auto v) { return std::asin(v); }); }, same, transcendental);
  add("Acos", [](KernelContext& c) { float_unary(c, [](auto v) { return std::acos(v); }); }, same, transcendental);
  add("Atan", [](KernelContext& c) { float_unary(c, [](auto v) { return std::atan(v); }); }, same, transcendental);
  add("Sinh", [](KernelContext& c) { float_unary(c, [](auto v) { return std::sinh(v); }); }, same, transcendental);
  add("Cosh", [](KernelContext& c) { float_unary(c, [](auto v) { return std::cosh(v); }); }, same, transcendental);
  add("Asinh", [](KernelContext& c) { float_unary(c, [](auto v) { return std::asinh(v); }); }, same, transcendental);
  add("Acosh", [](KernelContext& c) { float_unary(c, [](auto v) { return std::acosh(v); }); }, same, transcendental);
  add("Atanh", [](KernelContext& c) { float_unary(c, [](auto v) { return std::atanh(v); }); }, same, transcendental);
  add("Erf", [](KernelContext& c) { float_unary(c, [](auto v) { return std::erf(v); }); }, same, transcendental);
  add("IsNaN", isnan_kernel, infer_unary(DType::Bool));
  add("IsInf", isinf_kernel, infer_unary(DType::Bool));

  // comparison
  add("Equal", [](KernelContext& c) { compare_kernel(c, [](const auto& a, const auto& b) { return a == b; }, true); }, broadcast_bool);
  add("Less", [](KernelContext& c) { compare_kernel(c, [](const auto& a, const auto& b) { return a < b; }, false); }, broadcast_bool);
  add("Greater", [](KernelContext& c) { compare_kernel(c, [](const auto& a, const auto& b) { return a > b; }, false); }, broadcast_bool);
  add("LessOrEqual", [](KernelContext& c) { compare_kernel(c, [](const auto& a, const auto& b) { return a <= b; }, false); }, broadcast_bool);
  add("GreaterOrEqual", [](KernelContext& c) { compare_kernel(c, [](const auto& a, const auto& b) { return a >= b; }, false); }, broadcast_bool);

  // logical and bitwise
  add("And", [](KernelContext& c) { logical_binary(c, [](bool a, bool b) { return a && b; }); }, broadcast_bool);
  add("Or", [](KernelContext& c) { logical_binary(c, [](bool a, bool b) { return a || b; }); }, broadcast_bool);
  add("Xor", [](KernelContext& c) { logical_binary(c, [](bool a, bool b) { return a != b; }); }, broadcast_bool);
  add("Not", not_kernel, same);
  add("BitShift", bitshift_kernel, broadcast);
  add("BitwiseAnd", [](KernelContext& c) { bitwise_binary(c, [](auto a, auto b) { return a & b; }); }, broadcast);
  add("BitwiseOr", [](KernelContext& c) { bitwise_binary(c, [](auto a, auto b) { return a | b; }); }, broadcast);
  add("BitwiseXor", [](KernelContext& c) { bitwise_binary(c, [](auto a, auto b) { return a ^ b; }); }, broadcast);
  add("BitwiseNot", bitwise_not_kernel, same);

  // selection, variadic, clipping
  add("Where", where_kernel, infer_where);
  add("Max", max_kernel, broadcast);
  add("Min", min_kernel, broadcast);
  add("Sum", sum_kernel, broadcast);
  add("Mean", mean_kernel, broadcast);
  add("Clip", clip_kernel, same);
  add("BitCast", bitcast_kernel, infer_bitcast, [](const CostContext& c) { Cost k = default_cost(c); k.flops = 0; return k; });
}

}  // namespace duet::ops
