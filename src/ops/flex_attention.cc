// FlexAttention (ai.onnx.preview, version 1): scaled dot-product attention on
// rank-4 (batch, heads, seq, size) inputs with two optional modifier
// subgraphs, score_mod on the scaled scores and prob_mod on the softmax
// probabilities, both in softmax_precision.
//
// Arithmetic is in double, rounded where the ONNX function body casts: Q and
// K are each scaled by sqrt(scale) in the input type, Q.K^T is rounded to the
// input type, then everything through the P.V product is in the softmax
// precision and the result is cast back to the input type.
#include <cmath>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

// Rounds v to the precision of dtype t (float types only).
double round_to(DType t, double v) {
  switch (t) {
    case DType::Float32: return static_cast<float>(v);
    case DType::Float16: return static_cast<float>(float16(static_cast<float>(v)));
    case DType::BFloat16: return static_cast<float>(bfloat16(static_cast<float>(v)));
    default: return v;
  }
}

std::vector<double> to_double(const Tensor& t) {
  std::vector<double> out(t.numel());
  dispatch_float(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_same_v<T, double>) out[i] = p[i];
      else out[i] = static_cast<float>(p[i]);
    }
  });
  return out;
}

Tensor from_double(const std::vector<double>& values, DType dtype, const Dims& dims) {
  Tensor t(dtype, dims);
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_same_v<T, double>) p[i] = values[i];
      else p[i] = T(static_cast<float>(values[i]));
    }
  });
  return t;
}

bool is_float_type(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 || t == DType::BFloat16;
}

// softmax_precision holds an ONNX TensorProto data type code; the default is
// float32, or double for double inputs.
DType softmax_type(const ir::Node& node, DType input) {
  const int64_t code = node.attr_int("softmax_precision", input == DType::Float64 ? 11 : 1);
  switch (code) {
    case 1: return DType::Float32;
    case 10: return DType::Float16;
    case 11: return DType::Float64;
    case 16: return DType::BFloat16;
    default: fail(node.label(), ": softmax_precision ", code, " is not a float type (1, 10, 11 or 16)");
  }
}

struct FlexShape {
  int64_t batch = 0, q_heads = 0, kv_heads = 0, q_len = 0, kv_len = 0, head_size = 0, v_head_size = 0;
};

FlexShape flex_shape(const KernelContext& ctx) {
  const std::string label = ctx.node.label();
  const Tensor& q = ctx.input(0);
  const Tensor& k = ctx.input(1);
  const Tensor& v = ctx.input(2);
  if (q.rank() != 4 || k.rank() != 4 || v.rank() != 4)
    fail(label, ": Q, K and V must be rank 4, got ", q.describe(), ", ", k.describe(), ", ", v.describe());
  FlexShape s{q.dim(0), q.dim(1), k.dim(1), q.dim(2), k.dim(2), q.dim(3), v.dim(3)};
  if (k.dim(0) != s.batch || v.dim(0) != s.batch || v.dim(1) != s.kv_heads || v.dim(2) != s.kv_len ||
      k.dim(3) != s.head_size)
    fail(label, ": K ", k.describe(), " and V ", v.describe(), " do not match Q ", q.describe());
  if (s.kv_heads <= 0 || s.q_heads % s.kv_heads != 0)
    fail(label, ": q heads (", s.q_heads, ") must be a multiple of kv heads (", s.kv_heads, ")");
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) fail(label, ": Q, K and V types differ");
  return s;
}

// Runs a modifier subgraph on `values` and checks it kept shape and type.
Tensor run_modifier(KernelContext& ctx, const char* attr, Tensor values) {
  const ir::Graph* body = ctx.node.attr_graph(attr);
  if (!body) return values;
  if (!ctx.subgraphs) fail(ctx.node.label(), ": no subgraph runner for ", attr);
  std::vector<Tensor> outs = ctx.subgraphs->run(*body, {values});
  if (outs.size() != 1) fail(ctx.node.label(), ": ", attr, " produced ", outs.size(), " outputs, expected 1");
  if (outs[0].dims() != values.dims() || outs[0].dtype() != values.dtype())
    fail(ctx.node.label(), ": ", attr, " must keep shape and type ", values.describe(), ", got ", outs[0].describe());
  return outs[0];
}

void flex_attention_kernel(KernelContext& ctx) {
  const DType dtype = ctx.input(0).dtype();
  if (!is_float_type(dtype))
    unsupported(ctx.node.label(), ": input type ", dtype_name(dtype), " is not supported (float types only)");
  const FlexShape s = flex_shape(ctx);
  const DType sp = softmax_type(ctx.node, dtype);
  const int64_t group = s.q_heads / s.kv_heads;
  const int64_t rows = s.batch * s.q_heads * s.q_len;
  const int64_t L = s.q_len, S = s.kv_len, E = s.head_size, Ev = s.v_head_size;

  // Default scale 1/sqrt(head_size); Q and K each take sqrt(scale), computed
  // in float32 and cast to the input type as the function body does.
  const float attr_scale = ctx.node.attr_float("scale", 0.0f);
  const float scale = attr_scale != 0.0f ? attr_scale : 1.0f / std::sqrt(static_cast<float>(E));
  const double sqrt_scale = round_to(dtype, static_cast<double>(std::sqrt(scale)));

  std::vector<double> q = to_double(ctx.input(0));
  std::vector<double> k = to_double(ctx.input(1));
  std::vector<double> v = to_double(ctx.input(2));
  for (double& x : q) x = round_to(dtype, x * sqrt_scale);
  for (double& x : k) x = round_to(dtype, x * sqrt_scale);
  for (double& x : v) x = round_to(sp, x);

  // Row r = ((b * Hq + h) * L + i); query head h reads KV head h / group.
  auto kv_base = [&](int64_t r, int64_t size) {
    const int64_t bh = r / L, b = bh / s.q_heads, h = bh % s.q_heads;
    return ((b * s.kv_heads + h / group) * S) * size;
  };

  std::vector<double> scores(rows * S);
  ctx.parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const double* qr = q.data() + r * E;
      const double* kb = k.data() + kv_base(r, E);
      for (int64_t j = 0; j < S; ++j) {
        double acc = 0;
        for (int64_t e = 0; e < E; ++e) acc += qr[e] * kb[j * E + e];
        scores[r * S + j] = round_to(sp, round_to(dtype, acc));
      }
    }
  });
  const Dims score_dims{s.batch, s.q_heads, L, S};
  Tensor score_t = run_modifier(ctx, "score_mod", from_double(scores, sp, score_dims));
  scores = to_double(score_t);

  // Softmax over the key axis, in the softmax precision.
  ctx.parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      double* row = scores.data() + r * S;
      double mx = -INFINITY;
      for (int64_t j = 0; j < S; ++j) mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < S; ++j) sum += (row[j] = std::exp(row[j] - mx));
      for (int64_t j = 0; j < S; ++j) row[j] = round_to(sp, row[j] / sum);
    }
  });
  Tensor prob_t = run_modifier(ctx, "prob_mod", from_double(scores, sp, score_dims));
  const std::vector<double> probs = to_double(prob_t);

  std::vector<double> y(rows * Ev);
  ctx.parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const double* p = probs.data() + r * S;
      const double* vb = v.data() + kv_base(r, Ev);
      for (int64_t e = 0; e < Ev; ++e) {
        double acc = 0;
        for (int64_t j = 0; j < S; ++j) acc += p[j] * vb[j * Ev + e];
        y[r * Ev + e] = round_to(sp, acc);
      }
    }
  });
  ctx.set_output(0, from_double(y, dtype, {s.batch, s.q_heads, L, Ev}));
}

std::vector<ir::ValueType> flex_attention_infer(InferContext& ctx) {
  const ir::ValueType& q = ctx.inputs.at(0);
  const ir::ValueType& v = ctx.inputs.at(2);
  std::vector<ir::ValueType> out{tensor_type(q.dtype, Shape::unknown_rank())};
  if (q.shape.rank_known && q.shape.rank() == 4 && v.shape.rank_known && v.shape.rank() == 4)
    out[0].shape = Shape({q.shape.dims[0], q.shape.dims[1], q.shape.dims[2], v.shape.dims[3]});
  return out;
}

// Q.K^T and P.V are multiply-adds; softmax is about five FLOPs per score.
// The modifier subgraphs are not counted.
Cost flex_attention_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const ir::ValueType& q = ctx.inputs.at(0);
  const ir::ValueType& k = ctx.inputs.at(1);
  const ir::ValueType& v = ctx.inputs.at(2);
  if (!q.shape.fully_known() || !k.shape.fully_known() || !v.shape.fully_known() || q.shape.rank() != 4 ||
      k.shape.rank() != 4 || v.shape.rank() != 4)
    return c;
  const double scores = static_cast<double>(q.shape.dims[0].value * q.shape.dims[1].value * q.shape.dims[2].value *
                                            k.shape.dims[2].value);
  c.flops = scores * (2.0 * q.shape.dims[3].value + 2.0 * v.shape.dims[3].value + 5.0);
  return c;
}

}  // namespace

void register_flex_attention(Registry& r) {
  r.add({.domain = "ai.onnx.preview", .name = "FlexAttention", .kernel = flex_attention_kernel,
         .infer = flex_attention_infer, .cost = flex_attention_cost, .family = {}});
}

}  // namespace duet::ops
