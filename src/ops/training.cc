// Optimizer update ops of ai.onnx.preview.training: Adagrad, Adam, Momentum.
// Each node updates several tensors at once: inputs are R (learning rate), T
// (step count), then one group per state kind (X..., G..., V..., H...), and
// outputs are the updated groups in order. Arithmetic runs in double.
#include <array>
#include <cmath>
#include <string>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

constexpr const char* kTrainingDomain = "ai.onnx.preview.training";

// The shared layout: R, T, then `groups` groups of n tensors each.
struct OptimizerInputs {
  double rate = 0;
  int64_t step = 0;
  int64_t n = 0;  // tensors optimized by this node
};

OptimizerInputs read_optimizer_inputs(const KernelContext& ctx, int64_t groups, int64_t out_groups) {
  const auto label = ctx.node.label();
  const int64_t count = static_cast<int64_t>(ctx.num_inputs()) - 2;
  if (count < groups || count % groups != 0)
    fail(label, ": expected R, T and ", groups, " groups of equally many tensors, got ", ctx.num_inputs(), " inputs");
  OptimizerInputs in;
  in.n = count / groups;
  if (static_cast<int64_t>(ctx.num_outputs()) > out_groups * in.n)
    fail(label, ": expected at most ", out_groups * in.n, " outputs, got ", ctx.num_outputs());
  const Tensor& r = ctx.input(0);
  const Tensor& t = ctx.input(1);
  if (r.numel() != 1 || !dtype_is_float(r.dtype())) fail(label, ": R must be a float scalar, got ", r.describe());
  if (t.numel() != 1 || !dtype_is_integer(t.dtype())) fail(label, ": T must be an integer scalar, got ", t.describe());
  in.rate = r.get_double(0);
  in.step = t.get_int(0);
  // Every group member must match its X in type and shape.
  for (int64_t i = 0; i < in.n; ++i) {
    const Tensor& x = ctx.input(2 + i);
    if (x.dtype() != DType::Float32 && x.dtype() != DType::Float64)
      unsupported(label, ": optimized tensors must be float or double, got ", x.describe());
    for (int64_t g = 1; g < groups; ++g) {
      const Tensor& other = ctx.input(2 + g * in.n + i);
      if (other.dtype() != x.dtype() || other.dims() != x.dims())
        fail(label, ": input ", 2 + g * in.n + i, " (", other.describe(), ") must match X ", i, " (", x.describe(), ")");
    }
  }
  return in;
}

// Runs update(index, state) over every element of tensor i, where state holds
// the values of each group (X, G, ...) in double; the update rewrites the
// entries of state that become outputs (the first out_groups besides G).
// out_slot[k] names the state entry written to output group k.
template <size_t Groups, size_t OutGroups, typename Update>
void run_update(KernelContext& ctx, const OptimizerInputs& in, const std::array<int, OutGroups>& out_slot,
                Update&& update) {
  for (int64_t i = 0; i < in.n; ++i) {
    const Tensor& x = ctx.input(2 + i);
    std::array<Tensor*, OutGroups> outs{};
    for (size_t k = 0; k < OutGroups; ++k) {
      const size_t o = k * in.n + i;
      if (o < ctx.num_outputs() && ctx.output_requested(o)) outs[k] = &ctx.allocate_output(o, x.dtype(), x.dims());
    }
    dispatch_float(x.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      std::array<const T*, Groups> src{};
      for (size_t g = 0; g < Groups; ++g) src[g] = ctx.input(2 + g * in.n + i).template data<T>();
      ctx.parallel_for(x.numel(), [&](int64_t begin, int64_t end) {
        std::array<double, Groups> state{};
        for (int64_t e = begin; e < end; ++e) {
          for (size_t g = 0; g < Groups; ++g) state[g] = static_cast<double>(src[g][e]);
          update(state);
          for (size_t k = 0; k < OutGroups; ++k)
            if (outs[k]) outs[k]->template data<T>()[e] = static_cast<T>(state[out_slot[k]]);
        }
      });
    });
  }
}

// ---------------------------------------------------------------------------
// Adagrad: inputs R, T, X..., G..., H...; outputs X_new..., H_new...

void adagrad_kernel(KernelContext& ctx) {
  const OptimizerInputs in = read_optimizer_inputs(ctx, 3, 2);
  const double decay = ctx.node.attr_float("decay_factor", 0.0f);
  const double epsilon = ctx.node.attr_float("epsilon", 0.0f);
  const double norm = ctx.node.attr_float("norm_coefficient", 0.0f);
  // The learning rate decays with the step count.
  const double rate = in.rate / (1.0 + static_cast<double>(in.step) * decay);
  enum { X, G, H };
  run_update<3, 2>(ctx, in, {X, H}, [&](std::array<double, 3>& s) {
    const double g = norm * s[X] + s[G];  // gradient plus L2 regularization
    s[H] += g * g;
    s[X] -= rate * g / (std::sqrt(s[H]) + epsilon);
  });
}

// ---------------------------------------------------------------------------
// Adam: inputs R, T, X..., G..., V..., H...; outputs X_new..., V_new..., H_new...

void adam_kernel(KernelContext& ctx) {
  const OptimizerInputs in = read_optimizer_inputs(ctx, 4, 3);
  const double alpha = ctx.node.attr_float("alpha", 0.9f);
  const double beta = ctx.node.attr_float("beta", 0.999f);
  const double epsilon = ctx.node.attr_float("epsilon", 0.0f);
  const double norm = ctx.node.attr_float("norm_coefficient", 0.0f);
  const double norm_post = ctx.node.attr_float("norm_coefficient_post", 0.0f);
  // Bias correction of both moments, from the second step on.
  double rate = in.rate;
  if (in.step > 0) {
    const double t = static_cast<double>(in.step);
    rate = in.rate * std::sqrt(1.0 - std::pow(beta, t)) / (1.0 - std::pow(alpha, t));
  }
  enum { X, G, V, H };
  run_update<4, 3>(ctx, in, {X, V, H}, [&](std::array<double, 4>& s) {
    const double g = norm * s[X] + s[G];
    s[V] = alpha * s[V] + (1.0 - alpha) * g;
    s[H] = beta * s[H] + (1.0 - beta) * g * g;
    const double x = s[X] - rate * s[V] / (std::sqrt(s[H]) + epsilon);
    s[X] = (1.0 - norm_post) * x;
  });
}

// ---------------------------------------------------------------------------
// Momentum: inputs R, T, X..., G..., V...; outputs X_new..., V_new...

void momentum_kernel(KernelContext& ctx) {
  const OptimizerInputs in = read_optimizer_inputs(ctx, 3, 2);
  const auto label = ctx.node.label();
  for (const char* a : {"alpha", "beta", "norm_coefficient", "mode"})
    if (!ctx.node.has_attr(a)) fail(label, ": missing required attribute '", a, "'");
  const double alpha = ctx.node.attr_float("alpha", 0.0f);
  const double beta_attr = ctx.node.attr_float("beta", 0.0f);
  const double norm = ctx.node.attr_float("norm_coefficient", 0.0f);
  const std::string mode = ctx.node.attr_string("mode", "standard");
  if (mode != "standard" && mode != "nesterov")
    fail(label, ": mode must be 'standard' or 'nesterov', got '", mode, "'");
  const bool nesterov = mode == "nesterov";
  // The first step takes the whole gradient.
  const double beta = in.step > 0 ? beta_attr : 1.0;
  const double rate = in.rate;
  enum { X, G, V };
  run_update<3, 2>(ctx, in, {X, V}, [&](std::array<double, 3>& s) {
    const double g = norm * s[X] + s[G];
    s[V] = alpha * s[V] + beta * g;
    s[X] -= nesterov ? rate * (g + alpha * s[V]) : rate * s[V];
  });
}

// ---------------------------------------------------------------------------
// Inference: output group k, member i has the type of X_i.

InferFn infer_optimizer(int64_t groups) {
  return [groups](InferContext& ctx) {
    const int64_t n = (static_cast<int64_t>(ctx.inputs.size()) - 2) / groups;
    std::vector<ir::ValueType> out;
    for (size_t o = 0; o < ctx.num_outputs; ++o) {
      if (n <= 0) {
        out.push_back(tensor_type(DType::Undefined, Shape::unknown_rank()));
        continue;
      }
      out.push_back(ctx.inputs[2 + o % n]);
    }
    return out;
  };
}

}  // namespace

void register_training(Registry& r) {
  r.add({.domain = kTrainingDomain, .name = "Adagrad", .kernel = adagrad_kernel, .infer = infer_optimizer(3),
         .cost = cost_per_output_element(5)});
  r.add({.domain = kTrainingDomain, .name = "Adam", .kernel = adam_kernel, .infer = infer_optimizer(4),
         .cost = cost_per_output_element(6)});
  r.add({.domain = kTrainingDomain, .name = "Momentum", .kernel = momentum_kernel, .infer = infer_optimizer(3),
         .cost = cost_per_output_element(4)});
}

}  // namespace duet::ops
