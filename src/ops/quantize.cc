// Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
// QLinearMatMul.
//
// Scales and zero points are per tensor (one element), per axis (1-D, one per
// slice along `axis`) or blocked (same rank as x, `block_size` consecutive
// elements along `axis` share one). Integer results round half to even and
// saturate to the target type; float8 targets saturate unless saturate=0.
#include <algorithm>
#include <cmath>
#include <limits>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

using numerics::Minifloat;
using numerics::Overflow;
using numerics::Rounding;

// --- element access -----------------------------------------------------------

// Element i of any numeric tensor as double (float8/float4 decoded, sub-byte unpacked).
double element(const Tensor& t, int64_t i) { return t.get_double(i); }

// Rounds v to the nearest value of a float dtype (what storing it there and
// reading it back would give).
double round_to_float_type(DType dt, double v) {
  switch (dt) {
    case DType::Float64: return v;
    case DType::Float32: return static_cast<float>(v);
    case DType::Float16: return static_cast<float>(float16(static_cast<float>(v)));
    case DType::BFloat16: return static_cast<float>(bfloat16(static_cast<float>(v)));
    default: return static_cast<float>(v);
  }
}

struct IntRange {
  int64_t lo, hi;
};

bool integer_range(DType dt, IntRange& r) {
  switch (dt) {
    case DType::UInt8: r = {0, 255}; return true;
    case DType::Int8: r = {-128, 127}; return true;
    case DType::UInt16: r = {0, 65535}; return true;
    case DType::Int16: r = {-32768, 32767}; return true;
    case DType::UInt4: r = {0, 15}; return true;
    case DType::Int4: r = {-8, 7}; return true;
    case DType::UInt2: r = {0, 3}; return true;
    case DType::Int2: r = {-2, 1}; return true;
    case DType::Int32: r = {INT32_MIN, INT32_MAX}; return true;
    default: return false;
  }
}

const Minifloat* minifloat_format(DType dt) {
  switch (dt) {
    case DType::Float8E4M3FN: return &numerics::e4m3fn();
    case DType::Float8E4M3FNUZ: return &numerics::e4m3fnuz();
    case DType::Float8E5M2: return &numerics::e5m2();
    case DType::Float8E5M2FNUZ: return &numerics::e5m2fnuz();
    case DType::Float4E2M1: return &numerics::e2m1();
    default: return nullptr;
  }
}

// Stores integer value v (already saturated) at element i of an integer tensor.
void store_int(Tensor& t, int64_t i, int64_t v) {
  switch (t.dtype()) {
    case DType::UInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
    case DType::Int8: t.data<int8_t>()[i] = static_cast<int8_t>(v); break;
    case DType::UInt16: t.data<uint16_t>()[i] = static_cast<uint16_t>(v); break;
    case DType::Int16: t.data<int16_t>()[i] = static_cast<int16_t>(v); break;
    case DType::Int32: t.data<int32_t>()[i] = static_cast<int32_t>(v); break;
    default: subbyte_set(t, i, static_cast<int32_t>(v)); break;
  }
}

// Stores a float value into a float tensor (float32/64/16/bf16).
void store_float(Tensor& t, int64_t i, double v) {
  switch (t.dtype()) {
    case DType::Float32: t.data<float>()[i] = static_cast<float>(v); break;
    case DType::Float64: t.data<double>()[i] = v; break;
    case DType::Float16: t.data<float16>()[i] = float16(static_cast<float>(v)); break;
    case DType::BFloat16: t.data<bfloat16>()[i] = bfloat16(static_cast<float>(v)); break;
    default: unsupported("output type ", dtype_name(t.dtype()), " is not a float type");
  }
}

// Round half to even, saturate to r; NaN becomes the low end (as numpy's
// int cast followed by clip does on common hardware).
int64_t round_saturate(double v, const IntRange& r) {
  if (std::isnan(v)) return r.lo;
  const double q = std::nearbyint(v);
  if (q <= static_cast<double>(r.lo)) return r.lo;
  if (q >= static_cast<double>(r.hi)) return r.hi;
  return static_cast<int64_t>(q);
}

// --- scale / zero-point layout -------------------------------------------------

// Maps an element index of x to the index of its scale (and zero point).
struct QuantLayout {
  enum class Mode { PerTensor, PerAxis, Blocked } mode = Mode::PerTensor;
  int64_t axis_dim = 1, inner = 1, block = 0, blocks = 1;

  int64_t index(int64_t i) const {
    switch (mode) {
      case Mode::PerTensor: return 0;
      case Mode::PerAxis: return (i / inner) % axis_dim;
      case Mode::Blocked: {
        const int64_t outer = i / (inner * axis_dim), a = (i / inner) % axis_dim, in = i % inner;
        return (outer * blocks + a / block) * inner + in;
      }
    }
    return 0;
  }
};

QuantLayout quant_layout(const Dims& x, const Tensor& scale, int64_t axis_attr, int64_t block_size,
                         const ir::Node& node) {
  QuantLayout q;
  if (scale.numel() == 1) return q;  // one element (any rank) is per tensor
  const int64_t rank = static_cast<int64_t>(x.size());
  const int64_t axis = normalize_axis(axis_attr, rank, node);
  q.axis_dim = x[axis];
  for (int64_t d = axis + 1; d < rank; ++d) q.inner *= x[d];
  if (block_size <= 0) {
    DUET_CHECK(scale.rank() == 1 && scale.numel() == q.axis_dim, node.label(), ": scale of shape ",
               dims_str(scale.dims()), " fits neither per-tensor nor per-axis (axis ", axis, ", size ", q.axis_dim,
               ") quantization");
    q.mode = QuantLayout::Mode::PerAxis;
    return q;
  }
  q.mode = QuantLayout::Mode::Blocked;
  q.block = block_size;
  q.blocks = (q.axis_dim + block_size - 1) / block_size;
  bool ok = scale.rank() == x.size();
  for (size_t d = 0; ok && d < x.size(); ++d) {
    ok = static_cast<int64_t>(d) == axis ? scale.dims()[d] == q.blocks : scale.dims()[d] == x[d];
  }
  DUET_CHECK(ok, node.label(), ": blocked scale of shape ", dims_str(scale.dims()), " does not match input ",
             dims_str(x), " with block_size ", block_size, " on axis ", axis);
  return q;
}

void check_zero_point_shape(const Tensor* zp, const Tensor& scale, const ir::Node& node) {
  if (!zp) return;
  DUET_CHECK(zp->dims() == scale.dims() || (zp->numel() == 1 && scale.numel() == 1), node.label(),
             ": zero point shape ", dims_str(zp->dims()), " differs from scale shape ", dims_str(scale.dims()));
}

// --- QuantizeLinear -------------------------------------------------------------

DType quantize_output_type(const ir::Node& node, const Tensor* zp) {
  const int64_t attr = node.attr_int("output_dtype", 0);
  if (zp) {
    DUET_CHECK(attr == 0 || attr == static_cast<int64_t>(zp->dtype()), node.label(),
               ": output_dtype differs from the zero point type");
    return zp->dtype();
  }
  if (attr != 0) {
    DUET_CHECK(dtype_is_valid(static_cast<int>(attr)), node.label(), ": invalid output_dtype ", attr);
    return static_cast<DType>(attr);
  }
  return DType::UInt8;
}

// Fast paths for the common case (float32 data and scales, int8/uint8 codes,
// per tensor or per axis): the same arithmetic as the general loops (float
// division then nearest-even, or an exact (x - zp) product rounded once), in
// typed loops without per-element dispatch. They return false when they do not apply.
// One code: x / s rounded to nearest-even, plus the zero point, saturated;
// NaN gives the lowest code. Branch-free so that the per-tensor loop vectorizes.
template <typename Q>
inline Q quantize_one(float x, float s, float z) {
  constexpr float lo = std::numeric_limits<Q>::min(), hi = std::numeric_limits<Q>::max();
  float q = x / s;
  const bool nan = q != q;
  // Beyond +-1024 every code saturates; inside, adding and subtracting
  // 1.5 * 2^23 rounds to the nearest integer, ties to even (default FP
  // rounding mode; nearbyint is a slow library call).
  q = std::min(std::max(q, -1024.0f), 1024.0f);
  float v = (q + 12582912.0f) - 12582912.0f + z;
  v = std::min(std::max(v, lo), hi);
  return static_cast<Q>(nan ? lo : v);
}

template <typename Q>
void quantize_f32(const float* x, const float* scale, const Q* zp, const QuantLayout& layout, int64_t n, Q* y,
                  const KernelContext& ctx) {
  ctx.parallel_for(n, [&](int64_t b, int64_t e) {
    if (layout.mode == QuantLayout::Mode::PerTensor) {
      const float s = scale[0], z = zp ? static_cast<float>(zp[0]) : 0.0f;
      for (int64_t i = b; i < e; ++i) y[i] = quantize_one<Q>(x[i], s, z);
      return;
    }
    for (int64_t i = b; i < e; ++i) {
      const int64_t si = layout.index(i);
      y[i] = quantize_one<Q>(x[i], scale[si], zp ? static_cast<float>(zp[si]) : 0.0f);
    }
  });
}

bool quantize_fast(KernelContext& ctx, const Tensor& x, const Tensor& scale, const Tensor* zp, DType out_type,
                   const QuantLayout& layout) {
  if (x.dtype() != DType::Float32 || scale.dtype() != DType::Float32 || layout.mode == QuantLayout::Mode::Blocked ||
      ctx.node.attr_int("precision", 0) != 0 || (out_type != DType::UInt8 && out_type != DType::Int8))
    return false;
  Tensor& y = ctx.allocate_output(0, out_type, x.dims());
  if (out_type == DType::UInt8)
    quantize_f32<uint8_t>(x.data<float>(), scale.data<float>(), zp ? zp->data<uint8_t>() : nullptr, layout, x.numel(),
                          y.data<uint8_t>(), ctx);
  else
    quantize_f32<int8_t>(x.data<float>(), scale.data<float>(), zp ? zp->data<int8_t>() : nullptr, layout, x.numel(),
                         y.data<int8_t>(), ctx);
  return true;
}

template <typename Q>
void dequantize_f32(const Q* x, const float* scale, const Q* zp, const QuantLayout& layout, int64_t n, float* y,
                    const KernelContext& ctx) {
  ctx.parallel_for(n, [&](int64_t b, int64_t e) {
    if (layout.mode == QuantLayout::Mode::PerTensor) {
      const float s = scale[0];
      const int32_t z = zp ? zp[0] : 0;
      for (int64_t i = b; i < e; ++i) y[i] = static_cast<float>(static_cast<int32_t>(x[i]) - z) * s;
      return;
    }
    for (int64_t i = b; i < e; ++i) {
      const int64_t si = layout.index(i);
      // (x - zp) is a small exact integer, so this single float product equals
      // the spec's product in double rounded once to float.
      y[i] = static_cast<float>(static_cast<int32_t>(x[i]) - (zp ? static_cast<int32_t>(zp[si]) : 0)) * scale[si];
    }
  });
}

bool dequantize_fast(KernelContext& ctx, const Tensor& x, const Tensor& scale, const Tensor* zp, DType out_type,
                     const QuantLayout& layout) {
  if (out_type != DType::Float32 || scale.dtype() != DType::Float32 || layout.mode == QuantLayout::Mode::Blocked ||
      (x.dtype() != DType::UInt8 && x.dtype() != DType::Int8))
    return false;
  Tensor& y = ctx.allocate_output(0, DType::Float32, x.dims());
  if (x.dtype() == DType::UInt8)
    dequantize_f32<uint8_t>(x.data<uint8_t>(), scale.data<float>(), zp ? zp->data<uint8_t>() : nullptr, layout,
                            x.numel(), y.data<float>(), ctx);
  else
    dequantize_f32<int8_t>(x.data<int8_t>(), scale.data<float>(), zp ? zp->data<int8_t>() : nullptr, layout, x.numel(),
                           y.data<float>(), ctx);
  return true;
}

void quantize_linear_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zp = ctx.optional_input(2);
  DUET_CHECK(dtype_is_float(x.dtype()) || x.dtype() == DType::Int32, ctx.node.label(),
             ": input must be float or int32 (got ", dtype_name(x.dtype()), ")");
  const DType out_type = quantize_output_type(ctx.node, zp);
  const QuantLayout layout =
      quant_layout(x.dims(), scale, ctx.node.attr_int("axis", 1), ctx.node.attr_int("block_size", 0), ctx.node);
  check_zero_point_shape(zp, scale, ctx.node);
  if ((!zp || zp->dtype() == out_type) && quantize_fast(ctx, x, scale, zp, out_type, layout)) return;
  const bool saturate = ctx.node.attr_int("saturate", 1) != 0;
  // x / scale is computed in x's type unless `precision` names another.
  const int64_t precision_attr = ctx.node.attr_int("precision", 0);
  const DType precision = precision_attr != 0 ? static_cast<DType>(precision_attr)
                          : (x.dtype() == DType::Float64 || scale.dtype() == DType::Float64) ? DType::Float64
                          : dtype_is_float(x.dtype()) && dtype_bits(x.dtype()) >= 16 ? x.dtype()
                                                                                     : DType::Float32;
  Tensor& y = ctx.allocate_output(0, out_type, x.dims());
  auto quotient = [&](int64_t i, int64_t si) {
    const double xv = round_to_float_type(precision, element(x, i));
    const double sv = round_to_float_type(precision, element(scale, si));
    if (precision == DType::Float64) return xv / sv;
    return round_to_float_type(precision, static_cast<float>(xv) / static_cast<float>(sv));
  };
  IntRange range{};
  if (integer_range(out_type, range) && out_type != DType::Int32) {
    auto quantize_range = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t si = layout.index(i);
        const double q = quotient(i, si);
        const double zero = zp ? static_cast<double>(zp->get_int(si)) : 0.0;
        store_int(y, i, std::isnan(q) ? range.lo : round_saturate(std::nearbyint(q) + zero, range));
      }
    };
    // Packed sub-byte outputs share bytes between neighbours: write them serially.
    if (dtype_is_subbyte(out_type)) quantize_range(0, x.numel());
    else ctx.parallel_for(x.numel(), quantize_range);
    return;
  }
  if (const Minifloat* fmt = minifloat_format(out_type)) {
    const bool is_fp4 = out_type == DType::Float4E2M1;
    // Float8 zero points must be zero and are ignored; FP4 zero points add.
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int64_t si = layout.index(i);
      double q = quotient(i, si);
      if (is_fp4 && zp) q = static_cast<float>(q + element(*zp, si));
      const uint32_t bits = fmt->encode(static_cast<float>(q), Rounding::NearestEven,
                                        saturate || is_fp4 ? Overflow::Saturate : Overflow::Infinity);
      if (is_fp4) subbyte_set(y, i, static_cast<int32_t>(bits));
      else y.data<uint8_t>()[i] = static_cast<uint8_t>(bits);
    }
    return;
  }
  unsupported(ctx.node.label(), ": QuantizeLinear to ", dtype_name(out_type), " is not supported");
}

std::vector<ir::ValueType> quantize_linear_infer(InferContext& ctx) {
  DType out = DType::UInt8;
  const int64_t attr = ctx.node.attr_int("output_dtype", 0);
  if (ctx.inputs.size() > 2 && ctx.has_input(2)) out = ctx.inputs[2].dtype;
  else if (attr != 0 && dtype_is_valid(static_cast<int>(attr))) out = static_cast<DType>(attr);
  return {tensor_type(out, ctx.inputs[0].shape)};
}

// --- DequantizeLinear -----------------------------------------------------------

void dequantize_linear_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zp = ctx.optional_input(2);
  const QuantLayout layout =
      quant_layout(x.dims(), scale, ctx.node.attr_int("axis", 1), ctx.node.attr_int("block_size", 0), ctx.node);
  check_zero_point_shape(zp, scale, ctx.node);
  const bool float_input = minifloat_format(x.dtype()) != nullptr;
  IntRange unused{};
  DUET_CHECK(float_input || integer_range(x.dtype(), unused), ctx.node.label(), ": cannot dequantize ",
             dtype_name(x.dtype()));
  if (zp) {
    DUET_CHECK(zp->dtype() == x.dtype(), ctx.node.label(), ": zero point type ", dtype_name(zp->dtype()),
               " differs from input type ", dtype_name(x.dtype()));
  }
  // Float8 zero points must be zero (they carry no offset); FP4's do subtract.
  const bool use_zp = zp && (!float_input || x.dtype() == DType::Float4E2M1);
  if (zp && !use_zp) {
    for (int64_t i = 0; i < zp->numel(); ++i) {
      DUET_CHECK(zp->data<uint8_t>()[i] == 0, ctx.node.label(), ": float8 zero point must be zero");
    }
  }
  const int64_t attr = ctx.node.attr_int("output_dtype", 0);
  const DType out_type = attr != 0 ? static_cast<DType>(attr) : scale.dtype();
  DUET_CHECK(out_type == DType::Float32 || out_type == DType::Float64 || out_type == DType::Float16 ||
                 out_type == DType::BFloat16,
             ctx.node.label(), ": DequantizeLinear output type ", dtype_name(out_type), " is not a float type");
  if (dequantize_fast(ctx, x, scale, use_zp ? zp : nullptr, out_type, layout)) return;
  Tensor& y = ctx.allocate_output(0, out_type, x.dims());
  // (float(x) - zero_point) * scale in double, rounded once (through float32
  // for narrower outputs, as the float32 intermediate of the spec does).
  ctx.parallel_for(x.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t si = layout.index(i);
      double v = static_cast<double>(static_cast<float>(element(x, i)));
      if (use_zp) v -= element(*zp, si);
      v *= element(scale, si);
      if (out_type != DType::Float64 && scale.dtype() != DType::Float64) v = static_cast<float>(v);
      store_float(y, i, v);
    }
  });
}

std::vector<ir::ValueType> dequantize_linear_infer(InferContext& ctx) {
  const int64_t attr = ctx.node.attr_int("output_dtype", 0);
  const DType out = attr != 0 && dtype_is_valid(static_cast<int>(attr)) ? static_cast<DType>(attr) : ctx.inputs[1].dtype;
  return {tensor_type(out, ctx.inputs[0].shape)};
}

// --- DynamicQuantizeLinear ------------------------------------------------------

void dynamic_quantize_linear_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  DUET_CHECK(dtype_is_float(x.dtype()), ctx.node.label(), ": input must be a float type");
  // The range always includes 0 so that 0 is exactly representable.
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = static_cast<float>(element(x, i));
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const float scale = (hi == lo ? 1.0f : hi - lo) / 255.0f;
  const float initial_zero = 0.0f - lo / scale;
  const float zero = std::nearbyint(std::clamp(initial_zero, 0.0f, 255.0f));
  Tensor& y = ctx.allocate_output(0, DType::UInt8, x.dims());
  uint8_t* yd = y.data<uint8_t>();
  ctx.parallel_for(x.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float q = std::nearbyint(static_cast<float>(element(x, i)) / scale) + zero;
      yd[i] = static_cast<uint8_t>(std::isnan(q) ? 0.0f : std::clamp(q, 0.0f, 255.0f));
    }
  });
  if (ctx.output_requested(1)) store_float(ctx.allocate_output(1, x.dtype(), {}), 0, scale);
  if (ctx.output_requested(2)) ctx.allocate_output(2, DType::UInt8, {}).data<uint8_t>()[0] = static_cast<uint8_t>(zero);
}

std::vector<ir::ValueType> dynamic_quantize_linear_infer(InferContext& ctx) {
  return {tensor_type(DType::UInt8, ctx.inputs[0].shape), tensor_type(ctx.inputs[0].dtype, Shape(std::vector<Dim>{})),
          tensor_type(DType::UInt8, Shape(std::vector<Dim>{}))};
}

// --- QLinearMatMul --------------------------------------------------------------

// A quantization parameter of a matrix operand: one value, or one per row
// (A, `rows` values) or per column (B, `cols` values).
struct MatrixParam {
  const Tensor* t = nullptr;
  bool per_slice = false;
  double at(int64_t slice) const { return t ? element(*t, per_slice ? slice : 0) : 0.0; }
};

MatrixParam matrix_param(const Tensor* t, int64_t slices, const ir::Node& node, const char* what) {
  MatrixParam p{t, false};
  if (!t || t->numel() == 1) return p;
  DUET_CHECK(t->numel() == slices, node.label(), ": ", what, " of shape ", dims_str(t->dims()),
             " is neither per-tensor nor per-", slices, "-slice");
  p.per_slice = true;
  return p;
}

void qlinear_matmul_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  const Tensor& a_scale = ctx.input(1);
  const Tensor& b_scale = ctx.input(4);
  const Tensor& y_scale = ctx.input(6);
  const Tensor* y_zp = ctx.optional_input(7);
  for (const Tensor* t : {&a, &b}) {
    if (t->dtype() != DType::UInt8 && t->dtype() != DType::Int8) {
      unsupported(ctx.node.label(), ": QLinearMatMul of ", dtype_name(t->dtype()), " is not supported");
    }
  }
  const Dims& ad = a.dims();
  const Dims& bd = b.dims();
  DUET_CHECK(ad.size() >= 1 && bd.size() >= 1, ctx.node.label(), ": inputs must have rank >= 1");
  const bool a_vec = ad.size() == 1, b_vec = bd.size() == 1;
  const int64_t M = a_vec ? 1 : ad[ad.size() - 2], K = ad.back();
  const int64_t N = b_vec ? 1 : bd.back(), Kb = b_vec ? bd[0] : bd[bd.size() - 2];
  DUET_CHECK(K == Kb, ctx.node.label(), ": inner dimensions differ (", dims_str(ad), " x ", dims_str(bd), ")");
  const Dims a_batch(ad.begin(), ad.end() - (a_vec ? 1 : 2)), b_batch(bd.begin(), bd.end() - (b_vec ? 1 : 2));
  const Dims batch = broadcast_dims({a_batch, b_batch}, ctx.node);
  Dims out_dims = batch;
  if (!a_vec) out_dims.push_back(M);
  if (!b_vec) out_dims.push_back(N);
  const MatrixParam as = matrix_param(&a_scale, M, ctx.node, "a_scale");
  const MatrixParam az = matrix_param(ctx.optional_input(2), M, ctx.node, "a_zero_point");
  const MatrixParam bs = matrix_param(&b_scale, N, ctx.node, "b_scale");
  const MatrixParam bz = matrix_param(ctx.optional_input(5), N, ctx.node, "b_zero_point");
  DUET_CHECK(y_scale.numel() == 1 && (!y_zp || y_zp->numel() == 1), ctx.node.label(),
             ": y_scale and y_zero_point must be scalars");
  const DType out_type = y_zp ? y_zp->dtype() : a.dtype();
  IntRange range{};
  DUET_CHECK(integer_range(out_type, range), ctx.node.label(), ": bad output type ", dtype_name(out_type));
  Tensor& y = ctx.allocate_output(0, out_type, out_dims);

  // Multiplier a_scale * b_scale / y_scale, rounded in the scale type.
  const DType st = a_scale.dtype();
  const double ys = element(y_scale, 0), yz = y_zp ? element(*y_zp, 0) : 0.0;
  std::vector<double> mult(static_cast<size_t>(M * N));
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      mult[i * N + j] = round_to_float_type(st, round_to_float_type(st, as.at(i) * bs.at(j)) / ys);
    }
  }
  std::vector<int32_t> av(static_cast<size_t>(a.numel())), bv(static_cast<size_t>(b.numel()));
  for (int64_t i = 0; i < a.numel(); ++i) av[i] = static_cast<int32_t>(a.get_int(i) - az.at((i / K) % M));
  for (int64_t i = 0; i < b.numel(); ++i) bv[i] = static_cast<int32_t>(b.get_int(i) - bz.at(i % N));
  const auto a_str = broadcast_strides(a_batch, batch), b_str = broadcast_strides(b_batch, batch);
  const int64_t nbatch = numel(batch);
  ctx.parallel_for(nbatch * M, [&](int64_t r0, int64_t r1) {
    std::vector<int32_t> acc(static_cast<size_t>(N));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / M, i = r % M;
      int64_t ao = 0, bo = 0, rem = bi;
      for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
        const int64_t idx = rem % batch[d];
        rem /= batch[d];
        ao += idx * a_str[d];
        bo += idx * b_str[d];
      }
      const int32_t* arow = av.data() + ao * M * K + i * K;
      const int32_t* bmat = bv.data() + bo * K * N;
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t k = 0; k < K; ++k) {
        const int32_t x = arow[k];
        const int32_t* brow = bmat + k * N;
        for (int64_t j = 0; j < N; ++j) acc[j] += x * brow[j];
      }
      for (int64_t j = 0; j < N; ++j) {
        store_int(y, r * N + j, round_saturate(static_cast<double>(acc[j]) * mult[i * N + j] + yz, range));
      }
    }
  });
}

std::vector<ir::ValueType> qlinear_matmul_infer(InferContext& ctx) {
  const Shape& a = ctx.inputs[0].shape;
  const Shape& b = ctx.inputs[3].shape;
  const DType out = ctx.has_input(7) ? ctx.inputs[7].dtype : ctx.inputs[0].dtype;
  if (!a.rank_known || !b.rank_known || a.rank() < 1 || b.rank() < 1) return {tensor_type(out, Shape::unknown_rank())};
  const bool a_vec = a.rank() == 1, b_vec = b.rank() == 1;
  Shape ab(std::vector<Dim>(a.dims.begin(), a.dims.end() - (a_vec ? 1 : 2)));
  Shape bb(std::vector<Dim>(b.dims.begin(), b.dims.end() - (b_vec ? 1 : 2)));
  Shape s = broadcast_shapes({ab, bb}, ctx.node);
  if (!a_vec) s.dims.push_back(a.dims[a.rank() - 2]);
  if (!b_vec) s.dims.push_back(b.dims.back());
  return {tensor_type(out, s)};
}

// 2*K per output element for the integer product plus the requantization.
Cost qlinear_matmul_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const auto& a = ctx.inputs[0].shape;
  if (a.fully_known() && a.rank() >= 1 && ctx.outputs[0].shape.fully_known()) {
    const double out = static_cast<double>(numel(ctx.outputs[0].shape.concrete()));
    c.flops = out * (2.0 * static_cast<double>(a.concrete().back()) + 3.0);
  }
  return c;
}


// ---------------------------------------------------------------------------
// FakeQuantize (com.duet, quantization-aware training): inputs X (float32),
// scale (scalar, or one per slice along `axis`), optional zero_point (int32,
// same count); attributes qmin, qmax, axis. Y = (clamp(round_even(X / scale) +
// zp, qmin, qmax) - zp) * scale, what QuantizeLinear -> DequantizeLinear
// computes. A scale of 0 means "not calibrated yet": Y = X (observer warm-up).
// Optional outputs 1 and 2: min and max of X (for moving-average observers).
//
// FakeQuantizeGrad (com.duet): inputs dY, X, scale, zero_point; outputs dX
// (straight-through estimator, zero where X quantized outside [qmin, qmax])
// and optionally dScale (learned step size, LSQ: Esser et al. 2020, scaled by
// grad_scale = 1 / sqrt(elements per scale * qmax)).

struct FakeQuantSetup {
  std::vector<float> scale;
  std::vector<int32_t> zp;
  int64_t qmin = 0, qmax = 0, axis = 0, inner = 1, channels = 1;
  int64_t slice(int64_t i) const { return channels == 1 ? 0 : (i / inner) % channels; }
};

FakeQuantSetup fake_quant_setup(const KernelContext& ctx, const Tensor& x, size_t scale_index) {
  FakeQuantSetup f;
  f.qmin = ctx.node.attr_int("qmin", -128);
  f.qmax = ctx.node.attr_int("qmax", 127);
  if (f.qmin >= f.qmax) fail(ctx.node.label(), ": qmin ", f.qmin, " must be below qmax ", f.qmax);
  if (x.dtype() != DType::Float32) unsupported(ctx.node.label(), ": FakeQuantize takes float32, got ", x.describe());
  const Tensor& s = ctx.input(scale_index);
  for (int64_t i = 0; i < s.numel(); ++i) f.scale.push_back(static_cast<float>(s.get_double(i)));
  if (const Tensor* z = ctx.optional_input(scale_index + 1))
    for (int64_t i = 0; i < z->numel(); ++i) f.zp.push_back(static_cast<int32_t>(z->get_int(i)));
  if (f.zp.empty()) f.zp.assign(f.scale.size(), 0);
  if (f.zp.size() != f.scale.size()) fail(ctx.node.label(), ": zero_point has ", f.zp.size(), " values, scale ", f.scale.size());
  f.channels = static_cast<int64_t>(f.scale.size());
  if (f.channels > 1) {
    f.axis = normalize_axis(ctx.node.attr_int("axis", 0), static_cast<int64_t>(x.rank()), ctx.node);
    if (x.dim(static_cast<int>(f.axis)) != f.channels)
      fail(ctx.node.label(), ": ", f.channels, " scales for axis ", f.axis, " of ", x.describe());
    for (size_t d = static_cast<size_t>(f.axis) + 1; d < x.rank(); ++d) f.inner *= x.dims()[d];
  }
  return f;
}

void fake_quantize_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const FakeQuantSetup f = fake_quant_setup(ctx, x, 1);
  Tensor& y = ctx.allocate_output(0, DType::Float32, x.dims());
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = f.slice(i);
    const float v = src[i], s = f.scale[c];
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    if (s == 0) {
      dst[i] = v;
      continue;
    }
    const float q = std::clamp(std::nearbyint(v / s) + static_cast<float>(f.zp[c]), static_cast<float>(f.qmin),
                               static_cast<float>(f.qmax));
    dst[i] = (q - static_cast<float>(f.zp[c])) * s;
  }
  if (x.numel() == 0) lo = hi = 0;
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) ctx.allocate_output(1, DType::Float32, {}).data<float>()[0] = lo;
  if (ctx.num_outputs() > 2 && ctx.output_requested(2)) ctx.allocate_output(2, DType::Float32, {}).data<float>()[0] = hi;
}

void fake_quantize_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.input(0);
  const Tensor& x = ctx.input(1);
  if (dy.dims() != x.dims() || dy.dtype() != x.dtype())
    fail(ctx.node.label(), ": gradient ", dy.describe(), " does not match the input ", x.describe());
  const FakeQuantSetup f = fake_quant_setup(ctx, x, 2);
  const float* g = dy.data<float>();
  const float* src = x.data<float>();
  float* dx = ctx.num_outputs() > 0 && ctx.output_requested(0) ? ctx.allocate_output(0, DType::Float32, x.dims()).data<float>() : nullptr;
  std::vector<double> ds(f.scale.size(), 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = f.slice(i);
    const float s = f.scale[c];
    if (s == 0) {
      if (dx) dx[i] = g[i];
      continue;
    }
    const float r = std::nearbyint(src[i] / s) + static_cast<float>(f.zp[c]);
    const bool inside = r >= static_cast<float>(f.qmin) && r <= static_cast<float>(f.qmax);
    if (dx) dx[i] = inside ? g[i] : 0.0f;
    const double q = std::clamp<double>(r, static_cast<double>(f.qmin), static_cast<double>(f.qmax)) - f.zp[c];
    ds[c] += static_cast<double>(g[i]) * (inside ? q - static_cast<double>(src[i]) / s : q);
  }
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) {
    const Tensor& st = ctx.input(2);
    Tensor& out = ctx.allocate_output(1, DType::Float32, st.dims());
    const double per = static_cast<double>(x.numel()) / static_cast<double>(f.scale.size());
    const double grad_scale = 1.0 / std::sqrt(per * static_cast<double>(f.qmax));
    for (size_t c = 0; c < ds.size(); ++c) out.data<float>()[c] = static_cast<float>(ds[c] * grad_scale);
  }
}

std::vector<ir::ValueType> infer_fake_quantize(InferContext& ctx) {
  std::vector<ir::ValueType> out{ctx.inputs.at(0)};
  for (size_t i = 1; i < ctx.num_outputs; ++i) out.push_back(tensor_type(DType::Float32, Shape(std::vector<Dim>{})));
  return out;
}

std::vector<ir::ValueType> infer_fake_quantize_grad(InferContext& ctx) {
  std::vector<ir::ValueType> out{ctx.inputs.at(1)};
  if (ctx.num_outputs > 1) out.push_back(ctx.inputs.at(2));
  return out;
}

}  // namespace

void register_quantize(Registry& r) {
  r.add({.domain = "com.duet", .name = "FakeQuantize", .kernel = fake_quantize_kernel, .infer = infer_fake_quantize,
         .cost = cost_per_output_element(4)});
  r.add({.domain = "com.duet", .name = "FakeQuantizeGrad", .kernel = fake_quantize_grad_kernel,
         .infer = infer_fake_quantize_grad, .cost = cost_per_output_element(4)});
  r.add({.name = "QuantizeLinear", .kernel = quantize_linear_kernel, .infer = quantize_linear_infer,
         .cost = cost_per_output_element(3)});
  r.add({.name = "DequantizeLinear", .kernel = dequantize_linear_kernel, .infer = dequantize_linear_infer,
         .cost = cost_per_output_element(2)});
  r.add({.name = "DynamicQuantizeLinear", .kernel = dynamic_quantize_linear_kernel,
         .infer = dynamic_quantize_linear_infer, .cost = cost_per_output_element(4)});
  r.add({.name = "QLinearMatMul", .kernel = qlinear_matmul_kernel, .infer = qlinear_matmul_infer,
         .cost = qlinear_matmul_cost});
}

}  // namespace duet::ops
