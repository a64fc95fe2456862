// Loss ops: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss.
//
// Both take scores shaped (N, C, D1, ..., Dk) and integer labels shaped
// (N, D1, ..., Dk). The per-element loss is -w[label] * logp[n, label, d];
// labels equal to ignore_index contribute nothing (weight 0). "mean" divides
// the weighted sum by the sum of the weights that were used. Arithmetic is in
// double; results round once to the score type.
#include <cmath>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

enum class Reduction { None, Sum, Mean };

Reduction reduction_of(const ir::Node& node) {
  const std::string r = node.attr_string("reduction", "mean");
  if (r == "none") return Reduction::None;
  if (r == "sum") return Reduction::Sum;
  if (r == "mean") return Reduction::Mean;
  fail(node.label(), ": reduction must be none, sum or mean, got '", r, "'");
}

// Shapes shared by both ops: scores (N, C, D...) viewed as (N, C, D) with D
// the product of the trailing dims, labels (N, D...).
struct LossShape {
  int64_t n = 0, c = 0, d = 1;
  Dims label_dims;
};

LossShape check_shapes(const ir::Node& node, const Tensor& scores, const Tensor& labels, const Tensor* weights) {
  if (scores.rank() < 2) fail(node.label(), ": input must have rank >= 2 (N, C, ...), got ", scores.describe());
  if (labels.dtype() != DType::Int32 && labels.dtype() != DType::Int64)
    unsupported(node.label(), ": labels must be int32 or int64, got ", dtype_name(labels.dtype()));
  LossShape s;
  s.n = scores.dim(0);
  s.c = scores.dim(1);
  Dims expected{s.n};
  for (size_t i = 2; i < scores.rank(); ++i) {
    expected.push_back(scores.dims()[i]);
    s.d *= scores.dims()[i];
  }
  if (labels.dims() != expected)
    fail(node.label(), ": labels shape ", dims_str(labels.dims()), " does not match input ", scores.describe(),
         " (expected ", dims_str(expected), ")");
  if (weights) {
    if (weights->dtype() != scores.dtype())
      fail(node.label(), ": weights type ", dtype_name(weights->dtype()), " differs from input type ",
           dtype_name(scores.dtype()));
    if (weights->dims() != Dims{s.c})
      fail(node.label(), ": weights must have shape [", s.c, "], got ", weights->describe());
  }
  s.label_dims = expected;
  return s;
}

struct LossOptions {
  Reduction reduction = Reduction::Mean;
  bool has_ignore = false;
  int64_t ignore_index = 0;
};

LossOptions options_of(const ir::Node& node) {
  LossOptions o;
  o.reduction = reduction_of(node);
  o.has_ignore = node.has_attr("ignore_index");
  o.ignore_index = node.attr_int("ignore_index", 0);
  return o;
}

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) return static_cast<T>(v);
  else return T(static_cast<float>(v));
}

template <typename T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return static_cast<double>(static_cast<float>(v));
}

// Computes the per-element losses from log-probabilities logp(n, c, d) and
// writes the (reduced) loss into output 0.
template <typename T, typename LogProb>
void finish_loss(KernelContext& ctx, const LossShape& shape, const LossOptions& opt, const Tensor& labels,
                 const Tensor* weights, LogProb&& logp) {
  const int64_t count = shape.n * shape.d;
  std::vector<double> loss(count), weight(count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = i / shape.d, d = i % shape.d;
    const int64_t label = labels.get_int(i);
    if (opt.has_ignore && label == opt.ignore_index) {
      loss[i] = 0;
      weight[i] = 0;
      continue;
    }
    if (label < 0 || label >= shape.c)
      fail(ctx.node.label(), ": label ", label, " at index ", i, " is outside [0, ", shape.c, ")");
    weight[i] = weights ? as_double(weights->data<T>()[label]) : 1.0;
    loss[i] = -logp(n, label, d) * weight[i];
  }
  if (opt.reduction == Reduction::None) {
    T* out = ctx.allocate_output(0, dtype_of<T>::value, shape.label_dims).template data<T>();
    for (int64_t i = 0; i < count; ++i) out[i] = from_double<T>(loss[i]);
    return;
  }
  double total = 0, total_weight = 0;
  for (int64_t i = 0; i < count; ++i) {
    total += loss[i];
    total_weight += weight[i];
  }
  const double value = opt.reduction == Reduction::Sum ? total : total / total_weight;  // all ignored: NaN
  ctx.allocate_output(0, dtype_of<T>::value, {}).template data<T>()[0] = from_double<T>(value);
}

template <typename T>
void softmax_cross_entropy(KernelContext& ctx, const LossShape& shape, const LossOptions& opt) {
  const T* x = ctx.input(0).data<T>();
  const Tensor* weights = ctx.optional_input(2);
  const int64_t c_count = shape.c, d_count = shape.d;
  // Log-softmax over the class axis, in double.
  std::vector<double> logp(static_cast<size_t>(shape.n * c_count * d_count));
  ctx.parallel_for(shape.n * d_count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / d_count, d = i % d_count;
      const int64_t base = n * c_count * d_count + d;
      double mx = -INFINITY;
      for (int64_t c = 0; c < c_count; ++c) mx = std::max(mx, as_double(x[base + c * d_count]));
      double sum = 0;
      for (int64_t c = 0; c < c_count; ++c) sum += std::exp(as_double(x[base + c * d_count]) - mx);
      const double log_sum = std::log(sum) + mx;
      for (int64_t c = 0; c < c_count; ++c) logp[base + c * d_count] = as_double(x[base + c * d_count]) - log_sum;
    }
  });
  finish_loss<T>(ctx, shape, opt, ctx.input(1), weights, [&](int64_t n, int64_t c, int64_t d) {
    return logp[(n * c_count + c) * d_count + d];
  });
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) {
    T* out = ctx.allocate_output(1, dtype_of<T>::value, ctx.input(0).dims()).template data<T>();
    for (size_t i = 0; i < logp.size(); ++i) out[i] = from_double<T>(logp[i]);
  }
}

template <typename T>
void negative_log_likelihood(KernelContext& ctx, const LossShape& shape, const LossOptions& opt) {
  const T* x = ctx.input(0).data<T>();
  const int64_t c_count = shape.c, d_count = shape.d;
  finish_loss<T>(ctx, shape, opt, ctx.input(1), ctx.optional_input(2), [&](int64_t n, int64_t c, int64_t d) {
    return as_double(x[(n * c_count + c) * d_count + d]);
  });
}

void softmax_cross_entropy_kernel(KernelContext& ctx) {
  const Tensor& scores = ctx.input(0);
  const LossShape shape = check_shapes(ctx.node, scores, ctx.input(1), ctx.optional_input(2));
  const LossOptions opt = options_of(ctx.node);
  dispatch_float(scores.dtype(), [&](auto tag) {
    softmax_cross_entropy<typename decltype(tag)::type>(ctx, shape, opt);
  });
}

void negative_log_likelihood_kernel(KernelContext& ctx) {
  const Tensor& scores = ctx.input(0);
  const LossShape shape = check_shapes(ctx.node, scores, ctx.input(1), ctx.optional_input(2));
  const LossOptions opt = options_of(ctx.node);
  dispatch_float(scores.dtype(), [&](auto tag) {
    negative_log_likelihood<typename decltype(tag)::type>(ctx, shape, opt);
  });
}

// Output 0: labels' shape for reduction "none", else a scalar. Output 1 (the
// log-probabilities of SoftmaxCrossEntropyLoss) has the scores' type.
std::vector<ir::ValueType> loss_infer(InferContext& ctx) {
  const ir::ValueType& scores = ctx.inputs.at(0);
  std::vector<ir::ValueType> out;
  if (reduction_of(ctx.node) == Reduction::None) out.push_back(tensor_type(scores.dtype, ctx.inputs.at(1).shape));
  else out.push_back(tensor_type(scores.dtype, Shape(std::vector<Dim>{})));
  if (ctx.num_outputs > 1) out.push_back(scores);
  return out;
}

Cost loss_cost(const CostContext& ctx, double flops_per_score) {
  Cost c = default_cost(ctx);
  const ir::ValueType& in = ctx.inputs.at(0);
  if (in.shape.rank_known && in.shape.fully_known())
    c.flops = flops_per_score * static_cast<double>(numel(in.shape.concrete()));
  return c;
}


// SoftmaxCrossEntropyLossGrad (com.duet, written by train::add_gradients):
// from dLoss, the scores, the labels and the optional class weights, with the
// forward node's reduction and ignore_index: dScores(n, c, d) =
// g(n, d) * w(n, d) * (softmax(n, c, d) - [c == label(n, d)]), where g is dLoss
// (per element for "none", divided by the used weight sum for "mean").
template <typename T>
void softmax_cross_entropy_grad(KernelContext& ctx, const LossShape& shape, const LossOptions& opt) {
  const Tensor& dloss = ctx.input(0);
  const T* x = ctx.input(1).data<T>();
  const Tensor& labels = ctx.input(2);
  const Tensor* weights = ctx.optional_input(3);
  const int64_t count = shape.n * shape.d, C = shape.c, D = shape.d;
  const Dims expected_dloss = opt.reduction == Reduction::None ? shape.label_dims : Dims{};
  if (dloss.dims() != expected_dloss || dloss.dtype() != dtype_of<T>::value)
    fail(ctx.node.label(), ": dLoss ", dloss.describe(), " does not match the loss shape ", dims_str(expected_dloss));
  std::vector<double> weight(static_cast<size_t>(count));
  std::vector<int64_t> label(static_cast<size_t>(count));
  double total_weight = 0;
  for (int64_t i = 0; i < count; ++i) {
    label[i] = labels.get_int(i);
    if (opt.has_ignore && label[i] == opt.ignore_index) continue;
    if (label[i] < 0 || label[i] >= C)
      fail(ctx.node.label(), ": label ", label[i], " at index ", i, " is outside [0, ", C, ")");
    weight[i] = weights ? as_double(weights->data<T>()[label[i]]) : 1.0;
    total_weight += weight[i];
  }
  T* dx = ctx.allocate_output(0, dtype_of<T>::value, ctx.input(1).dims()).template data<T>();
  ctx.parallel_for(count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / D, d = i % D, base = n * C * D + d;
      double g = as_double(dloss.data<T>()[opt.reduction == Reduction::None ? i : 0]) * weight[i];
      if (opt.reduction == Reduction::Mean) g /= total_weight;
      double mx = -INFINITY, sum = 0;
      for (int64_t c = 0; c < C; ++c) mx = std::max(mx, as_double(x[base + c * D]));
      for (int64_t c = 0; c < C; ++c) sum += std::exp(as_double(x[base + c * D]) - mx);
      for (int64_t c = 0; c < C; ++c) {
        const double p = std::exp(as_double(x[base + c * D]) - mx) / sum;
        dx[base + c * D] = from_double<T>(weight[i] == 0 ? 0.0 : g * (p - (c == label[i] ? 1.0 : 0.0)));
      }
    }
  });
}

void softmax_cross_entropy_grad_kernel(KernelContext& ctx) {
  const Tensor& scores = ctx.input(1);
  const LossShape shape = check_shapes(ctx.node, scores, ctx.input(2), ctx.optional_input(3));
  const LossOptions opt = options_of(ctx.node);
  dispatch_float(scores.dtype(), [&](auto tag) {
    softmax_cross_entropy_grad<typename decltype(tag)::type>(ctx, shape, opt);
  });
}

}  // namespace

void register_loss(Registry& r) {
  // Log-softmax costs a max, a subtraction, an exp and a sum per score.
  r.add({.domain = "", .name = "SoftmaxCrossEntropyLoss", .kernel = softmax_cross_entropy_kernel,
         .infer = loss_infer, .cost = [](const CostContext& c) { return loss_cost(c, 5); }, .family = {}});
  r.add({.domain = "", .name = "NegativeLogLikelihoodLoss", .kernel = negative_log_likelihood_kernel,
         .infer = loss_infer, .cost = default_cost, .family = {}});
  r.add({.domain = "com.duet", .name = "SoftmaxCrossEntropyLossGrad", .kernel = softmax_cross_entropy_grad_kernel,
         .infer = infer_same_as(1)});
}

}  // namespace duet::ops
