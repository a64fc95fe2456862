#include "duet/passes/upgrade_opset.h"

#include <algorithm>
#include <set>

#include "duet/core/error.h"
#include "duet/ir/edit.h"

namespace duet::passes {

namespace {

using namespace ir::edit;

Tensor int64s(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())}); }

// A scalar of x's element type (float32 when the type is not known yet).
Tensor scalar_like(const Value* x, double value) {
  const DType t = x && x->type.dtype != DType::Undefined ? x->type.dtype : DType::Float32;
  Tensor s(t, {});
  switch (t) {
    case DType::Float32: s.data<float>()[0] = static_cast<float>(value); break;
    case DType::Float64: s.data<double>()[0] = value; break;
    case DType::Int64: s.data<int64_t>()[0] = static_cast<int64_t>(value); break;
    case DType::Int32: s.data<int32_t>()[0] = static_cast<int32_t>(value); break;
    case DType::Int8: s.data<int8_t>()[0] = static_cast<int8_t>(value); break;
    case DType::UInt8: s.data<uint8_t>()[0] = static_cast<uint8_t>(value); break;
    default: unsupported("opset upgrade: a constant of type ", dtype_name(t), " for ", x->name, " is not supported");
  }
  return s;
}

// Puts `input` at position `index` (padding omitted inputs with null).
void set_input(Node& n, size_t index, Value* input) {
  if (n.inputs.size() <= index) n.inputs.resize(index + 1, nullptr);
  n.inputs[index] = input;
}

// Moves an integer-list attribute into input `index` when the node has it.
bool ints_attr_to_input(Graph& g, Node& n, const std::string& attr, size_t index) {
  if (!n.has_attr(attr)) return false;
  Value* v = add_initializer(g, n.name.empty() ? attr : n.name + "_" + attr, int64s(n.attr_ints(attr)));
  remove_attr(n, attr);
  set_input(n, index, v);
  return true;
}

bool upgrade_resize(Graph& g, Node& n, int64_t from) {
  const bool upsample = n.op_type == "Upsample";
  if (!upsample && !(n.op_type == "Resize" && from < 11)) return false;
  Value* scales = nullptr;
  if (upsample && from < 9) {
    scales = add_initializer(g, n.name + "_scales", Tensor::from_vector<float>(n.attr_floats("scales"), {static_cast<int64_t>(n.attr_floats("scales").size())}));
    remove_attr(n, "scales");
  } else {
    scales = n.has_input(1) ? n.inputs[1] : nullptr;
  }
  std::string mode = n.attr_string("mode", "nearest");
  if (mode == "bilinear") mode = "linear";
  set_attr(n, "mode", mode);
  set_attr(n, "coordinate_transformation_mode", "asymmetric");
  if (mode == "nearest") {
    const Tensor* s = constant(g, scales);
    if (!s) unsupported(n.label(), ": upgrading a legacy nearest Resize needs constant scales");
    bool shrinks = false;
    for (int64_t i = 0; i < s->numel(); ++i) shrinks |= s->get_double(i) < 1.0;
    bool enlarges = false;
    for (int64_t i = 0; i < s->numel(); ++i) enlarges |= s->get_double(i) > 1.0;
    if (shrinks && enlarges) unsupported(n.label(), ": a legacy nearest Resize that both shrinks and enlarges has no opset-11 equivalent");
    set_attr(n, "nearest_mode", shrinks ? "ceil" : "floor");
  }
  Value* roi = add_initializer(g, n.name + "_roi", Tensor(DType::Float32, {0}));
  Value* x = n.inputs[0];
  n.op_type = "Resize";
  n.inputs = {x, roi, scales};
  return true;
}

// Softmax-family before 13: flatten to [prod(d < axis), prod(d >= axis)] and
// normalize the second dimension.
bool upgrade_softmax(Graph& g, Node& n, std::vector<std::unique_ptr<Node>>& added) {
  const int64_t axis = n.attr_int("axis", 1);
  const Value* x = n.inputs[0];
  const int64_t rank = x->type.shape.rank_known ? static_cast<int64_t>(x->type.shape.rank()) : -1;
  if (rank > 0 && (axis == -1 || axis == rank - 1)) {
    set_attr(n, "axis", -1);
    return true;
  }
  // y = Reshape(Softmax(Flatten(x, axis), axis=-1), Shape(x))
  Value* shape = g.value(fresh_name(g, x->name + "_shape"));
  Value* flat = g.value(fresh_name(g, x->name + "_2d"));
  Value* soft = g.value(fresh_name(g, n.outputs[0]->name + "_2d"));
  auto shape_node = std::make_unique<Node>();
  shape_node->op_type = "Shape";
  shape_node->name = fresh_name(g, n.name + "_shape");
  shape_node->inputs = {n.inputs[0]};
  shape_node->outputs = {shape};
  auto flatten = std::make_unique<Node>();
  flatten->op_type = "Flatten";
  flatten->name = fresh_name(g, n.name + "_flatten");
  flatten->inputs = {n.inputs[0]};
  flatten->outputs = {flat};
  set_attr(*flatten, "axis", axis);
  auto reshape = std::make_unique<Node>();
  reshape->op_type = "Reshape";
  reshape->name = fresh_name(g, n.name + "_reshape");
  reshape->inputs = {soft, shape};
  reshape->outputs = {n.outputs[0]};
  n.outputs[0]->producer = reshape.get();
  n.outputs[0]->producer_output = 0;
  shape->producer = shape_node.get();
  flat->producer = flatten.get();
  soft->producer = &n;
  n.inputs = {flat};
  n.outputs = {soft};
  set_attr(n, "axis", -1);
  added.push_back(std::move(shape_node));
  added.push_back(std::move(flatten));
  added.push_back(std::move(reshape));
  return true;
}

bool is_reduce(const std::string& op) {
  static const std::set<std::string> ops = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                                            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  return ops.count(op) > 0;
}

bool upgrade_node(Graph& g, Node& n, int64_t from, int64_t target, std::vector<std::unique_ptr<Node>>& added) {
  if (!n.domain.empty() && n.domain != "ai.onnx") return false;
  const std::string& op = n.op_type;
  if (op == "Clip" && from < 11) {
    const bool has_min = n.has_attr("min"), has_max = n.has_attr("max");
    Value* lo = has_min ? add_initializer(g, n.name + "_min", scalar_like(n.inputs[0], n.attr_float("min", 0))) : nullptr;
    Value* hi = has_max ? add_initializer(g, n.name + "_max", scalar_like(n.inputs[0], n.attr_float("max", 0))) : nullptr;
    remove_attr(n, "min");
    remove_attr(n, "max");
    n.inputs.resize(1);
    if (lo || hi) set_input(n, 1, lo);
    if (hi) set_input(n, 2, hi);
    return true;
  }
  if (op == "Slice" && from < 10) {
    std::vector<int64_t> axes = n.attr_ints("axes");
    Value* starts = add_initializer(g, n.name + "_starts", int64s(n.attr_ints("starts")));
    Value* ends = add_initializer(g, n.name + "_ends", int64s(n.attr_ints("ends")));
    Value* ax = axes.empty() ? nullptr : add_initializer(g, n.name + "_axes", int64s(axes));
    for (const char* a : {"starts", "ends", "axes"}) remove_attr(n, a);
    n.inputs.resize(1);
    set_input(n, 1, starts);
    set_input(n, 2, ends);
    if (ax) set_input(n, 3, ax);
    return true;
  }
  if (op == "Pad" && from < 11) {
    Value* pads = add_initializer(g, n.name + "_pads", int64s(n.attr_ints("pads")));
    Value* value = add_initializer(g, n.name + "_value", scalar_like(n.inputs[0], n.attr_float("value", 0)));
    remove_attr(n, "pads");
    remove_attr(n, "value");
    n.inputs.resize(1);
    set_input(n, 1, pads);
    set_input(n, 2, value);
    return true;
  }
  if (op == "TopK" && from < 10) {
    Value* k = add_initializer(g, n.name + "_k", int64s({n.attr_int("k", 1)}));
    remove_attr(n, "k");
    set_input(n, 1, k);
    return true;
  }
  if (op == "Upsample" || op == "Resize") return upgrade_resize(g, n, from);
  if (op == "Scatter") {  // deprecated at 11; same semantics as ScatterElements
    n.op_type = "ScatterElements";
    return true;
  }
  if (op == "BatchNormalization" && from < 9) {
    if (n.attr_int("spatial", 1) == 0) unsupported(n.label(), ": spatial=0 BatchNormalization cannot be upgraded");
    remove_attr(n, "spatial");
    return true;
  }
  if (op == "Dropout" && from < 12) {
    const bool had = n.has_attr("ratio");
    Value* ratio = had ? add_initializer(g, n.name + "_ratio", Tensor::scalar<float>(n.attr_float("ratio", 0.5f))) : nullptr;
    remove_attr(n, "ratio");
    remove_attr(n, "is_test");
    if (ratio) set_input(n, 1, ratio);
    return had;
  }
  if (from < 13) {
    if (op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum") return ints_attr_to_input(g, n, "axes", 1);
    if (op == "Split") return ints_attr_to_input(g, n, "split", 1);
    if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") return upgrade_softmax(g, n, added);
  }
  if (from < 18 && target >= 18 && is_reduce(op)) return ints_attr_to_input(g, n, "axes", 1);
  if (from < 21 && target >= 21 && op == "GroupNormalization")
    unsupported(n.label(), ": GroupNormalization changed its scale/bias shape at opset 21; not upgraded");
  return false;
}

int upgrade_graph(Graph& g, int64_t from, int64_t target) {
  int changed = 0;
  std::vector<std::unique_ptr<Node>> added;
  for (auto& node : g.nodes) {
    for (auto& a : node->attributes) {
      if (a.g) changed += upgrade_graph(*a.g, from, target);
      for (auto& s : a.graphs) changed += upgrade_graph(*s, from, target);
    }
    if (upgrade_node(g, *node, from, target, added)) ++changed;
  }
  for (auto& n : added) g.nodes.push_back(std::move(n));
  if (!added.empty()) g.topological_sort();
  return changed;
}

}  // namespace

int upgrade_opset(ir::Model& model, int64_t target) {
  const int64_t from = model.opset("");
  if (from == 0 || from >= target) return 0;
  if (from < 7) unsupported("opset upgrade: the model imports opset ", from, "; Duet upgrades models from opset 7 on (legacy broadcasting before)");
  const int changed = upgrade_graph(*model.graph, from, target);
  for (auto& imp : model.opset_imports)
    if (imp.domain.empty() || imp.domain == "ai.onnx") imp.version = target;
  if (model.ir_version < 7) model.ir_version = 7;
  ir::verify(*model.graph);
  return changed;
}

}  // namespace duet::passes
