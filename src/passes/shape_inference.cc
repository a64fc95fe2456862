#include "duet/passes/shape_inference.h"

#include <algorithm>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"

namespace duet::passes {

namespace {

ir::ValueType type_of(const Tensor& t) {
  ir::ValueType v;
  if (t.is_sequence()) {
    v.kind = ir::ValueType::Kind::Sequence;
    v.dtype = t.sequence_element_type();
    return v;
  }
  v.dtype = t.dtype();
  v.shape = Shape::from(t.dims());
  return v;
}

// Keeps what is known: an inferred type replaces the declared one unless it
// knows less (unknown rank or dtype).
void merge(ir::ValueType& into, const ir::ValueType& inferred) {
  if (inferred.kind != ir::ValueType::Kind::Tensor) {
    into.kind = inferred.kind;
    return;
  }
  if (inferred.dtype != DType::Undefined) into.dtype = inferred.dtype;
  if (!inferred.shape.rank_known) return;
  if (!into.shape.rank_known || into.shape.rank() != inferred.shape.rank()) {
    into.shape = inferred.shape;
    return;
  }
  for (size_t i = 0; i < inferred.shape.rank(); ++i) {
    const Dim& d = inferred.shape.dims[i];
    if (d.known() || into.shape.dims[i].symbol.empty() || into.shape.dims[i].symbol.rfind("unk__", 0) == 0) {
      if (d.known() || !d.symbol.empty()) into.shape.dims[i] = d;
    }
  }
}

// Shape and Size depend only on the input's type: fold them as soon as the
// shape is known, so Shape -> Slice -> Concat -> Reshape chains resolve.
bool fold_from_type(const ir::Node& n, ShapeInferenceResult& result) {
  if ((n.op_type != "Shape" && n.op_type != "Size") || !n.domain.empty() || n.inputs.empty() || !n.inputs[0] ||
      n.outputs.empty() || !n.outputs[0])
    return false;
  const ir::ValueType& t = n.inputs[0]->type;
  if (t.kind != ir::ValueType::Kind::Tensor || !t.shape.fully_known()) return false;
  const Dims dims = t.shape.concrete();
  Tensor value;
  if (n.op_type == "Size") {
    value = Tensor::scalar<int64_t>(numel(dims));
  } else {
    const int64_t rank = static_cast<int64_t>(dims.size());
    auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + rank : v, 0, rank); };
    const int64_t start = clamp(n.attr_int("start", 0)), end = clamp(n.attr_int("end", rank));
    std::vector<int64_t> v;
    for (int64_t i = start; i < end; ++i) v.push_back(dims[i]);
    value = Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
  }
  n.outputs[0]->type = type_of(value);
  result.constants[n.outputs[0]->name] = value;
  return true;
}

bool has_subgraph(const ir::Node& n) {
  for (auto& a : n.attributes) if (a.g || !a.graphs.empty()) return true;
  return false;
}

}  // namespace

ShapeInferenceResult infer_shapes(ir::Model& model, const ShapeInferenceOptions& options) {
  ShapeInferenceResult result;
  ir::Graph& g = *model.graph;
  const ops::Registry& reg = ops::Registry::builtin();
  for (auto& [name, dims] : options.input_shapes) {
    ir::Value* v = g.find_value(name);
    bool is_input = false;
    for (auto* in : g.inputs) is_input |= in == v;
    if (!v || !is_input) {
      std::string names;
      for (auto* in : g.inputs) if (!g.initializers.count(in->name)) names += (names.empty() ? "" : ", ") + in->name;
      fail("--shape names '", name, "', which is not a model input; the inputs are: ", names);
    }
    if (v->type.shape.rank_known) {
      DUET_CHECK(v->type.shape.rank() == dims.size(), "--shape ", name, "=", dims_str(dims), ": the input has rank ",
                 v->type.shape.rank(), " (", v->type.shape.str(), ")");
      for (size_t i = 0; i < dims.size(); ++i) {
        const Dim& d = v->type.shape.dims[i];
        DUET_CHECK(!d.known() || d.value == dims[i], "--shape ", name, "=", dims_str(dims), ": dimension ", i,
                   " is fixed at ", d.value, " in the model");
      }
    }
    v->type.shape = Shape::from(dims);
  }
  for (auto& [name, t] : g.initializers) result.constants[name] = t;
  int fresh = 0;
  for (auto& node_ptr : g.nodes) {
    ir::Node& node = *node_ptr;
    const ops::OpDef* def = reg.find(node.domain, node.op_type);
    if (!def) {
      result.unresolved.push_back(node.label());
      continue;
    }
    const int64_t opset = model.opset(node.domain) ? model.opset(node.domain) : ir::kMaxOnnxOpset;
    // Kernels and infer functions index their inputs by position: a node with
    // fewer than its op takes is refused here too (`duet info` infers without
    // the session's support check).
    const std::string arity =
        onnx_io::arity_problem(node.domain, node.op_type, opset, node.inputs.size(), node.outputs.size());
    DUET_CHECK(arity.empty(), node.label(), ": ", arity);
    if (fold_from_type(node, result)) continue;
    bool all_constant = !has_subgraph(node);
    int64_t elements = 0;
    std::vector<const Tensor*> values;
    for (auto* in : node.inputs) {
      if (!in) { values.push_back(nullptr); continue; }
      auto it = result.constants.find(in->name);
      values.push_back(it == result.constants.end() ? nullptr : &it->second);
      if (it == result.constants.end()) all_constant = false;
      else elements += it->second.numel();
    }
    if (all_constant && elements <= options.fold_limit_elements) {
      ops::KernelContext ctx{node};
      ctx.opset = opset;
      ctx.inputs = values;
      ctx.outputs.resize(node.outputs.size());
      try {
        def->kernel(ctx);
        for (size_t k = 0; k < node.outputs.size(); ++k) {
          if (!node.outputs[k] || !ctx.outputs[k].defined()) continue;
          node.outputs[k]->type = type_of(ctx.outputs[k]);
          if (!ctx.outputs[k].is_sequence() && !ctx.outputs[k].is_none() && ctx.outputs[k].numel() <= options.fold_limit_elements)
            result.constants[node.outputs[k]->name] = ctx.outputs[k];
        }
        continue;
      } catch (const Unsupported&) {
        // fall through to the infer function
      }
    }
    if (!def->infer) {
      result.unresolved.push_back(node.label());
      continue;
    }
    ops::InferContext ictx{node};
    ictx.opset = opset;
    for (auto* in : node.inputs) {
      ictx.inputs.push_back(in ? in->type : ir::ValueType{ir::ValueType::Kind::Tensor, DType::Undefined, Shape::unknown_rank()});
    }
    ictx.values = values;
    ictx.num_outputs = node.outputs.size();
    ictx.fresh_counter = &fresh;
    auto types = def->infer(ictx);
    bool resolved = true;
    for (size_t k = 0; k < node.outputs.size() && k < types.size(); ++k) {
      if (!node.outputs[k]) continue;
      merge(node.outputs[k]->type, types[k]);
      resolved &= node.outputs[k]->type.shape.fully_known();
    }
    if (!resolved) result.unresolved.push_back(node.label());
  }
  return result;
}

std::vector<NodeCost> node_costs(const ir::Model& model) {
  std::vector<NodeCost> costs;
  const ops::Registry& reg = ops::Registry::builtin();
  for (auto& n : model.graph->nodes) {
    ops::CostContext c{*n};
    bool known = true;
    for (auto* in : n->inputs) {
      c.inputs.push_back(in ? in->type : ir::ValueType{});
      if (in) known &= in->type.shape.fully_known();
    }
    for (auto* out : n->outputs) {
      c.outputs.push_back(out ? out->type : ir::ValueType{});
      if (out) known &= out->type.shape.fully_known();
    }
    const ops::OpDef* def = reg.find(n->domain, n->op_type);
    ops::Cost cost = def && def->cost ? def->cost(c) : ops::default_cost(c);
    costs.push_back({n.get(), cost, known});
  }
  return costs;
}

}  // namespace duet::passes
