// Activations: pointwise nonlinearities (Relu..Gelu, SwiGLU) and the
// normalized exponentials Softmax, LogSoftmax and Hardmax. Reduced-precision
// floats compute in float; float64 computes in double.
#include <cmath>
#include <limits>

#include "duet/ops/kernel_util.h"
#include "elementwise_util.h"
#include "families.h"

namespace duet::ops {

namespace {

using ew::binary_loop;
using ew::compute_t;
using ew::unary_loop;

// Float types plus the signed and unsigned integers (Relu, PRelu, Shrink, ...).
template <typename Fn>
void dispatch_numeric_types(const KernelContext& ctx, DType t, Fn&& fn) {
  switch (t) {
    case DType::Int8: return fn(TypeTag<int8_t>{});
    case DType::UInt8: return fn(TypeTag<uint8_t>{});
    case DType::Int16: return fn(TypeTag<int16_t>{});
    case DType::UInt16: return fn(TypeTag<uint16_t>{});
    case DType::Int32: return fn(TypeTag<int32_t>{});
    case DType::UInt32: return fn(TypeTag<uint32_t>{});
    case DType::Int64: return fn(TypeTag<int64_t>{});
    case DType::UInt64: return fn(TypeTag<uint64_t>{});
    default: return dispatch_float(t, fn);
  }
}

// y = op(x) on float types; op receives and returns compute_t<T>.
template <typename Op>
void float_activation(KernelContext& ctx, Op op) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    unary_loop<T, T>(ctx, x, y, [&](T v) { return static_cast<T>(op(static_cast<C>(v))); });
  });
}

// Same on every numeric type.
template <typename Op>
void numeric_activation(KernelContext& ctx, Op op) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_numeric_types(ctx, x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    unary_loop<T, T>(ctx, x, y, [&](T v) { return static_cast<T>(op(static_cast<C>(v))); });
  });
}

// Numerically stable logistic function.
template <typename C> C sigmoid(C x) {
  if (x >= 0) return C(1) / (C(1) + std::exp(-x));
  const C e = std::exp(x);
  return e / (C(1) + e);
}

// log(1 + exp(x)) without overflow.
template <typename C> C softplus(C x) {
  if (x > 0) return x + std::log1p(std::exp(-x));
  return std::log1p(std::exp(x));
}

float attr(const KernelContext& ctx, const char* name, float def) { return ctx.node.attr_float(name, def); }

// --- pointwise ---------------------------------------------------------------------

void relu_kernel(KernelContext& ctx) {
  numeric_activation(ctx, [](auto v) { return v < 0 ? decltype(v)(0) : v; });
}

void leaky_relu_kernel(KernelContext& ctx) {
  const float alpha = attr(ctx, "alpha", 0.01f);
  float_activation(ctx, [alpha](auto v) { return v < 0 ? static_cast<decltype(v)>(alpha) * v : v; });
}

void elu_kernel(KernelContext& ctx) {
  const float alpha = attr(ctx, "alpha", 1.0f);
  float_activation(ctx, [alpha](auto v) {
    using C = decltype(v);
    return v < 0 ? static_cast<C>(alpha) * (std::exp(v) - C(1)) : v;
  });
}

void selu_kernel(KernelContext& ctx) {
  const float alpha = attr(ctx, "alpha", 1.67326319217681884765625f);
  const float gamma = attr(ctx, "gamma", 1.05070102214813232421875f);
  float_activation(ctx, [alpha, gamma](auto v) {
    using C = decltype(v);
    const C g = static_cast<C>(gamma), a = static_cast<C>(alpha);
    return v > 0 ? g * v : g * (a * std::exp(v) - a);
  });
}

void celu_kernel(KernelContext& ctx) {
  const float alpha = attr(ctx, "alpha", 1.0f);
  float_activation(ctx, [alpha](auto v) {
    using C = decltype(v);
    const C a = static_cast<C>(alpha);
    return std::max(C(0), v) + std::min(C(0), a * (std::exp(v / a) - C(1)));
  });
}

void hard_sigmoid_kernel(KernelContext& ctx) {
  const float alpha = attr(ctx, "alpha", 0.2f);
  const float beta = attr(ctx, "beta", 0.5f);
  float_activation(ctx, [alpha, beta](auto v) {
    using C = decltype(v);
    const C t = static_cast<C>(alpha) * v + static_cast<C>(beta);
    return t < C(0) ? C(0) : (t > C(1) ? C(1) : t);
  });
}

void hard_swish_kernel(KernelContext& ctx) {
  float_activation(ctx, [](auto v) {
    using C = decltype(v);
    const C t = v / C(6) + C(0.5);
    return v * (t < C(0) ? C(0) : (t > C(1) ? C(1) : t));
  });
}

void gelu_kernel(KernelContext& ctx) {
  const std::string approx = ctx.node.attr_string("approximate", "none");
  if (approx == "none") {
    float_activation(ctx, [](auto v) {
      using C = decltype(v);
      return C(0.5) * v * (C(1) + std::erf(v * C(M_SQRT1_2)));
    });
  } else if (approx == "tanh") {
    float_activation(ctx, [](auto v) {
      using C = decltype(v);
      const C k = static_cast<C>(std::sqrt(2.0 / M_PI));
      return C(0.5) * v * (C(1) + std::tanh(k * (v + C(0.044715) * v * v * v)));
    });
  } else {
    fail(ctx.node.label(), ": approximate must be 'none' or 'tanh', got '", approx, "'");
  }
}

void swish_kernel(KernelContext& ctx) {
  const float alpha = attr(ctx, "alpha", 1.0f);
  float_activation(ctx, [alpha](auto v) { return v * sigmoid(static_cast<decltype(v)>(alpha) * v); });
}

void thresholded_relu_kernel(KernelContext& ctx) {
  const float alpha = attr(ctx, "alpha", 1.0f);
  float_activation(ctx, [alpha](auto v) { return v > static_cast<decltype(v)>(alpha) ? v : decltype(v)(0); });
}

void shrink_kernel(KernelContext& ctx) {
  const double bias = attr(ctx, "bias", 0.0f);
  const double lambd = attr(ctx, "lambd", 0.5f);
  numeric_activation(ctx, [bias, lambd](auto v) {
    using C = decltype(v);
    const double d = static_cast<double>(v);
    if (d < -lambd) return static_cast<C>(d + bias);
    if (d > lambd) return static_cast<C>(d - bias);
    return C(0);
  });
}

// PRelu: slope broadcasts unidirectionally to X.
void prelu_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor slope = ctx.input(1);
  // Before opset 7 a 1-D slope of length C applied per channel (axis 1), as
  // the models exported then (PyTorch PReLU with num_parameters=C) rely on.
  if (ctx.opset < 7 && slope.rank() == 1 && x.rank() >= 2 && slope.numel() == x.dims()[1] && slope.numel() != 1) {
    Dims per_channel(x.rank() - 1, 1);
    per_channel[0] = slope.numel();
    slope = slope.reshaped(per_channel);
  }
  DUET_CHECK(x.dtype() == slope.dtype(), ctx.node.label(), ": slope type ", dtype_name(slope.dtype()),
             " differs from input type ", dtype_name(x.dtype()));
  const Dims dims = broadcast_dims({x.dims(), slope.dims()}, ctx.node);
  DUET_CHECK(dims == x.dims(), ctx.node.label(), ": slope shape ", dims_str(slope.dims()),
             " does not broadcast to input shape ", dims_str(x.dims()));
  Tensor& y = ctx.allocate_output(0, x.dtype(), dims);
  dispatch_numeric_types(ctx, x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    binary_loop<T, T, T>(ctx, x, slope, y, [](T v, T s) {
      const C c = static_cast<C>(v);
      return c < 0 ? static_cast<T>(c * static_cast<C>(s)) : v;
    });
  });
}

// SwiGLU(A, B) = A * sigmoid(alpha * A) * B, same shapes, no broadcasting.
void swiglu_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  DUET_CHECK(a.dtype() == b.dtype(), ctx.node.label(), ": input types differ (", dtype_name(a.dtype()), " vs ",
             dtype_name(b.dtype()), ")");
  DUET_CHECK(a.dims() == b.dims(), ctx.node.label(), ": inputs must have the same shape (", dims_str(a.dims()), " vs ",
             dims_str(b.dims()), ")");
  const float alpha = attr(ctx, "alpha", 1.0f);
  Tensor& y = ctx.allocate_output(0, a.dtype(), a.dims());
  dispatch_float(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    binary_loop<T, T, T>(ctx, a, b, y, [alpha](T va, T vb) {
      const C x = static_cast<C>(va);
      // The gate rounds to T before multiplying, as the reference does.
      const C gate = static_cast<C>(static_cast<T>(sigmoid(static_cast<C>(alpha) * x)));
      return static_cast<T>(static_cast<C>(static_cast<T>(x * gate)) * static_cast<C>(vb));
    });
  });
}

// --- Softmax family -------------------------------------------------------------------

enum class SoftmaxKind { Softmax, LogSoftmax, Hardmax };

// Views the input as [outer, n, inner] and normalizes along n. Before opset
// 13 the input is coerced to 2D at axis (default 1) and each row normalized
// over everything after it; from 13 on, along one axis (default -1).
void softmax_family(KernelContext& ctx, SoftmaxKind kind) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  const bool coerce_2d = ctx.opset < 13;
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", coerce_2d ? 1 : -1), rank, ctx.node);
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t v = x.dims()[d];
    if (d < axis) outer *= v;
    else if (d == axis || coerce_2d) n *= v;
    else inner *= v;
  }
  if (rank == 0) n = 1;
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    auto lines = [&](int64_t begin, int64_t end) {
      for (int64_t line = begin; line < end; ++line) {
        const int64_t o = line / inner, i = line % inner;
        const T* in = px + o * n * inner + i;
        T* out = py + o * n * inner + i;
        auto at = [&](int64_t k) { return static_cast<C>(in[k * inner]); };
        C mx = -std::numeric_limits<C>::infinity();
        int64_t arg = 0;
        for (int64_t k = 0; k < n; ++k) {
          if (at(k) > mx) { mx = at(k); arg = k; }
        }
        if (kind == SoftmaxKind::Hardmax) {
          for (int64_t k = 0; k < n; ++k) out[k * inner] = static_cast<T>(C(k == arg ? 1 : 0));
          continue;
        }
        double sum = 0;
        for (int64_t k = 0; k < n; ++k) sum += std::exp(static_cast<double>(at(k) - mx));
        if (kind == SoftmaxKind::Softmax) {
          for (int64_t k = 0; k < n; ++k) out[k * inner] = static_cast<T>(static_cast<C>(std::exp(static_cast<double>(at(k) - mx)) / sum));
        } else {
          const double log_sum = std::log(sum);
          for (int64_t k = 0; k < n; ++k) out[k * inner] = static_cast<T>(static_cast<C>(static_cast<double>(at(k) - mx) - log_sum));
        }
      }
    };
    const int64_t total = outer * inner;
    if (total * n < ew::kParallelThreshold) lines(0, total); else ctx.parallel_for(total, lines);
  });
}


// ReluGrad (com.duet, written by train::add_gradients): dX = dY where the
// forward output Y is positive, else 0.
void relu_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.input(0);
  const Tensor& y = ctx.input(1);
  if (dy.dims() != y.dims() || dy.dtype() != y.dtype())
    fail(ctx.node.label(), ": gradient ", dy.describe(), " does not match the output ", y.describe());
  Tensor& dx = ctx.allocate_output(0, y.dtype(), y.dims());
  dispatch_float(y.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = dy.data<T>();
    const T* v = y.data<T>();
    T* out = dx.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i) out[i] = static_cast<float>(v[i]) > 0.0f ? g[i] : T(0.0f);
  });
}

}  // namespace

void register_activation(Registry& r) {
  const InferFn same = infer_same_as(0);
  auto add = [&](const char* name, KernelFn k, double flops_per_element) {
    r.add({.name = name, .kernel = std::move(k), .infer = same, .cost = cost_per_output_element(flops_per_element)});
  };
  add("Relu", relu_kernel, 1);
  r.add({.domain = "com.duet", .name = "ReluGrad", .kernel = relu_grad_kernel, .infer = infer_same_as(1),
         .cost = cost_per_output_element(1)});
  add("LeakyRelu", leaky_relu_kernel, 2);
  add("PRelu", prelu_kernel, 2);
  add("Elu", elu_kernel, 12);
  add("Selu", selu_kernel, 12);
  add("Celu", celu_kernel, 14);
  add("Softplus", [](KernelContext& c) { float_activation(c, [](auto v) { return softplus(v); }); }, 20);
  add("Softsign", [](KernelContext& c) { float_activation(c, [](auto v) { return v / (decltype(v)(1) + std::fabs(v)); }); }, 3);
  add("HardSigmoid", hard_sigmoid_kernel, 4);
  add("HardSwish", hard_swish_kernel, 5);
  add("Mish", [](KernelContext& c) { float_activation(c, [](auto v) { return v * std::tanh(softplus(v)); }); }, 30);
  add("Gelu", gelu_kernel, 20);
  add("Swish", swish_kernel, 12);
  add("Sigmoid", [](KernelContext& c) { float_activation(c, [](auto v) { return sigmoid(v); }); }, 10);
  add("Tanh", [](KernelContext& c) { float_activation(c, [](auto v) { return std::tanh(v); }); }, 10);
  add("ThresholdedRelu", thresholded_relu_kernel, 1);
  add("Shrink", shrink_kernel, 2);
  add("SwiGLU", swiglu_kernel, 14);
  add("Softmax", [](KernelContext& c) { softmax_family(c, SoftmaxKind::Softmax); }, 12);
  add("LogSoftmax", [](KernelContext& c) { softmax_family(c, SoftmaxKind::LogSoftmax); }, 12);
  add("Hardmax", [](KernelContext& c) { softmax_family(c, SoftmaxKind::Hardmax); }, 2);
}

}  // namespace duet::ops
