// Reverse-mode autodiff (see autodiff.h). One rule per op type turns the
// gradients of a node's outputs into gradients of its inputs by appending
// nodes; contributions to a value read by several nodes are summed.
#include "duet/train/autodiff.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "duet/core/error.h"
#include "duet/train/graph_builder.h"
#include "duet/ir/edit.h"

namespace duet::train {

namespace {

using ir::Attribute;
using ir::AttrType;
using ir::Graph;
using ir::Node;
using ir::Value;
namespace gu = ir::edit;

// Appends backward nodes, named after the forward node they differentiate.
class Builder {
 public:
  explicit Builder(Graph& g) : g_(g) {}

  std::vector<Value*> ops(const std::string& type, std::vector<Value*> inputs, std::vector<bool> want,
                          std::vector<Attribute> attrs = {}, const std::string& domain = "") {
    std::vector<Value*> outs;
    for (bool w : want) outs.push_back(w ? g_.value(gu::fresh_name(g_, base_ + "/" + type)) : nullptr);
    // Reserve the names before the next fresh_name call.
    Node* n = g_.add_node(type, std::move(inputs), outs, base_ + "/" + type + "#" + std::to_string(++nodes_), domain);
    n->attributes = std::move(attrs);
    for (size_t i = 0; i < outs.size(); ++i)
      if (outs[i]) {
        outs[i]->producer = n;
        outs[i]->producer_output = static_cast<int>(i);
      }
    return outs;
  }
  Value* op(const std::string& type, std::vector<Value*> inputs, std::vector<Attribute> attrs = {},
            const std::string& domain = "") {
    return ops(type, std::move(inputs), {true}, std::move(attrs), domain)[0];
  }
  Value* ints(const std::vector<int64_t>& v) {
    return gu::add_initializer(g_, base_ + "/ints", Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())}));
  }
  Value* scalar(double v, DType dtype) {
    Tensor t = dtype == DType::Float64 ? Tensor::scalar<double>(v) : Tensor::scalar<float>(static_cast<float>(v));
    if (dtype != DType::Float64 && dtype != DType::Float32)
      unsupported("autodiff: gradients are float32 or float64, got ", dtype_name(dtype));
    return gu::add_initializer(g_, base_ + "/const", std::move(t));
  }
  Value* shape_of(Value* v) {
    auto it = shapes_.find(v);
    if (it != shapes_.end()) return it->second;
    return shapes_[v] = op("Shape", {v});
  }
  // Zeros shaped like v, in `dtype` (float32 or float64): the gradient of what does not reach the loss.
  Value* zeros_like(Value* v, DType dtype) {
    Attribute zero;
    zero.name = "value";
    zero.type = AttrType::Tensor;
    zero.t = dtype == DType::Float64 ? Tensor::from_vector<double>({0.0}, {1}) : Tensor::from_vector<float>({0.0f}, {1});
    return op("ConstantOfShape", {shape_of(v)}, {zero});
  }
  void set_base(const std::string& b) { base_ = "grad/" + b; }
  Graph& graph() { return g_; }

 private:
  Graph& g_;
  std::string base_ = "grad";
  int nodes_ = 0;
  std::unordered_map<const Value*, Value*> shapes_;
};

struct GradContext {
  Node& node;
  std::vector<Value*> dy;  // per output; nullptr where no gradient flows
  std::vector<bool> need;  // per input: a gradient is wanted
  Builder& b;

  Value* in(size_t i) const { return node.inputs.at(i); }
  Value* out(size_t i) const { return node.outputs.at(i); }
  DType dtype() const { return in(0)->type.dtype; }
  const Shape& shape(size_t i) const { return in(i)->type.shape; }
  int64_t rank(size_t i) const {
    const Shape& s = shape(i);
    if (!s.rank_known) unsupported(node.label(), ": gradient needs the rank of input ", i, " (infer shapes first)");
    return static_cast<int64_t>(s.rank());
  }
  // A statically known dimension of input i.
  int64_t dim(size_t i, int64_t d) const {
    const Shape& s = shape(i);
    if (!s.rank_known || d >= static_cast<int64_t>(s.rank()) || !s.dims[d].known())
      unsupported(node.label(), ": gradient needs dimension ", d, " of input ", i, " to be known, got ", s.str());
    return s.dims[d].value;
  }
  // An integer tensor input that must be a constant (axes, split sizes, ...).
  std::vector<int64_t> constant_ints(size_t i) const {
    const Tensor* t = gu::constant(b.graph(), in(i));
    if (!t) unsupported(node.label(), ": gradient needs input ", i, " to be a constant");
    return t->to_int_vector();
  }
  std::vector<Attribute> forward_attrs() const { return node.attributes; }
};

using Rule = std::function<std::vector<Value*>(GradContext&)>;

// dy summed down to the shape of x, where the op broadcast x to its output y.
Value* unbroadcast(GradContext& c, Value* dy, Value* x, Value* y) {
  const Shape &xs = x->type.shape, &ys = y->type.shape;
  if (xs.rank_known && ys.rank_known && xs == ys && xs.fully_known()) return dy;
  if (xs.rank_known && ys.rank_known && xs == ys) {
    bool named = true;  // equal symbolic dims name the same size
    for (auto& d : xs.dims) named = named && (d.known() || !d.symbol.empty());
    if (named) return dy;
  }
  return c.b.op("SumToShape", {dy, c.b.shape_of(x)}, {}, "com.duet");
}

std::vector<int64_t> swap_last_two(int64_t rank) {
  std::vector<int64_t> perm(static_cast<size_t>(rank));
  for (int64_t i = 0; i < rank; ++i) perm[i] = i;
  std::swap(perm[rank - 1], perm[rank - 2]);
  return perm;
}

// The axes of a Reduce* node (attribute before opset 18 for most, input at
// 13+ for ReduceSum and 18+ for the rest), normalized; empty means all.
std::vector<int64_t> reduce_axes(GradContext& c) {
  std::vector<int64_t> axes = c.node.attr_ints("axes");
  if (c.node.num_inputs() > 1 && c.node.has_input(1)) axes = c.constant_ints(1);
  const int64_t r = c.rank(0);
  for (auto& a : axes) a = a < 0 ? a + r : a;
  if (axes.empty() && c.node.attr_int("noop_with_empty_axes", 0) != 0)
    unsupported(c.node.label(), ": gradient of a no-op reduction");
  if (axes.empty())
    for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  std::sort(axes.begin(), axes.end());
  return axes;
}

// dy of a reduction broadcast back over the reduced axes of input 0.
Value* expand_reduced(GradContext& c, const std::vector<int64_t>& axes) {
  Value* g = c.dy[0];
  if (c.node.attr_int("keepdims", 1) == 0 && axes.size() < static_cast<size_t>(c.rank(0)))
    g = c.b.op("Unsqueeze", {g, c.b.ints(axes)});
  return c.b.op("Expand", {g, c.b.shape_of(c.in(0))});
}

// Whether input i's dims along these axes are known when the gradient graph is built.
bool known_dims(GradContext& c, size_t i, const std::vector<int64_t>& axes) {
  const Shape& s = c.in(i)->type.shape;
  if (!s.rank_known) return false;
  for (int64_t a : axes)
    if (a >= static_cast<int64_t>(s.rank()) || !s.dims[static_cast<size_t>(a)].known()) return false;
  return true;
}

// The number of elements of x along these axes, as a scalar of the gradient's type computed from x's shape at
// run time (a recognizer's width, a reshape that depends on the batch).
Value* element_count(GradContext& c, Value* x, const std::vector<int64_t>& axes) {
  Value* dims = c.b.op("Gather", {c.b.shape_of(x), c.b.ints(axes)});
  Value* count = c.b.op("ReduceProd", {dims}, {attr_int("keepdims", 0)});
  return c.b.op("Cast", {count}, {attr_int("to", static_cast<int64_t>(c.dtype()))});
}

// Softmax-family axis (opset 13 semantics: one axis, default -1).
int64_t softmax_axis(GradContext& c) {
  const int64_t r = c.rank(0);
  int64_t a = c.node.attr_int("axis", -1);
  return a < 0 ? a + r : a;
}

std::map<std::string, Rule> build_rules() {
  std::map<std::string, Rule> r;

  r["Identity"] = [](GradContext& c) { return std::vector<Value*>{c.dy[0]}; };
  r["Neg"] = [](GradContext& c) { return std::vector<Value*>{c.b.op("Neg", {c.dy[0]})}; };
  r["Add"] = [](GradContext& c) {
    return std::vector<Value*>{unbroadcast(c, c.dy[0], c.in(0), c.out(0)), unbroadcast(c, c.dy[0], c.in(1), c.out(0))};
  };
  r["Sum"] = [](GradContext& c) {
    std::vector<Value*> g;
    for (size_t i = 0; i < c.node.num_inputs(); ++i) g.push_back(unbroadcast(c, c.dy[0], c.in(i), c.out(0)));
    return g;
  };
  r["Sub"] = [](GradContext& c) {
    Value* db = c.need[1] ? unbroadcast(c, c.b.op("Neg", {c.dy[0]}), c.in(1), c.out(0)) : nullptr;
    return std::vector<Value*>{unbroadcast(c, c.dy[0], c.in(0), c.out(0)), db};
  };
  r["Mul"] = [](GradContext& c) {
    Value* da = c.need[0] ? unbroadcast(c, c.b.op("Mul", {c.dy[0], c.in(1)}), c.in(0), c.out(0)) : nullptr;
    Value* db = c.need[1] ? unbroadcast(c, c.b.op("Mul", {c.dy[0], c.in(0)}), c.in(1), c.out(0)) : nullptr;
    return std::vector<Value*>{da, db};
  };
  r["Div"] = [](GradContext& c) {
    Value* da = c.need[0] ? unbroadcast(c, c.b.op("Div", {c.dy[0], c.in(1)}), c.in(0), c.out(0)) : nullptr;
    Value* db = nullptr;
    if (c.need[1]) {  // d(a/b)/db = -y/b
      Value* t = c.b.op("Mul", {c.dy[0], c.b.op("Div", {c.out(0), c.in(1)})});
      db = unbroadcast(c, c.b.op("Neg", {t}), c.in(1), c.out(0));
    }
    return std::vector<Value*>{da, db};
  };
  r["Relu"] = [](GradContext& c) {
    return std::vector<Value*>{c.b.op("ReluGrad", {c.dy[0], c.out(0)}, {}, "com.duet")};
  };
  r["LeakyRelu"] = [](GradContext& c) {
    Value* pos = c.b.op("Greater", {c.in(0), c.b.scalar(0, c.dtype())});
    Value* neg = c.b.op("Mul", {c.dy[0], c.b.scalar(c.node.attr_float("alpha", 0.01f), c.dtype())});
    return std::vector<Value*>{c.b.op("Where", {pos, c.dy[0], neg})};
  };
  r["Sigmoid"] = [](GradContext& c) {
    Value* one_minus = c.b.op("Sub", {c.b.scalar(1, c.dtype()), c.out(0)});
    return std::vector<Value*>{c.b.op("Mul", {c.dy[0], c.b.op("Mul", {c.out(0), one_minus})})};
  };
  // Clip passes dy where min < x < max (bounds are inputs 1 and 2 at the opsets gradients need).
  r["Clip"] = [](GradContext& c) {
    Value* x = c.in(0);
    Value* inside = nullptr;
    auto bound = [&](size_t i, const char* cmp) -> Value* { return c.node.has_input(i) ? c.b.op(cmp, {x, c.in(i)}) : nullptr; };
    for (Value* t : {bound(1, "Greater"), bound(2, "Less")})
      if (t) inside = inside ? c.b.op("And", {inside, t}) : t;
    Value* dx = inside ? c.b.op("Where", {inside, c.dy[0], c.b.scalar(0, c.dtype())}) : c.dy[0];
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = dx;
    return g;
  };
  // HardSigmoid: alpha where 0 < alpha x + beta < 1 (read off the output), else 0.
  r["HardSigmoid"] = [](GradContext& c) {
    Value* y = c.out(0);
    Value* inside = c.b.op("And", {c.b.op("Greater", {y, c.b.scalar(0, c.dtype())}), c.b.op("Less", {y, c.b.scalar(1, c.dtype())})});
    Value* slope = c.b.op("Mul", {c.dy[0], c.b.scalar(c.node.attr_float("alpha", 0.2f), c.dtype())});
    return std::vector<Value*>{c.b.op("Where", {inside, slope, c.b.scalar(0, c.dtype())})};
  };
  // HardSwish x * clip(x/6 + 1/2, 0, 1): 0 below -3, 1 above 3, x/3 + 1/2 between.
  r["HardSwish"] = [](GradContext& c) {
    Value* x = c.in(0);
    Value* mid = c.b.op("Add", {c.b.op("Div", {x, c.b.scalar(3, c.dtype())}), c.b.scalar(0.5, c.dtype())});
    Value* d = c.b.op("Where", {c.b.op("Less", {x, c.b.scalar(-3, c.dtype())}), c.b.scalar(0, c.dtype()),
                                c.b.op("Where", {c.b.op("Greater", {x, c.b.scalar(3, c.dtype())}), c.b.scalar(1, c.dtype()), mid})});
    return std::vector<Value*>{c.b.op("Mul", {c.dy[0], d})};
  };
  r["Tanh"] = [](GradContext& c) {
    Value* one_minus = c.b.op("Sub", {c.b.scalar(1, c.dtype()), c.b.op("Mul", {c.out(0), c.out(0)})});
    return std::vector<Value*>{c.b.op("Mul", {c.dy[0], one_minus})};
  };
  r["Exp"] = [](GradContext& c) { return std::vector<Value*>{c.b.op("Mul", {c.dy[0], c.out(0)})}; };
  r["Log"] = [](GradContext& c) { return std::vector<Value*>{c.b.op("Div", {c.dy[0], c.in(0)})}; };
  r["Sqrt"] = [](GradContext& c) {
    Value* half = c.b.op("Mul", {c.dy[0], c.b.scalar(0.5, c.dtype())});
    return std::vector<Value*>{c.b.op("Div", {half, c.out(0)})};
  };
  r["Erf"] = [](GradContext& c) {  // 2/sqrt(pi) exp(-x^2)
    Value* e = c.b.op("Exp", {c.b.op("Neg", {c.b.op("Mul", {c.in(0), c.in(0)})})});
    Value* k = c.b.op("Mul", {e, c.b.scalar(1.1283791670955126, c.dtype())});
    return std::vector<Value*>{c.b.op("Mul", {c.dy[0], k})};
  };
  r["Pow"] = [](GradContext& c) {  // exponent treated as a constant
    if (c.need[1]) unsupported(c.node.label(), ": gradient with respect to the exponent of Pow");
    Value* p = c.in(1);
    Value* pm1 = c.b.op("Sub", {p, c.b.scalar(1, p->type.dtype)});
    Value* d = c.b.op("Mul", {c.b.op("Pow", {c.in(0), pm1}), p});
    if (p->type.dtype != c.dtype()) d = c.b.op("Cast", {d}, {attr_int("to", static_cast<int64_t>(c.dtype()))});
    return std::vector<Value*>{unbroadcast(c, c.b.op("Mul", {c.dy[0], d}), c.in(0), c.out(0)), nullptr};
  };
  r["Cast"] = [](GradContext& c) {
    return std::vector<Value*>{c.b.op("Cast", {c.dy[0]}, {attr_int("to", static_cast<int64_t>(c.dtype()))})};
  };
  // Rounding to a format (autocast): the gradient is rounded to the same
  // format, as the device's backward pass holds it in that format too.
  r["com.duet:RoundToFormat"] = [](GradContext& c) {
    return std::vector<Value*>{c.b.op("RoundToFormat", {c.dy[0]}, c.forward_attrs(), "com.duet")};
  };
  // FP8 with delayed scaling: the gradient is cast to grad_format with its own
  // scale (a new graph input) and reports its amax (a new graph output).
  r["com.duet:ScaledRoundToFormat"] = [](GradContext& c) {
    const std::string grad_format = c.node.attr_string("grad_format", "");
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    if (grad_format.empty()) {
      g[0] = c.dy[0];
      return g;
    }
    Graph& graph = c.b.graph();
    Value* scale = graph.value(c.in(1)->name + ".grad");
    scale->type = c.in(1)->type;
    graph.inputs.push_back(scale);
    auto outs = c.b.ops("ScaledRoundToFormat", {c.dy[0], scale}, {true, true},
                        {attr_string("format", grad_format)}, "com.duet");
    if (c.node.outputs.size() > 1 && c.out(1)) {
      Value* amax = graph.value(c.out(1)->name + ".grad");
      amax->type = c.out(1)->type;
      graph.add_node("Identity", {outs[1]}, {amax}, amax->name + "#node");
      graph.outputs.push_back(amax);
    }
    g[0] = outs[0];
    return g;
  };
  // Quantization-aware training: straight-through estimator for X, learned
  // step size (LSQ) for a trainable scale.
  r["com.duet:FakeQuantize"] = [](GradContext& c) {
    std::vector<Value*> in{c.dy[0], c.in(0), c.in(1)};
    if (c.node.num_inputs() > 2 && c.node.has_input(2)) in.push_back(c.in(2));
    auto d = c.b.ops("FakeQuantizeGrad", in, {c.need[0], c.need[1]}, c.forward_attrs(), "com.duet");
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = d[0];
    g[1] = d[1];
    return g;
  };
  r["Slice"] = [](GradContext& c) {  // unit steps: dX is dY padded back to X's shape with zeros
    const int64_t rank = c.rank(0);
    const auto starts = c.constant_ints(1), ends = c.constant_ints(2);
    std::vector<int64_t> axes;
    if (c.node.num_inputs() > 3 && c.node.has_input(3)) axes = c.constant_ints(3);
    else
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (c.node.num_inputs() > 4 && c.node.has_input(4))
      for (int64_t st : c.constant_ints(4))
        if (st != 1) unsupported(c.node.label(), ": gradient of Slice with step ", st, " (only 1)");
    bool known = c.in(0)->type.shape.rank_known;
    for (size_t i = 0; known && i < axes.size(); ++i) {
      const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
      known = c.in(0)->type.shape.dims[static_cast<size_t>(a)].known();
    }
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    if (known) {
      std::vector<int64_t> pads(static_cast<size_t>(2 * rank), 0);
      for (size_t i = 0; i < axes.size(); ++i) {
        const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i], dim = c.dim(0, a);
        auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
        const int64_t b = clamp(starts[i]), e = std::max(b, clamp(ends[i]));
        pads[static_cast<size_t>(a)] = b;
        pads[static_cast<size_t>(a + rank)] = dim - e;
      }
      g[0] = c.b.op("Pad", {c.dy[0], c.b.ints(pads)});
      return g;
    }
    // A sliced dimension known only at run time (a batch-dependent reshape upstream): the same pads computed
    // from x's shape by int64 graph ops.
    std::vector<Value*> begin(static_cast<size_t>(rank), nullptr), end(static_cast<size_t>(rank), nullptr);
    Value* zero = c.b.ints({0});
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
      Value* dim = c.b.op("Gather", {c.b.shape_of(c.in(0)), c.b.ints({a})});
      auto clamp = [&](int64_t v) {
        Value* at = v < 0 ? c.b.op("Add", {dim, c.b.ints({v})}) : c.b.ints({v});
        return c.b.op("Min", {c.b.op("Max", {at, zero}), dim});
      };
      Value* b = clamp(starts[i]);
      Value* e = c.b.op("Max", {b, clamp(ends[i])});
      begin[static_cast<size_t>(a)] = b;
      end[static_cast<size_t>(a)] = c.b.op("Sub", {dim, e});
    }
    std::vector<Value*> parts;
    for (auto* side : {&begin, &end})
      for (Value* v : *side) parts.push_back(v ? v : zero);
    g[0] = c.b.op("Pad", {c.dy[0], c.b.op("Concat", parts, {attr_int("axis", 0)})});
    return g;
  };
  r["Gather"] = [](GradContext& c) {
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = c.b.op("GatherGrad", {c.dy[0], c.in(1), c.b.shape_of(c.in(0))}, {attr_int("axis", c.node.attr_int("axis", 0))},
                  "com.duet");
    return g;
  };
  r["Where"] = [](GradContext& c) {
    Value* zero = c.b.scalar(0, c.out(0)->type.dtype);
    Value* da = c.need[1] ? unbroadcast(c, c.b.op("Where", {c.in(0), c.dy[0], zero}), c.in(1), c.out(0)) : nullptr;
    Value* db = c.need[2] ? unbroadcast(c, c.b.op("Where", {c.in(0), zero, c.dy[0]}), c.in(2), c.out(0)) : nullptr;
    return std::vector<Value*>{nullptr, da, db};
  };
  r["Expand"] = [](GradContext& c) {
    return std::vector<Value*>{unbroadcast(c, c.dy[0], c.in(0), c.out(0)), nullptr};
  };
  r["MatMul"] = [](GradContext& c) {
    const int64_t ra = c.rank(0), rb = c.rank(1);
    if (ra < 2 || rb < 2) unsupported(c.node.label(), ": gradient of MatMul with a 1-D operand");
    Value* da = nullptr;
    Value* db = nullptr;
    if (c.need[0]) {
      Value* bt = c.b.op("Transpose", {c.in(1)}, {attr_ints("perm", swap_last_two(rb))});
      da = unbroadcast(c, c.b.op("MatMul", {c.dy[0], bt}), c.in(0), c.out(0));
    }
    if (c.need[1] && rb == 2 && ra > 2) {
      // A weight read by a batch of rows: dB = A^T dY over all rows at once, as one
      // Gemm on the flattened operands (no batched product summed afterwards).
      const int64_t k = c.dim(1, 0), n = c.dim(1, 1);
      Value* a2 = c.b.op("Reshape", {c.in(0), c.b.ints({-1, k})});
      Value* dy2 = c.b.op("Reshape", {c.dy[0], c.b.ints({-1, n})});
      db = c.b.op("Gemm", {a2, dy2}, {attr_int("transA", 1)});
    } else if (c.need[1]) {
      Value* at = c.b.op("Transpose", {c.in(0)}, {attr_ints("perm", swap_last_two(ra))});
      db = unbroadcast(c, c.b.op("MatMul", {at, c.dy[0]}), c.in(1), c.out(0));
    }
    return std::vector<Value*>{da, db};
  };
  r["Gemm"] = [](GradContext& c) {
    const int64_t ta = c.node.attr_int("transA", 0), tb = c.node.attr_int("transB", 0);
    const float alpha = c.node.attr_float("alpha", 1.0f), beta = c.node.attr_float("beta", 1.0f);
    auto gemm = [&](Value* a, Value* b, int64_t t1, int64_t t2) {
      return c.b.op("Gemm", {a, b}, {attr_int("transA", t1), attr_int("transB", t2), attr_float("alpha", alpha)});
    };
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    if (c.need[0]) g[0] = ta ? gemm(c.in(1), c.dy[0], tb, 1) : gemm(c.dy[0], c.in(1), 0, tb ? 0 : 1);
    if (c.need[1]) g[1] = tb ? gemm(c.dy[0], c.in(0), 1, ta) : gemm(c.in(0), c.dy[0], ta ? 0 : 1, 0);
    if (c.node.num_inputs() > 2 && c.need[2]) {
      Value* dc = c.dy[0];
      if (beta != 1.0f) dc = c.b.op("Mul", {dc, c.b.scalar(beta, c.dtype())});
      g[2] = unbroadcast(c, dc, c.in(2), c.out(0));
    }
    return g;
  };
  r["Conv"] = [](GradContext& c) {
    std::vector<Value*> inputs{c.dy[0], c.in(0), c.in(1)};
    std::vector<bool> want{c.need[0], c.need[1], c.node.num_inputs() > 2 && c.need[2]};
    auto g = c.b.ops("ConvGrad", inputs, want, c.forward_attrs(), "com.duet");
    g.resize(c.node.num_inputs());
    return g;
  };
  // y = ConvTranspose(x, W) is the input gradient of a Conv with weight W (same strides, pads, dilations,
  // groups): so dx = Conv(dy, W), and dW is that Conv's weight gradient with x as its dY and dy as its X.
  r["ConvTranspose"] = [](GradContext& c) {
    if (!c.node.attr_string("auto_pad", "NOTSET").empty() && c.node.attr_string("auto_pad", "NOTSET") != "NOTSET")
      unsupported(c.node.label(), ": gradient with auto_pad (give explicit pads)");
    if (!c.node.attr_ints("output_shape").empty())
      unsupported(c.node.label(), ": gradient with output_shape (give explicit pads)");
    std::vector<Attribute> conv_attrs;
    for (const auto& a : c.node.attributes)
      if (a.name == "strides" || a.name == "pads" || a.name == "dilations" || a.name == "group" || a.name == "kernel_shape")
        conv_attrs.push_back(a);
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    if (c.need[0]) g[0] = c.b.op("Conv", {c.dy[0], c.in(1)}, conv_attrs);
    if (c.need[1]) g[1] = c.b.ops("ConvGrad", {c.in(0), c.dy[0], c.in(1)}, {false, true, false}, conv_attrs, "com.duet")[1];
    if (c.node.num_inputs() > 2 && c.need[2]) {
      std::vector<int64_t> axes = {0};
      for (int64_t d = 2; d < c.rank(0); ++d) axes.push_back(d);
      g[2] = c.b.op("ReduceSum", {c.dy[0], c.b.ints(axes)}, {attr_int("keepdims", 0)});
    }
    return g;
  };
  // Pad (constant mode, pads >= 0): dx is dy with the padding sliced off (ends counted from the end, so no shapes).
  r["Pad"] = [](GradContext& c) {
    if (c.node.attr_string("mode", "constant") != "constant") unsupported(c.node.label(), ": gradient of a non-constant Pad");
    std::vector<int64_t> pads = c.constant_ints(1);
    const int64_t rank = c.rank(0);
    std::vector<int64_t> axes;
    if (c.node.has_input(3)) axes = c.constant_ints(3);
    else for (int64_t a = 0; a < rank; ++a) axes.push_back(a);
    const size_t n = axes.size();
    if (pads.size() != 2 * n) unsupported(c.node.label(), ": pads and axes disagree");
    std::vector<int64_t> starts, ends;
    for (size_t i = 0; i < n; ++i) {
      if (pads[i] < 0 || pads[n + i] < 0) unsupported(c.node.label(), ": gradient of a Pad that crops (negative pads)");
      starts.push_back(pads[i]);
      ends.push_back(pads[n + i] > 0 ? -pads[n + i] : std::numeric_limits<int64_t>::max());
    }
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = c.b.op("Slice", {c.dy[0], c.b.ints(starts), c.b.ints(ends), c.b.ints(axes)});
    return g;
  };
  // Resize is linear in X: ResizeGrad scatters dy back through the same taps (roi, scales, sizes as given).
  r["Resize"] = [](GradContext& c) {
    std::vector<Value*> inputs{c.dy[0], c.in(0)};
    for (size_t i = 1; i < c.node.num_inputs(); ++i) inputs.push_back(c.node.inputs[i]);
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = c.b.op("ResizeGrad", inputs, c.forward_attrs(), "com.duet");
    return g;
  };
  r["MaxPool"] = [](GradContext& c) {
    if (c.node.outputs.size() > 1 && c.dy.size() > 1 && c.dy[1]) unsupported(c.node.label(), ": gradient of Indices");
    return std::vector<Value*>{c.b.op("MaxPoolGrad", {c.dy[0], c.in(0)}, c.forward_attrs(), "com.duet")};
  };
  r["AveragePool"] = [](GradContext& c) {
    return std::vector<Value*>{c.b.op("AveragePoolGrad", {c.dy[0], c.in(0)}, c.forward_attrs(), "com.duet")};
  };
  // dy / (the spatial size), spread over it; the size read from x's shape at run time (a recognizer's width varies).
  r["GlobalAveragePool"] = [](GradContext& c) {
    std::vector<int64_t> spatial;
    for (int64_t d = 2; d < c.rank(0); ++d) spatial.push_back(d);
    Value* g = c.b.op("Div", {c.dy[0], element_count(c, c.in(0), spatial)});
    return std::vector<Value*>{c.b.op("Expand", {g, c.b.shape_of(c.in(0))})};
  };
  r["ReduceSum"] = [](GradContext& c) {
    const auto axes = reduce_axes(c);
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = expand_reduced(c, axes);
    return g;
  };
  r["ReduceMean"] = [](GradContext& c) {
    const auto axes = reduce_axes(c);
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    if (known_dims(c, 0, axes)) {
      int64_t count = 1;
      for (int64_t a : axes) count *= c.dim(0, a);
      g[0] = c.b.op("Mul", {expand_reduced(c, axes), c.b.scalar(1.0 / static_cast<double>(count), c.dtype())});
    } else {  // the reduced size read from x's shape at run time
      g[0] = c.b.op("Div", {expand_reduced(c, axes), element_count(c, c.in(0), axes)});
    }
    return g;
  };
  auto reshape_back = [](GradContext& c) {
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = c.b.op("Reshape", {c.dy[0], c.b.shape_of(c.in(0))});
    return g;
  };
  r["Reshape"] = reshape_back;
  r["Flatten"] = reshape_back;
  r["Squeeze"] = reshape_back;
  r["Unsqueeze"] = reshape_back;
  r["Transpose"] = [](GradContext& c) {
    std::vector<int64_t> perm = c.node.attr_ints("perm");
    const int64_t rank = c.rank(0);
    if (perm.empty())
      for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    return std::vector<Value*>{c.b.op("Transpose", {c.dy[0]}, {attr_ints("perm", inverse)})};
  };
  r["Concat"] = [](GradContext& c) {
    const int64_t rank = c.rank(0);
    int64_t axis = c.node.attr_int("axis", 0);
    if (axis < 0) axis += rank;
    bool known = true;
    for (size_t i = 0; i < c.node.num_inputs(); ++i) known = known && known_dims(c, i, {axis});
    Value* split;
    if (known) {
      std::vector<int64_t> sizes;
      for (size_t i = 0; i < c.node.num_inputs(); ++i) sizes.push_back(c.dim(i, axis));
      split = c.b.ints(sizes);
    } else {  // each input's size along the axis, read from its shape at run time
      std::vector<Value*> sizes;
      for (size_t i = 0; i < c.node.num_inputs(); ++i) sizes.push_back(c.b.op("Gather", {c.b.shape_of(c.in(i)), c.b.ints({axis})}));
      split = c.b.op("Concat", sizes, {attr_int("axis", 0)});
    }
    std::vector<bool> want(c.node.num_inputs(), true);
    return c.b.ops("Split", {c.dy[0], split}, want, {attr_int("axis", axis)});
  };
  r["Split"] = [](GradContext& c) {
    int64_t axis = c.node.attr_int("axis", 0);
    if (axis < 0) axis += c.rank(0);
    std::vector<Value*> parts;
    for (size_t i = 0; i < c.node.outputs.size(); ++i) {
      parts.push_back(c.dy[i] ? c.dy[i] : c.b.zeros_like(c.out(i), c.dtype()));
    }
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = c.b.op("Concat", parts, {attr_int("axis", axis)});
    return g;
  };
  r["Softmax"] = [](GradContext& c) {
    const int64_t axis = softmax_axis(c);
    Value* dot = c.b.op("ReduceSum", {c.b.op("Mul", {c.dy[0], c.out(0)}), c.b.ints({axis})}, {attr_int("keepdims", 1)});
    return std::vector<Value*>{c.b.op("Mul", {c.out(0), c.b.op("Sub", {c.dy[0], dot})})};
  };
  r["LogSoftmax"] = [](GradContext& c) {
    const int64_t axis = softmax_axis(c);
    Value* sum = c.b.op("ReduceSum", {c.dy[0], c.b.ints({axis})}, {attr_int("keepdims", 1)});
    return std::vector<Value*>{c.b.op("Sub", {c.dy[0], c.b.op("Mul", {c.b.op("Exp", {c.out(0)}), sum})})};
  };
  r["SoftmaxCrossEntropyLoss"] = [](GradContext& c) {
    if (c.dy.size() > 1 && c.dy[1]) unsupported(c.node.label(), ": gradient through log_prob");
    std::vector<Value*> inputs{c.dy[0], c.in(0), c.in(1)};
    if (c.node.num_inputs() > 2 && c.node.has_input(2)) inputs.push_back(c.in(2));
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = c.b.op("SoftmaxCrossEntropyLossGrad", inputs, c.forward_attrs(), "com.duet");
    return g;
  };
  r["com.duet:CtcLoss"] = [](GradContext& c) {
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    g[0] = c.b.op("CtcLossGrad", {c.dy[0], c.in(0), c.in(1)}, c.forward_attrs(), "com.duet");
    return g;
  };
  r["BatchNormalization"] = [](GradContext& c) {
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    const float eps = c.node.attr_float("epsilon", 1e-5f);
    if (c.node.attr_int("training_mode", 0) != 0) {
      auto d = c.b.ops("BatchNormalizationGrad", {c.dy[0], c.in(0), c.in(1)}, {c.need[0], c.need[1], c.need[2]},
                       {attr_float("epsilon", eps)}, "com.duet");
      g[0] = d[0], g[1] = d[1], g[2] = d[2];
      return g;
    }
    // Inference mode (a frozen BatchNormalization): a per-channel affine map with the running statistics,
    // y = x_hat * scale + bias with x_hat = (x - mean) / sqrt(var + eps); scale and bias still learn.
    if (c.need[3] || c.need[4])
      unsupported(c.node.label(), ": gradients of BatchNormalization's running statistics (they are not parameters)");
    std::vector<int64_t> bshape{-1}, axes{0};
    for (int64_t d = 2; d < c.rank(0); ++d) bshape.push_back(1), axes.push_back(d);
    Value* inv_std = c.b.op("Div", {c.b.scalar(1, c.dtype()), c.b.op("Sqrt", {c.b.op("Add", {c.in(4), c.b.scalar(eps, c.dtype())})})});
    if (c.need[0]) g[0] = c.b.op("Mul", {c.dy[0], c.b.op("Reshape", {c.b.op("Mul", {c.in(1), inv_std}), c.b.ints(bshape)})});
    if (c.need[1]) {
      Value* centred = c.b.op("Sub", {c.in(0), c.b.op("Reshape", {c.in(3), c.b.ints(bshape)})});
      Value* x_hat = c.b.op("Mul", {centred, c.b.op("Reshape", {inv_std, c.b.ints(bshape)})});
      g[1] = c.b.op("ReduceSum", {c.b.op("Mul", {c.dy[0], x_hat}), c.b.ints(axes)}, {attr_int("keepdims", 0)});
    }
    if (c.need[2]) g[2] = c.b.op("ReduceSum", {c.dy[0], c.b.ints(axes)}, {attr_int("keepdims", 0)});
    return g;
  };
  auto layer_norm = [](GradContext& c) {
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    std::vector<bool> want{c.need[0], c.need[1], c.node.num_inputs() > 2 && c.need[2]};
    std::vector<Attribute> attrs{attr_int("axis", c.node.attr_int("axis", -1)),
                                 attr_float("epsilon", c.node.attr_float("epsilon", 1e-5f))};
    auto d = c.b.ops("LayerNormalizationGrad", {c.dy[0], c.in(0), c.in(1)}, want, attrs, "com.duet");
    for (size_t i = 0; i < g.size() && i < 3; ++i) g[i] = d[i];
    return g;
  };
  r["LayerNormalization"] = layer_norm;
  r["com.duet:LayerNormalization"] = layer_norm;
  r["Dropout"] = [](GradContext& c) {
    std::vector<Value*> g(c.node.num_inputs(), nullptr);
    bool training = false;
    if (c.node.num_inputs() > 2 && c.node.has_input(2)) training = !c.constant_ints(2).empty() && c.constant_ints(2)[0];
    if (!training) {
      g[0] = c.dy[0];
      return g;
    }
    double ratio = 0.5;
    if (c.node.num_inputs() > 1 && c.node.has_input(1)) {
      const Tensor* t = gu::constant(c.b.graph(), c.in(1));
      if (!t) unsupported(c.node.label(), ": gradient needs a constant ratio");
      ratio = t->get_double(0);
    }
    Value* mask = c.node.outputs.size() > 1 ? c.out(1) : nullptr;
    if (!mask) {  // ask the forward node for its mask
      mask = c.b.graph().value(gu::fresh_name(c.b.graph(), c.out(0)->name + "_mask"));
      mask->type.dtype = DType::Bool;
      mask->type.shape = c.out(0)->type.shape;
      c.node.outputs.resize(2);
      c.node.outputs[1] = mask;
      mask->producer = &c.node;
      mask->producer_output = 1;
    }
    Value* keep = c.b.op("Cast", {mask}, {attr_int("to", static_cast<int64_t>(c.dtype()))});
    Value* scaled = c.b.op("Mul", {keep, c.b.scalar(ratio < 1 ? 1.0 / (1.0 - ratio) : 0.0, c.dtype())});
    g[0] = c.b.op("Mul", {c.dy[0], scaled});
    return g;
  };
  return r;
}

const std::map<std::string, Rule>& rules() {
  static const std::map<std::string, Rule> r = build_rules();
  return r;
}

std::string rule_key(const Node& n) { return n.domain.empty() || n.domain == "ai.onnx" ? n.op_type : n.domain + ":" + n.op_type; }

bool is_float(const Value* v) {
  return v && (v->type.dtype == DType::Float32 || v->type.dtype == DType::Float64);
}

}  // namespace

std::vector<std::string> differentiable_ops() {
  std::vector<std::string> names;
  for (auto& [k, _] : rules()) names.push_back(k);
  return names;
}

std::map<std::string, std::string> add_gradients(ir::Model& model, const GradientRequest& request) {
  Graph& g = *model.graph;
  if (model.opset("") < 13)
    unsupported("autodiff: the model's default opset is ", model.opset(""), "; gradients need 13 or later (upgrade it first)");
  if (model.opset("com.duet") == 0) model.opset_imports.push_back({"com.duet", 1});
  Value* loss = g.find_value(request.loss);
  if (!loss) fail("autodiff: the graph has no value named '", request.loss, "'");
  if (!is_float(loss)) fail("autodiff: the loss '", request.loss, "' must be float32 or float64, got ", loss->type.str());
  const Shape& ls = loss->type.shape;
  if (!ls.rank_known || !ls.fully_known() || numel(ls.concrete()) != 1)
    fail("autodiff: the loss '", request.loss, "' must be a scalar, got shape ", ls.str());

  // Values that depend on a wrt value (forward sweep).
  std::unordered_set<const Value*> depends;
  std::vector<Value*> wrt;
  for (auto& name : request.wrt) {
    Value* v = g.find_value(name);
    if (!v) fail("autodiff: the graph has no value named '", name, "'");
    if (!is_float(v)) fail("autodiff: '", name, "' must be float32 or float64 to have a gradient, got ", v->type.str());
    depends.insert(v);
    wrt.push_back(v);
  }
  for (auto& n : g.nodes) {
    bool any = false;
    for (auto* in : n->inputs) any = any || (in && depends.count(in));
    if (any)
      for (auto* out : n->outputs)
        if (out && is_float(out)) depends.insert(out);
  }
  if (!depends.count(loss)) fail("autodiff: the loss '", request.loss, "' does not depend on any requested value");

  Builder b(g);
  std::unordered_map<const Value*, std::vector<Value*>> contributions;
  if (!request.seed.empty()) {
    Value* s = g.find_value(request.seed);
    if (!s) fail("autodiff: the graph has no value named '", request.seed, "' (the loss seed)");
    contributions[loss].push_back(s);
  } else {
    b.set_base(loss->name);
    contributions[loss].push_back(b.scalar(1.0, loss->type.dtype));
  }
  // The seed has the loss's shape ([] or [1]).
  if (ls.rank() > 0) {
    b.set_base(loss->name);
    contributions[loss][0] = b.op("Reshape", {contributions[loss][0], b.shape_of(loss)});
  }

  auto total = [&](const Value* v) -> Value* {
    auto it = contributions.find(v);
    if (it == contributions.end() || it->second.empty()) return nullptr;
    if (it->second.size() == 1) return it->second[0];
    Value* s = b.op("Sum", it->second);
    it->second = {s};
    return s;
  };

  // Backward sweep over the forward nodes (snapshot: rules append nodes).
  std::vector<Node*> forward;
  for (auto& n : g.nodes) forward.push_back(n.get());
  for (auto it = forward.rbegin(); it != forward.rend(); ++it) {
    Node& n = **it;
    std::vector<Value*> dy;
    bool any = false;
    for (auto* out : n.outputs) {
      dy.push_back(out && depends.count(out) ? total(out) : nullptr);
      any = any || dy.back();
    }
    if (!any) continue;
    std::vector<bool> need;
    bool needed = false;
    for (auto* in : n.inputs) {
      need.push_back(in && depends.count(in) && is_float(in));
      needed = needed || need.back();
    }
    if (!needed) continue;
    auto rule = rules().find(rule_key(n));
    if (rule == rules().end()) unsupported("autodiff: no gradient rule for ", n.label(), " (", rule_key(n), ")");
    b.set_base(n.name.empty() ? n.op_type : n.name);
    GradContext c{n, dy, need, b};
    std::vector<Value*> dx = rule->second(c);
    for (size_t i = 0; i < n.inputs.size() && i < dx.size(); ++i)
      if (need[i] && dx[i]) contributions[n.inputs[i]].push_back(dx[i]);
  }

  std::map<std::string, std::string> result;
  for (Value* v : wrt) {
    b.set_base(v->name);
    Value* grad = total(v);
    if (!grad) grad = b.zeros_like(v, v->type.dtype);  // does not reach the loss
    // A named output per parameter (an Identity when the gradient is another value).
    Value* out = g.value(gu::fresh_name(g, "grad." + v->name));
    Node* id = g.add_node("Identity", {grad}, {out}, gu::fresh_name(g, "grad." + v->name + "_node"));
    out->producer = id;
    out->producer_output = 0;
    out->type = v->type;
    g.outputs.push_back(out);
    result[v->name] = out->name;
  }
  return result;
}

}  // namespace duet::train
