// Reduce* ops: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
// ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceSumSquare.
//
// Every output element is reduced by one thread in a fixed order (input
// row-major order over the reduced axes), so results do not depend on the
// thread count. Float types accumulate in double, integers in 64 bits (and
// wrap to the output type like numpy's dtype-preserving sum).
#include <cmath>
#include <limits>
#include <type_traits>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

enum class ReduceKind { Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare };

struct ReduceSpec {
  const char* name;
  ReduceKind kind;
  int64_t axes_input_opset;  // first opset where axes is an input instead of an attribute
  double flops_per_input;    // for the cost model
};

// --- axes and output shape --------------------------------------------------

struct AxesChoice {
  bool known = true;            // false when the axes input is not a known constant
  bool noop = false;            // empty axes with noop_with_empty_axes: reduce nothing
  std::vector<bool> reduced;    // per input axis
};

// Reads axes from the attribute (old opsets) or the optional second input.
// `axes_values` is the constant value of the axes input when there is one.
AxesChoice choose_axes(const ir::Node& node, const ReduceSpec& spec, int64_t opset, int64_t rank,
                       bool has_axes_input, const Tensor* axes_value) {
  AxesChoice choice;
  std::vector<int64_t> axes;
  if (opset < spec.axes_input_opset) {
    axes = node.attr_ints("axes");
  } else if (has_axes_input) {
    if (!axes_value) {
      choice.known = false;
      return choice;
    }
    if (axes_value->rank() > 1) fail(node.label(), ": axes must be a 1-D tensor, got ", axes_value->describe());
    axes = axes_value->to_int_vector();
  }
  const bool noop_with_empty_axes =
      opset >= spec.axes_input_opset && node.attr_int("noop_with_empty_axes", 0) != 0;
  choice.reduced.assign(rank, axes.empty() && !noop_with_empty_axes);
  choice.noop = axes.empty() && noop_with_empty_axes;
  for (int64_t a : axes) {
    const int64_t axis = normalize_axis(a, rank, node);
    if (choice.reduced[axis]) fail(node.label(), ": axis ", a, " is listed twice in axes");
    choice.reduced[axis] = true;
  }
  return choice;
}

bool keep_dims(const ir::Node& node) { return node.attr_int("keepdims", 1) != 0; }

// --- the reduction itself ---------------------------------------------------

// Where the reduced elements of one output element lie: either a contiguous
// run (the reduced axes are the innermost ones) or a list of offsets.
struct ReducePlan {
  int64_t outputs = 0;                 // number of output elements
  int64_t count = 0;                   // elements reduced into each output
  bool contiguous = false;             // reduced elements are base .. base+count-1
  std::vector<int64_t> kept_dims;      // kept axes (after merging), outer to inner
  std::vector<int64_t> kept_strides;   // their input strides
  std::vector<int64_t> reduced_offsets;  // offsets relative to base when !contiguous
};

ReducePlan make_plan(const Dims& in, const std::vector<bool>& reduced) {
  // Merge neighbouring axes of the same kind so the common cases (reduce the
  // last axes, reduce the first axes) become one kept and one reduced run.
  std::vector<int64_t> dims, strides;
  std::vector<bool> kinds;
  const std::vector<int64_t> in_strides = strides_of(in);
  for (size_t d = 0; d < in.size(); ++d) {
    if (in[d] == 1) continue;  // size-1 axes change nothing
    if (!dims.empty() && kinds.back() == reduced[d] && strides.back() == in[d] * in_strides[d]) {
      dims.back() *= in[d];
      strides.back() = in_strides[d];
    } else {
      dims.push_back(in[d]);
      strides.push_back(in_strides[d]);
      kinds.push_back(reduced[d]);
    }
  }
  ReducePlan plan;
  plan.outputs = 1;
  plan.count = 1;
  std::vector<int64_t> red_dims, red_strides;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (kinds[d]) {
      plan.count *= dims[d];
      red_dims.push_back(dims[d]);
      red_strides.push_back(strides[d]);
    } else {
      plan.outputs *= dims[d];
      plan.kept_dims.push_back(dims[d]);
      plan.kept_strides.push_back(strides[d]);
    }
  }
  // Zero-size inputs: an empty kept axis means no outputs, an empty reduced
  // axis means every output reduces the empty set.
  for (size_t d = 0; d < in.size(); ++d) {
    if (in[d] == 0) {
      if (reduced[d]) plan.count = 0; else plan.outputs = 0;
    }
  }
  plan.contiguous = red_dims.size() <= 1 && (red_dims.empty() || red_strides[0] == 1);
  if (!plan.contiguous && plan.count > 0 && plan.outputs > 0) {
    plan.reduced_offsets.reserve(plan.count);
    std::vector<int64_t> idx(red_dims.size(), 0);
    int64_t off = 0;
    for (int64_t i = 0; i < plan.count; ++i) {
      plan.reduced_offsets.push_back(off);
      for (int64_t d = static_cast<int64_t>(red_dims.size()) - 1; d >= 0; --d) {
        off += red_strides[d];
        if (++idx[d] < red_dims[d]) break;
        off -= red_strides[d] * red_dims[d];
        idx[d] = 0;
      }
    }
  }
  return plan;
}

// Input offset of the first element reduced into output `o`.
int64_t base_offset(const ReducePlan& plan, int64_t o) {
  int64_t off = 0;
  for (int64_t d = static_cast<int64_t>(plan.kept_dims.size()) - 1; d >= 0; --d) {
    off += (o % plan.kept_dims[d]) * plan.kept_strides[d];
    o /= plan.kept_dims[d];
  }
  return off;
}

// Calls fn(x) on every element reduced into the output whose first element is
// at `base`, in a fixed order.
template <typename T, typename Fn>
inline void visit(const ReducePlan& plan, const T* x, int64_t base, Fn&& fn) {
  if (plan.contiguous) {
    const T* p = x + base;
    for (int64_t j = 0; j < plan.count; ++j) fn(p[j]);
  } else {
    for (int64_t off : plan.reduced_offsets) fn(x[base + off]);
  }
}

// Sum of a contiguous float run with four independent partial sums (a fixed
// order, so deterministic) in double: this is ReduceMean's layer-norm hot path.
inline double sum_contiguous(const float* p, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    s0 += p[j];
    s1 += p[j + 1];
    s2 += p[j + 2];
    s3 += p[j + 3];
  }
  for (; j < n; ++j) s0 += p[j];
  return (s0 + s1) + (s2 + s3);
}

template <typename T>
constexpr bool is_floating_v = !std::is_integral_v<T>;  // float, double, float16, bfloat16, float8

// Max/Min with NaN propagation (numpy.maximum semantics).
template <typename A>
inline A pick(A acc, A v, bool want_max) {
  if constexpr (std::is_floating_point_v<A>) {
    if (std::isnan(acc)) return acc;
    if (std::isnan(v)) return v;
  }
  return want_max ? (v > acc ? v : acc) : (v < acc ? v : acc);
}

template <typename T>
void reduce_typed(KernelContext& ctx, const ReduceSpec& spec, const ReducePlan& plan, Tensor& out) {
  const T* x = ctx.input(0).data<T>();
  T* y = out.data<T>();
  // Float types (half, bfloat16, float8 included) accumulate in double; integer
  // types and bool in int64_t.
  using Acc = std::conditional_t<is_floating_v<T>, double, int64_t>;
  auto load = [](T v) -> Acc {
    if constexpr (std::is_same_v<T, double>) return v;
    else if constexpr (is_floating_v<T>) return static_cast<double>(static_cast<float>(v));
    else return static_cast<Acc>(v);
  };
  auto store = [](Acc v) -> T {
    if constexpr (std::is_same_v<T, bool>) return v != 0;
    else if constexpr (std::is_integral_v<T>) return static_cast<T>(static_cast<std::make_unsigned_t<T>>(
        static_cast<uint64_t>(v)));  // wrap like numpy
    else if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) return static_cast<T>(v);
    else return T(static_cast<float>(v));
  };
  const ReduceKind kind = spec.kind;
  const double count = static_cast<double>(plan.count);

  auto reduce_one = [&](int64_t base) -> T {
    switch (kind) {
      case ReduceKind::Sum:
      case ReduceKind::Mean: {
        Acc s = 0;
        if constexpr (std::is_same_v<T, float>) {
          if (plan.contiguous) s = sum_contiguous(x + base, plan.count);
          else visit(plan, x, base, [&](T v) { s += v; });
        } else {
          visit(plan, x, base, [&](T v) { s += load(v); });
        }
        if (kind == ReduceKind::Sum) return store(s);
        if constexpr (is_floating_v<T>) return store(s / count);  // empty set: 0/0 = NaN
        else return store(plan.count ? s / plan.count : 0);      // integer mean truncates
      }
      case ReduceKind::Max:
      case ReduceKind::Min: {
        const bool want_max = kind == ReduceKind::Max;
        Acc acc;
        if constexpr (is_floating_v<T>) acc = want_max ? -INFINITY : INFINITY;
        else if constexpr (std::is_same_v<T, bool>) acc = want_max ? 0 : 1;
        else acc = want_max ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
        visit(plan, x, base, [&](T v) { acc = pick<Acc>(acc, load(v), want_max); });
        return store(acc);
      }
      case ReduceKind::Prod: {
        Acc p = 1;
        if constexpr (is_floating_v<T>) {
          visit(plan, x, base, [&](T v) { p *= load(v); });
        } else {  // multiply in unsigned arithmetic: overflow wraps instead of being UB
          uint64_t u = 1;
          visit(plan, x, base, [&](T v) { u *= static_cast<uint64_t>(static_cast<int64_t>(v)); });
          p = static_cast<Acc>(u);
        }
        return store(p);
      }
      case ReduceKind::L1: {
        Acc s = 0;
        visit(plan, x, base, [&](T v) { Acc a = load(v); s += a < 0 ? -a : a; });
        return store(s);
      }
      case ReduceKind::SumSquare:
      case ReduceKind::L2: {
        Acc s = 0;
        visit(plan, x, base, [&](T v) { Acc a = load(v); s += a * a; });
        if (kind == ReduceKind::SumSquare) return store(s);
        if constexpr (is_floating_v<T>) return store(std::sqrt(s));
        else return store(static_cast<Acc>(std::sqrt(static_cast<double>(s))));
      }
      case ReduceKind::LogSum: {
        Acc s = 0;
        visit(plan, x, base, [&](T v) { s += load(v); });
        return store(static_cast<Acc>(std::log(static_cast<double>(s))));
      }
      case ReduceKind::LogSumExp: {
        // Shift by the largest finite value so exp cannot overflow.
        double shift = -INFINITY;
        visit(plan, x, base, [&](T v) {
          const double a = static_cast<double>(load(v));
          if (std::isfinite(a) && a > shift) shift = a;
        });
        if (!std::isfinite(shift)) shift = 0;
        double s = 0;
        visit(plan, x, base, [&](T v) { s += std::exp(static_cast<double>(load(v)) - shift); });
        return store(static_cast<Acc>(std::log(s) + shift));
      }
    }
    return store(0);
  };

  // Each output element is reduced by exactly one thread.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plan.count));
  const int64_t chunks = (plan.outputs + grain - 1) / grain;
  ctx.parallel_for(chunks, [&](int64_t begin, int64_t end) {
    const int64_t o_end = std::min(plan.outputs, end * grain);
    for (int64_t o = begin * grain; o < o_end; ++o) {
      const int64_t base = plan.kept_dims.size() == 1 ? o * plan.kept_strides[0] : base_offset(plan, o);
      y[o] = reduce_one(base);
    }
  });
}

Dims output_dims(const Dims& in, const AxesChoice& axes, bool keepdims) {
  Dims out;
  for (size_t d = 0; d < in.size(); ++d) {
    if (!axes.reduced[d]) out.push_back(in[d]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

void check_dtype(const ir::Node& node, const ReduceSpec& spec, DType t) {
  if (t == DType::Bool && spec.kind != ReduceKind::Max && spec.kind != ReduceKind::Min)
    unsupported(node.label(), ": bool input is only defined for ReduceMax/ReduceMin");
  if (dtype_is_subbyte(t) || t == DType::String || t == DType::Complex64 || t == DType::Complex128)
    unsupported(node.label(), ": data type ", dtype_name(t), " is not supported");
}

void reduce_kernel(KernelContext& ctx, const ReduceSpec& spec) {
  const Tensor& x = ctx.input(0);
  check_dtype(ctx.node, spec, x.dtype());
  const int64_t rank = static_cast<int64_t>(x.rank());
  const bool axes_input = ctx.opset >= spec.axes_input_opset && ctx.has_input(1);
  AxesChoice axes = choose_axes(ctx.node, spec, ctx.opset, rank, axes_input,
                                axes_input ? &ctx.input(1) : nullptr);
  Tensor& out = ctx.allocate_output(0, x.dtype(), output_dims(x.dims(), axes, keep_dims(ctx.node)));
  const ReducePlan plan = make_plan(x.dims(), axes.reduced);
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    reduce_typed<T>(ctx, spec, plan, out);
  });
}

std::vector<ir::ValueType> reduce_infer(InferContext& ctx, const ReduceSpec& spec) {
  const ir::ValueType& in = ctx.inputs.at(0);
  if (!in.shape.rank_known) return {tensor_type(in.dtype, Shape::unknown_rank())};
  const int64_t rank = static_cast<int64_t>(in.shape.rank());
  const bool keepdims = keep_dims(ctx.node);
  const bool axes_input = ctx.opset >= spec.axes_input_opset && ctx.has_input(1);
  AxesChoice axes = choose_axes(ctx.node, spec, ctx.opset, rank, axes_input, axes_input ? ctx.value(1) : nullptr);
  if (!axes.known) {
    // Axes decided at run time: with keepdims the rank is known, else only
    // when the axes input's length is.
    if (keepdims) {
      Shape s;
      for (int64_t d = 0; d < rank; ++d) s.dims.push_back(in.shape.dims[d].value == 1 ? Dim(1) : ctx.fresh_dim());
      return {tensor_type(in.dtype, s)};
    }
    const ir::ValueType& a = ctx.inputs[1];
    if (a.shape.rank_known && a.shape.rank() == 1 && a.shape.dims[0].known() && a.shape.dims[0].value > 0) {
      Shape s;
      for (int64_t d = 0; d < rank - a.shape.dims[0].value; ++d) s.dims.push_back(ctx.fresh_dim());
      return {tensor_type(in.dtype, s)};
    }
    return {tensor_type(in.dtype, Shape::unknown_rank())};
  }
  Shape s;
  for (int64_t d = 0; d < rank; ++d) {
    if (!axes.reduced[d]) s.dims.push_back(in.shape.dims[d]);
    else if (keepdims) s.dims.push_back(Dim(1));
  }
  return {tensor_type(in.dtype, s)};
}

Cost reduce_cost(const CostContext& ctx, const ReduceSpec& spec) {
  Cost c = default_cost(ctx);
  const ir::ValueType& in = ctx.inputs.at(0);
  if (in.shape.rank_known && in.shape.fully_known())
    c.flops = spec.flops_per_input * static_cast<double>(numel(in.shape.concrete()));
  return c;
}


// SumToShape (com.duet, written by train::add_gradients): sums X down to the
// int64 shape S that numpy broadcasting stretched to X's shape (the adjoint of
// that broadcast). Elements are summed in X's order, serially.
void sum_to_shape_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Dims target = ctx.input(1).to_int_vector();
  if (target.size() > x.rank())
    fail(ctx.node.label(), ": shape ", dims_str(target), " has more dimensions than the input ", x.describe());
  Dims aligned(x.rank() - target.size(), 1);
  aligned.insert(aligned.end(), target.begin(), target.end());
  for (size_t i = 0; i < aligned.size(); ++i)
    if (aligned[i] != 1 && aligned[i] != x.dims()[i])
      fail(ctx.node.label(), ": shape ", dims_str(target), " does not broadcast to the input ", x.describe());
  Tensor& y = ctx.allocate_output(0, x.dtype(), target);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    std::vector<A> acc(static_cast<size_t>(y.numel()), A(0));
    const T* src = x.data<T>();
    // Leading axes summed away and trailing ones kept (a bias's gradient): add whole rows.
    size_t lead = 0;
    while (lead < aligned.size() && aligned[lead] == 1) ++lead;
    bool suffix = true;
    for (size_t i = lead; i < aligned.size(); ++i) suffix = suffix && aligned[i] == x.dims()[i];
    if (suffix) {
      const int64_t cols = y.numel(), rows = cols > 0 ? x.numel() / cols : 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) acc[static_cast<size_t>(j)] += static_cast<A>(src[r * cols + j]);
    } else {
      std::array<std::vector<int64_t>, 1> strides{broadcast_strides(aligned, x.dims())};
      for_each_broadcast<1>(x.dims(), strides, [&](int64_t i, const std::array<int64_t, 1>& off) {
        acc[static_cast<size_t>(off[0])] += static_cast<A>(src[i]);
      });
    }
    T* out = y.data<T>();
    for (size_t i = 0; i < acc.size(); ++i) out[i] = static_cast<T>(acc[i]);
  });
}

std::vector<ir::ValueType> infer_sum_to_shape(InferContext& ctx) {
  Shape s = Shape::unknown_rank();
  if (const Tensor* t = ctx.value(1)) s = Shape::from(t->to_int_vector());
  else if (ctx.inputs.size() > 1 && ctx.inputs[1].shape.rank_known && ctx.inputs[1].shape.fully_known())
    s = Shape(std::vector<Dim>(static_cast<size_t>(ctx.inputs[1].shape.concrete()[0]), Dim{}));
  return {tensor_type(ctx.inputs.at(0).dtype, s)};
}

}  // namespace

void register_reduce(Registry& r) {
  r.add({.domain = "com.duet", .name = "SumToShape", .kernel = sum_to_shape_kernel, .infer = infer_sum_to_shape});
  static const ReduceSpec specs[] = {
      {"ReduceSum", ReduceKind::Sum, 13, 1},
      {"ReduceMean", ReduceKind::Mean, 18, 1},
      {"ReduceMax", ReduceKind::Max, 18, 1},
      {"ReduceMin", ReduceKind::Min, 18, 1},
      {"ReduceProd", ReduceKind::Prod, 18, 1},
      {"ReduceL1", ReduceKind::L1, 18, 2},
      {"ReduceL2", ReduceKind::L2, 18, 2},
      {"ReduceLogSum", ReduceKind::LogSum, 18, 1},
      {"ReduceLogSumExp", ReduceKind::LogSumExp, 18, 4},
      {"ReduceSumSquare", ReduceKind::SumSquare, 18, 2},
  };
  for (const ReduceSpec& spec : specs) {
    const ReduceSpec* s = &spec;
    r.add({.domain = "", .name = spec.name,
           .kernel = [s](KernelContext& ctx) { reduce_kernel(ctx, *s); },
           .infer = [s](InferContext& ctx) { return reduce_infer(ctx, *s); },
           .cost = [s](const CostContext& ctx) { return reduce_cost(ctx, *s); },
           .family = {}});
  }
}

}  // namespace duet::ops
