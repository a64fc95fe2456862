// Loss ops: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss; CtcLoss
// and its gradient (com.duet, below).
//
// Both take scores shaped (N, C, D1, ..., Dk) and integer labels shaped
// (N, D1, ..., Dk). The per-element loss is -w[label] * logp[n, label, d];
// labels equal to ignore_index contribute nothing (weight 0). "mean" divides
// the weighted sum by the sum of the weights that were used. Arithmetic is in
// double; results round once to the score type.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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

// ---------------------------------------------------------------------------
// CtcLoss (com.duet): connectionist temporal classification (Graves et al.
// 2006) with PyTorch's ctc_loss definition. Inputs: scores [N, T, C]
// (unnormalized: log-softmax over C is taken inside, so the gradient is the
// stable softmax - posterior) and targets [N, S] int64, each row a label
// sequence padded with -1 (the blank, attribute `blank` = 0, never appears in
// a target). Every sample uses all T steps. Per sample nll = -log p(target |
// scores); reduction "mean" (default): the mean over samples of nll / max(1,
// target length); "sum": the sum of nll; "none": nll per sample [N].
// zero_infinity = 1: an impossible alignment (target longer than T allows)
// counts 0 and gives no gradient, else it is +inf. Double arithmetic.
// CtcLossGrad (com.duet): from dLoss, scores and targets, dScores.

struct CtcSample {
  std::vector<int64_t> extended;  // blank, l1, blank, l2, ..., blank
  int64_t length = 0;             // target length
};

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double log_add(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  const double m = std::max(a, b);
  return m + std::log1p(std::exp(-std::fabs(a - b)));
}

CtcSample ctc_sample(const ir::Node& node, const Tensor& targets, int64_t n, int64_t classes, int64_t blank) {
  CtcSample s;
  const int64_t width = targets.rank() == 2 ? targets.dim(1) : 0;
  s.extended.push_back(blank);
  for (int64_t k = 0; k < width; ++k) {
    const int64_t label = targets.get_int(n * width + k);
    if (label < 0) break;
    if (label >= classes || label == blank)
      fail(node.label(), ": target ", label, " of sample ", n, " is the blank or outside [0, ", classes, ")");
    s.extended.push_back(label);
    s.extended.push_back(blank);
    ++s.length;
  }
  return s;
}

// log-softmax of one sample's scores [T, C] into lp.
template <typename T>
void log_softmax_rows(const T* x, int64_t steps, int64_t classes, std::vector<double>& lp) {
  lp.resize(static_cast<size_t>(steps * classes));
  for (int64_t t = 0; t < steps; ++t) {
    const T* row = x + t * classes;
    double mx = kNegInf, sum = 0;
    for (int64_t c = 0; c < classes; ++c) mx = std::max(mx, as_double(row[c]));
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(as_double(row[c]) - mx);
    const double lse = mx + std::log(sum);
    for (int64_t c = 0; c < classes; ++c) lp[t * classes + c] = as_double(row[c]) - lse;
  }
}

// Forward variables log alpha [T, S'] (emission at t included) and, when
// `beta` is given, log beta' [T, S'] (the rest after t, emission at t not
// included): sum_s alpha_t(s) beta'_t(s) = p at every t. Returns log p.
double ctc_forward_backward(const CtcSample& s, const std::vector<double>& lp, int64_t steps, int64_t classes,
                            std::vector<double>& alpha, std::vector<double>* beta) {
  const int64_t L = static_cast<int64_t>(s.extended.size());
  const auto& e = s.extended;
  auto skip_allowed = [&](int64_t i) { return i >= 2 && e[i] != e[0] && e[i] != e[i - 2]; };
  alpha.assign(static_cast<size_t>(steps * L), kNegInf);
  alpha[0] = lp[e[0]];
  if (L > 1) alpha[1] = lp[e[1]];
  for (int64_t t = 1; t < steps; ++t)
    for (int64_t i = 0; i < L; ++i) {
      double a = alpha[(t - 1) * L + i];
      if (i >= 1) a = log_add(a, alpha[(t - 1) * L + i - 1]);
      if (skip_allowed(i)) a = log_add(a, alpha[(t - 1) * L + i - 2]);
      alpha[t * L + i] = a == kNegInf ? kNegInf : a + lp[t * classes + e[i]];
    }
  double logp = alpha[(steps - 1) * L + L - 1];
  if (L > 1) logp = log_add(logp, alpha[(steps - 1) * L + L - 2]);
  if (beta) {
    std::vector<double>& b = *beta;
    b.assign(static_cast<size_t>(steps * L), kNegInf);
    b[(steps - 1) * L + L - 1] = 0;
    if (L > 1) b[(steps - 1) * L + L - 2] = 0;
    for (int64_t t = steps - 2; t >= 0; --t)
      for (int64_t i = 0; i < L; ++i) {
        double v = kNegInf;
        for (int64_t j = i; j <= std::min(L - 1, i + 2); ++j) {
          if (j == i + 2 && !skip_allowed(j)) continue;
          const double next = b[(t + 1) * L + j];
          if (next != kNegInf) v = log_add(v, next + lp[(t + 1) * classes + e[j]]);
        }
        b[t * L + i] = v;
      }
  }
  return logp;
}

struct CtcShape {
  int64_t n = 0, steps = 0, classes = 0;
};

CtcShape ctc_shape(const ir::Node& node, const Tensor& scores, const Tensor& targets) {
  if (scores.rank() != 3) fail(node.label(), ": scores must be [N, T, C], got ", scores.describe());
  if (!(targets.rank() == 2 || (targets.rank() == 1 && targets.dim(0) == scores.dim(0))) || targets.dim(0) != scores.dim(0) ||
      !dtype_is_integer(targets.dtype()))
    fail(node.label(), ": targets must be integer [N, S] beside scores ", scores.describe(), ", got ", targets.describe());
  const CtcShape s{scores.dim(0), scores.dim(1), scores.dim(2)};
  if (s.steps < 1 || s.classes < 2) fail(node.label(), ": scores need at least one step and two classes, got ", scores.describe());
  return s;
}

template <typename T>
void ctc_loss_typed(KernelContext& ctx, const CtcShape& sh, Reduction reduction, bool zero_infinity, int64_t blank) {
  const T* x = ctx.input(0).template data<T>();
  const Tensor& targets = ctx.input(1);
  std::vector<double> nll(static_cast<size_t>(sh.n)), weight(static_cast<size_t>(sh.n));
  ctx.parallel_for(sh.n, [&](int64_t begin, int64_t end) {
    std::vector<double> lp, alpha;
    for (int64_t n = begin; n < end; ++n) {
      const CtcSample s = ctc_sample(ctx.node, targets, n, sh.classes, blank);
      log_softmax_rows(x + n * sh.steps * sh.classes, sh.steps, sh.classes, lp);
      double v = -ctc_forward_backward(s, lp, sh.steps, sh.classes, alpha, nullptr);
      if (zero_infinity && !std::isfinite(v)) v = 0;
      nll[n] = v;
      weight[n] = 1.0 / static_cast<double>(std::max<int64_t>(1, s.length));
    }
  });
  if (reduction == Reduction::None) {
    T* y = ctx.allocate_output(0, dtype_of<T>::value, {sh.n}).template data<T>();
    for (int64_t n = 0; n < sh.n; ++n) y[n] = from_double<T>(nll[n]);
    return;
  }
  double total = 0;
  for (int64_t n = 0; n < sh.n; ++n) total += reduction == Reduction::Mean ? nll[n] * weight[n] : nll[n];
  if (reduction == Reduction::Mean) total /= static_cast<double>(std::max<int64_t>(1, sh.n));
  ctx.allocate_output(0, dtype_of<T>::value, {}).template data<T>()[0] = from_double<T>(total);
}

template <typename T>
void ctc_loss_grad_typed(KernelContext& ctx, const CtcShape& sh, Reduction reduction, bool zero_infinity, int64_t blank) {
  const Tensor& dloss = ctx.input(0);
  const T* x = ctx.input(1).template data<T>();
  const Tensor& targets = ctx.input(2);
  const Dims expected = reduction == Reduction::None ? Dims{sh.n} : Dims{};
  if (dloss.dims() != expected || dloss.dtype() != dtype_of<T>::value)
    fail(ctx.node.label(), ": dLoss ", dloss.describe(), " does not match the loss shape");
  T* dx = ctx.allocate_output(0, dtype_of<T>::value, ctx.input(1).dims()).template data<T>();
  ctx.parallel_for(sh.n, [&](int64_t begin, int64_t end) {
    std::vector<double> lp, alpha, beta, post(static_cast<size_t>(sh.classes));
    for (int64_t n = begin; n < end; ++n) {
      const CtcSample s = ctc_sample(ctx.node, targets, n, sh.classes, blank);
      const T* xs = x + n * sh.steps * sh.classes;
      T* ds = dx + n * sh.steps * sh.classes;
      log_softmax_rows(xs, sh.steps, sh.classes, lp);
      const double logp = ctc_forward_backward(s, lp, sh.steps, sh.classes, alpha, &beta);
      double g = as_double(dloss.template data<T>()[reduction == Reduction::None ? n : 0]);
      if (reduction == Reduction::Mean)
        g /= static_cast<double>(std::max<int64_t>(1, sh.n)) * static_cast<double>(std::max<int64_t>(1, s.length));
      if (!std::isfinite(logp)) {  // impossible alignment: no gradient with zero_infinity, else NaN as PyTorch gives
        const double v = zero_infinity ? 0.0 : std::numeric_limits<double>::quiet_NaN();
        for (int64_t k = 0; k < sh.steps * sh.classes; ++k) ds[k] = from_double<T>(v);
        continue;
      }
      const int64_t L = static_cast<int64_t>(s.extended.size());
      for (int64_t t = 0; t < sh.steps; ++t) {
        std::fill(post.begin(), post.end(), kNegInf);
        for (int64_t i = 0; i < L; ++i) {
          const double a = alpha[t * L + i], b = beta[t * L + i];
          if (a != kNegInf && b != kNegInf) post[s.extended[i]] = log_add(post[s.extended[i]], a + b);
        }
        // d nll / d score = softmax - posterior of the class at t.
        for (int64_t c = 0; c < sh.classes; ++c) {
          const double gamma = post[c] == kNegInf ? 0.0 : std::exp(post[c] - logp);
          ds[t * sh.classes + c] = from_double<T>(g * (std::exp(lp[t * sh.classes + c]) - gamma));
        }
      }
    }
  });
}

void ctc_loss_kernel(KernelContext& ctx) {
  const CtcShape sh = ctc_shape(ctx.node, ctx.input(0), ctx.input(1));
  const Reduction red = reduction_of(ctx.node);
  const bool zi = ctx.node.attr_int("zero_infinity", 0) != 0;
  const int64_t blank = ctx.node.attr_int("blank", 0);
  if (blank < 0 || blank >= sh.classes) fail(ctx.node.label(), ": blank ", blank, " outside [0, ", sh.classes, ")");
  dispatch_float(ctx.input(0).dtype(), [&](auto tag) { ctc_loss_typed<typename decltype(tag)::type>(ctx, sh, red, zi, blank); });
}

void ctc_loss_grad_kernel(KernelContext& ctx) {
  const CtcShape sh = ctc_shape(ctx.node, ctx.input(1), ctx.input(2));
  const int64_t blank = ctx.node.attr_int("blank", 0);
  if (blank < 0 || blank >= sh.classes) fail(ctx.node.label(), ": blank ", blank, " outside [0, ", sh.classes, ")");
  dispatch_float(ctx.input(1).dtype(), [&](auto tag) {
    ctc_loss_grad_typed<typename decltype(tag)::type>(ctx, sh, reduction_of(ctx.node), ctx.node.attr_int("zero_infinity", 0) != 0, blank);
  });
}

std::vector<ir::ValueType> ctc_loss_infer(InferContext& ctx) {
  const ir::ValueType& scores = ctx.inputs.at(0);
  if (reduction_of(ctx.node) != Reduction::None) return {tensor_type(scores.dtype, Shape(std::vector<Dim>{}))};
  const Dim n = scores.shape.rank_known && scores.shape.rank() > 0 ? scores.shape.dims[0] : Dim::named("N");
  return {tensor_type(scores.dtype, Shape(std::vector<Dim>{n}))};
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
  // CTC: per step and extended label, a few log-adds forward and backward; priced per score like the others.
  r.add({.domain = "com.duet", .name = "CtcLoss", .kernel = ctc_loss_kernel, .infer = ctc_loss_infer,
         .cost = [](const CostContext& c) { return loss_cost(c, 8); }});
  r.add({.domain = "com.duet", .name = "CtcLossGrad", .kernel = ctc_loss_grad_kernel, .infer = infer_same_as(1),
         .cost = [](const CostContext& c) { return loss_cost(c, 16); }});
}

}  // namespace duet::ops
