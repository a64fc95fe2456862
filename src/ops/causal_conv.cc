// CausalConvWithState (opset 27): a stateful causal depthwise 1-D convolution
// with an optional fused SiLU, as used by Mamba and Gated DeltaNet.
//
// The input is left-padded with the carried state (or zeros), convolved
// per channel with "valid" padding, and the last k-1 padded positions become
// the next state. The convolution result is rounded to the element type
// before the activation, as the ONNX reference does.
#include <cmath>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

struct CausalConvShape {
  int64_t batch = 0, channels = 0, length = 0, kernel = 0;
  int64_t state_len() const { return kernel - 1; }
};

// Validates the operands and returns the sizes; every problem names the node.
CausalConvShape causal_conv_shape(const KernelContext& ctx) {
  const std::string label = ctx.node.label();
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  if (x.rank() != 3) fail(label, ": input must be rank 3 (batch, channels, length), got ", x.describe());
  CausalConvShape s{x.dim(0), x.dim(1), x.dim(2), 0};
  if (w.rank() != 3 || w.dim(0) != s.channels || w.dim(1) != 1 || w.dim(2) < 1)
    fail(label, ": weight must be (", s.channels, ", 1, k) with k >= 1, got ", w.describe());
  s.kernel = w.dim(2);
  if (w.dtype() != x.dtype()) fail(label, ": weight type ", dtype_name(w.dtype()), " differs from input type");
  if (const Tensor* bias = ctx.optional_input(2)) {
    if (bias->dims() != Dims{s.channels} || bias->dtype() != x.dtype())
      fail(label, ": bias must be a ", dtype_name(x.dtype()), " [", s.channels, "] tensor, got ", bias->describe());
  }
  if (const Tensor* past = ctx.optional_input(3)) {
    if (past->dims() != Dims{s.batch, s.channels, s.state_len()} || past->dtype() != x.dtype())
      fail(label, ": past_state must be a ", dtype_name(x.dtype()), " [", s.batch, "x", s.channels, "x",
           s.state_len(), "] tensor, got ", past->describe());
  }
  return s;
}

bool fused_silu(const ir::Node& node) {
  const std::string act = node.attr_string("activation", "none");
  if (act == "silu" || act == "swish") return true;
  if (act == "none") return false;
  fail(node.label(), ": activation must be 'none', 'silu' or 'swish', got '", act, "'");
}

template <typename T>
void causal_conv_typed(KernelContext& ctx, const CausalConvShape& s, bool silu) {
  const T* x = ctx.input(0).data<T>();
  const T* w = ctx.input(1).data<T>();
  const Tensor* bias_t = ctx.optional_input(2);
  const Tensor* past_t = ctx.optional_input(3);
  const T* bias = bias_t ? bias_t->data<T>() : nullptr;
  const T* past = past_t ? past_t->data<T>() : nullptr;
  const int64_t k = s.kernel, pad = s.state_len(), len = s.length;

  T* y = ctx.allocate_output(0, ctx.input(0).dtype(), {s.batch, s.channels, len}).template data<T>();
  T* present = nullptr;
  if (ctx.num_outputs() > 1 && ctx.output_requested(1))
    present = ctx.allocate_output(1, ctx.input(0).dtype(), {s.batch, s.channels, pad}).template data<T>();

  // One task per (batch, channel) row; each row's padded input is built
  // locally so rows are independent and the result is split-invariant.
  ctx.parallel_for(s.batch * s.channels, [&](int64_t begin, int64_t end) {
    std::vector<float> padded(pad + len);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t c = row % s.channels;
      for (int64_t j = 0; j < pad; ++j) padded[j] = past ? static_cast<float>(past[row * pad + j]) : 0.0f;
      for (int64_t t = 0; t < len; ++t) padded[pad + t] = static_cast<float>(x[row * len + t]);
      const T* wc = w + c * k;
      const float b = bias ? static_cast<float>(bias[c]) : 0.0f;
      for (int64_t t = 0; t < len; ++t) {
        float acc = b;
        for (int64_t j = 0; j < k; ++j) acc += static_cast<float>(wc[j]) * padded[t + j];
        float v = static_cast<float>(T(acc));  // the convolution result is in T
        if (silu) v = v / (1.0f + std::exp(-v));
        y[row * len + t] = T(v);
      }
      // present_state: the last k-1 positions of the padded input.
      if (present)
        for (int64_t j = 0; j < pad; ++j) present[row * pad + j] = T(padded[len + j]);
    }
  });
}

void causal_conv_kernel(KernelContext& ctx) {
  const CausalConvShape s = causal_conv_shape(ctx);
  const bool silu = fused_silu(ctx.node);
  switch (ctx.input(0).dtype()) {
    case DType::Float32: return causal_conv_typed<float>(ctx, s, silu);
    case DType::Float16: return causal_conv_typed<float16>(ctx, s, silu);
    case DType::BFloat16: return causal_conv_typed<bfloat16>(ctx, s, silu);
    default:
      unsupported(ctx.node.label(), ": input type ", dtype_name(ctx.input(0).dtype()),
                  " is not supported (float, float16, bfloat16)");
  }
}

std::vector<ir::ValueType> causal_conv_infer(InferContext& ctx) {
  const ir::ValueType& x = ctx.inputs.at(0);
  std::vector<ir::ValueType> out(ctx.num_outputs, tensor_type(x.dtype, Shape::unknown_rank()));
  out[0].shape = x.shape;
  if (ctx.num_outputs > 1 && x.shape.rank_known && x.shape.rank() == 3) {
    Dim state_len = ctx.fresh_dim();
    const ir::ValueType& w = ctx.inputs.at(1);
    if (w.shape.rank_known && w.shape.rank() == 3 && w.shape.dims[2].known()) state_len = Dim(w.shape.dims[2].value - 1);
    out[1].shape = Shape({x.shape.dims[0], x.shape.dims[1], state_len});
  }
  return out;
}

// One multiply-add per tap per output element, plus the bias add and the
// optional SiLU (about four FLOPs).
Cost causal_conv_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const ir::ValueType& w = ctx.inputs.at(1);
  const ir::ValueType& y = ctx.outputs.at(0);
  if (!w.shape.fully_known() || !y.shape.fully_known()) return c;
  const double k = static_cast<double>(w.shape.dims[2].value);
  const double silu = fused_silu(ctx.node) ? 4.0 : 0.0;
  c.flops = static_cast<double>(numel(y.shape.concrete())) * (2.0 * k + 1.0 + silu);
  return c;
}

}  // namespace

void register_causal_conv(Registry& r) {
  r.add({.domain = "", .name = "CausalConvWithState", .kernel = causal_conv_kernel, .infer = causal_conv_infer,
         .cost = causal_conv_cost, .family = {}});
}

}  // namespace duet::ops
