// The oneDNN backend's capability query: which nodes it lowers, and for the
// rest, why not (one line, shown by duet run -v and duet bench).
#include <cmath>
#include <map>
#include <string>

#include "dnnl_common.h"

namespace duet::runtime::dnnl_detail {

namespace {

// QuantizeLinear / DequantizeLinear per tensor between float32 and 8 bits.
bool claims_qdq(const ir::Graph& g, const ir::Node& n) {
  if (n.inputs.size() < 2 || n.attr_int("block_size", 0) != 0 || n.attr_int("precision", 0) != 0) return false;
  if (!scalar_constant(g, n.inputs[1], true) || (n.has_input(2) && !scalar_constant(g, n.inputs[2], false))) return false;
  const bool quantize = n.op_type == "QuantizeLinear";
  const ir::Value* coded = quantize ? n.outputs[0] : n.inputs[0];
  const ir::Value* real = quantize ? n.inputs[0] : n.outputs[0];
  return is_8bit(coded) && is_f32(real) && !constant_of(g, n.inputs[0]);
}

// QuantizedConv: always (an integer primitive when exact, else float between
// reorders). QuantizedMatMul: only where the integer product is exact; the
// rest stays on the reference kernel.
bool claims_quantized(const ir::Graph& g, const ir::Node& n) {
  const bool deconv = n.op_type == "QuantizedConvTranspose";
  const bool conv = n.op_type == "QuantizedConv" || deconv;
  auto in = [&](size_t i) { return n.has_input(i) ? n.inputs[i] : nullptr; };
  const Tensor* w = constant_of(g, in(3));
  const Tensor* w_scale = constant_of(g, in(4));
  if (!is_8bit(in(0)) || !is_8bit(n.outputs[0]) || !w || w->dtype() != DType::Int8 || !w_scale) return false;
  if (!scalar_constant(g, in(1), true) || !scalar_constant(g, in(6), true)) return false;
  for (size_t i : {2, 7}) if (in(i) && !scalar_constant(g, in(i), false)) return false;
  if (in(5) && !constant_of(g, in(5))) return false;
  const int64_t out_axis = conv && !deconv ? 0 : 1;
  if (w->rank() != (conv ? 4u : 2u) || w_scale->dtype() != DType::Float32 ||
      (w_scale->numel() != 1 && w_scale->numel() != w->dim(out_axis)))
    return false;
  if (deconv) {
    for (int64_t p : n.attr_ints("output_padding")) if (p != 0) return false;
    if (n.attr_int("group", 1) != 1 || n.has_attr("output_shape") || n.attr_string("auto_pad", "NOTSET") != "NOTSET")
      return false;
  }
  if (conv) {
    const Tensor* bias = constant_of(g, in(8));
    const int64_t cout = deconv ? w->dim(1) : w->dim(0);
    return rank_is(in(0), 4) && (!in(8) || (bias && bias->dtype() == DType::Float32 && bias->numel() == cout));
  }
  if (!rank_is(in(0), 2) && !rank_is(in(0), 3)) return false;
  return integer_product_exact(*w, in(0)->type.dtype, false) && flatten(ops::read_post_ops(n)).size() < kMaxPostOps;
}

// Whether `small` broadcasts into `full` (equal ranks, each dim 1 or equal).
bool broadcasts_into(const Shape& small, const Shape& full) {
  if (!small.rank_known || !full.rank_known || small.rank() != full.rank()) return false;
  for (size_t i = 0; i < small.rank(); ++i) {
    const Dim& d = small.dims[i];
    if (!(d.known() && d.value == 1) && !(d == full.dims[i])) return false;
  }
  return true;
}

// QuantizedBinary as one primitive on the codes. With a scalar float operand
// the result is affine in the other operand's code (Div only by the
// constant): an eltwise linear step, input and output of one type. With two
// quantized operands Add, Sub and Mul: a binary primitive (the first operand
// has the output's shape; Add/Mul swap them).
bool claims_quantized_binary(const ir::Graph& g, const ir::Node& n) {
  auto in = [&](size_t i) { return n.has_input(i) ? n.inputs[i] : nullptr; };
  const std::string op = n.attr_string("operation", "");
  if (op != "Add" && op != "Sub" && op != "Mul" && op != "Div") return false;
  if (!is_8bit(n.outputs[0]) || !scalar_constant(g, in(6), true) || (in(7) && !scalar_constant(g, in(7), false)))
    return false;
  const bool qa = in(1) != nullptr, qb = in(4) != nullptr;
  for (size_t i : {0, 3}) {
    if (!in(i + 1)) {
      if (!scalar_constant(g, in(i), true)) return false;
      continue;
    }
    const ir::Value* v = in(i);
    if (!is_8bit(v) || constant_of(g, v) || !v->type.shape.rank_known || v->type.shape.rank() > 5) return false;
    if (!scalar_constant(g, in(i + 1), true) || (in(i + 2) && !scalar_constant(g, in(i + 2), false))) return false;
  }
  if (!qa || !qb) return (op != "Div" || qa) && (qa ? in(0) : in(3))->type.dtype == n.outputs[0]->type.dtype;
  if (op == "Div") return false;
  const Shape& out = n.outputs[0]->type.shape;
  const bool a_full = broadcasts_into(out, in(0)->type.shape) && broadcasts_into(in(0)->type.shape, out);
  const bool b_full = broadcasts_into(out, in(3)->type.shape) && broadcasts_into(in(3)->type.shape, out);
  if (a_full && broadcasts_into(in(3)->type.shape, out)) return true;
  return op != "Sub" && b_full && broadcasts_into(in(0)->type.shape, out);
}

// A value with a dimension known to be 0.
bool zero_size(const ir::Value* v) {
  for (auto& d : v->type.shape.dims)
    if (d.known() && d.value == 0) return true;
  return false;
}

bool claims_node(const ir::Model& model, const ir::Node& n) {
  const ir::Graph& g = *model.graph;
  if (!op_allowed(n.op_type)) return false;
  // Every computed operand must have a known rank from 1 to 6 (oneDNN has no
  // 0-d memory; plain layouts are spelled up to 6-d here).
  // Nor a zero-size one: oneDNN divides by its dimensions (SIGFPE); the
  // reference kernels run it.
  auto rank_ok = [](const ir::Value* v) {
    return v->type.shape.rank_known && v->type.shape.rank() >= 1 && v->type.shape.rank() <= 6 && !zero_size(v);
  };
  for (auto* v : n.inputs)
    if (v && !constant_of(g, v) && !rank_ok(v)) return false;
  for (auto* v : n.outputs)
    if (v && !rank_ok(v)) return false;
  auto in = [&](size_t i) { return n.has_input(i) ? n.inputs[i] : nullptr; };
  const std::string& op = n.op_type;
  const bool duet = n.domain == "com.duet", onnx = n.domain.empty();
  if (n.outputs.empty() || !n.outputs[0]) return false;
  if (duet && (op == "QuantizedConv" || op == "QuantizedConvTranspose" || op == "QuantizedMatMul"))
    return claims_quantized(g, n);
  if (duet && op == "QuantizedBinary") return claims_quantized_binary(g, n);
  if (onnx && (op == "QuantizeLinear" || op == "DequantizeLinear")) return claims_qdq(g, n);
  // Resize, MaxPool and Concat also move 8-bit codes (passes::fuse_qdq).
  const bool moves_codes = onnx && (op == "Resize" || op == "MaxPool" || op == "Concat") && is_8bit(n.outputs[0]);
  if (!is_f32(n.outputs[0]) && !moves_codes) return false;
  if (!duet && !onnx) return false;
  if (((onnx && op == "Conv") || (duet && op == "FusedConv")) && !constant_of(g, in(1))) {
    // Weights computed at run time (training: they are graph inputs): plain 2-D
    // convolutions, bias constant or computed, no residual sum.
    if (!rank_is(in(0), 4) || !is_f32(in(0)) || !rank_is(in(1), 4) || !is_f32(in(1))) return false;
    if (n.attr_int("group", 1) != 1 || n.has_input(3)) return false;
    return !n.has_input(2) || constant_of(g, in(2)) || (rank_is(in(2), 1) && is_f32(in(2)));
  }
  if (duet && op == "ConvGrad") {  // training's convolution gradients (dX, dW, dB)
    if (n.attr_int("group", 1) != 1) return false;
    for (size_t i = 0; i < 3; ++i)
      if (!rank_is(in(i), 4) || !is_f32(in(i))) return false;
    for (auto* out : n.outputs)
      if (out && !is_f32(out)) return false;
    return true;
  }
  if ((onnx && op == "Conv") || (duet && op == "FusedConv")) {
    const Tensor* w = constant_of(g, in(1));
    if (!rank_is(in(0), 4) || !is_f32(in(0)) || !w || w->rank() != 4 || w->dtype() != DType::Float32) return false;
    if (n.has_input(2) && !constant_of(g, in(2))) return false;
    if (n.has_input(3) && !rank_is(in(3), 4)) return false;
    return true;
  }
  if (onnx && op == "ConvTranspose") {
    const Tensor* w = constant_of(g, in(1));
    if (!rank_is(in(0), 4) || !w || w->rank() != 4 || w->dtype() != DType::Float32) return false;
    if (n.has_input(2) && !constant_of(g, in(2))) return false;
    for (int64_t p : n.attr_ints("output_padding")) if (p != 0) return false;
    return !n.has_attr("output_shape") && n.attr_string("auto_pad", "NOTSET") == "NOTSET";
  }
  if (onnx && op == "MatMul" && !constant_of(g, in(1))) {
    // Both operands computed (attention scores): equal ranks 3 or 4, batch dims broadcast.
    const bool ok = (rank_is(in(0), 3) && rank_is(in(1), 3)) || (rank_is(in(0), 4) && rank_is(in(1), 4));
    return ok && is_f32(in(0)) && is_f32(in(1));
  }
  if ((onnx && op == "MatMul") || (duet && op == "FusedMatMul")) {
    const Tensor* b = constant_of(g, in(1));
    const bool a_ok = in(0) && in(0)->type.shape.rank_known && in(0)->type.shape.rank() >= 2 && in(0)->type.shape.rank() <= 6;
    if (!a_ok || !b || b->rank() != 2 || b->dtype() != DType::Float32) return false;
    if (n.has_input(2) && !constant_of(g, in(2))) return false;
    return !n.has_input(3) || (in(3)->type.shape.rank_known && in(3)->type.shape.rank() == in(0)->type.shape.rank());
  }
  if (onnx && op == "BatchNormalization") {
    if (!rank_is(in(0), 4) || n.attr_int("training_mode", 0) != 0) return false;
    for (size_t k = 1; k < n.outputs.size(); ++k) if (n.outputs[k]) return false;
    for (size_t i = 1; i < 5; ++i) {
      const Tensor* t = constant_of(g, in(i));
      if (!t || t->dtype() != DType::Float32) return false;
    }
    return true;
  }
  if (onnx && (op == "GlobalAveragePool" || op == "GlobalMaxPool")) return rank_is(in(0), 4);
  if (onnx && (op == "MaxPool" || op == "AveragePool")) {
    if (!rank_is(in(0), 4) || (n.outputs.size() > 1 && n.outputs[1])) return false;
    for (int64_t d : n.attr_ints("dilations")) if (d != 1) return false;
    if (op == "AveragePool" && n.attr_int("ceil_mode", 0)) return false;
    return n.attr_int("storage_order", 0) == 0;
  }
  if (onnx && op == "Resize") {
    if (!rank_is(in(0), 4) || n.attr_string("mode", "nearest") != "nearest") return false;
    if (n.attr_string("coordinate_transformation_mode", "half_pixel") != "asymmetric") return false;
    if (n.attr_string("nearest_mode", "round_prefer_floor") != "floor") return false;
    const Tensor* scales = constant_of(g, in(2));
    if (!scales || scales->numel() != 4 || n.has_input(3)) return false;
    for (int64_t i = 0; i < 4; ++i) {
      const double s = scales->get_double(i);
      if (s != std::floor(s) || s < 1 || (i < 2 && s != 1)) return false;
    }
    return true;
  }
  if (onnx && op == "Concat") {
    const size_t rank = n.inputs.size() && n.inputs[0] && n.inputs[0]->type.shape.rank_known ? n.inputs[0]->type.shape.rank() : 0;
    if (rank < 1 || rank > 5) return false;
    for (auto* v : n.inputs)
      if (!rank_is(v, rank) || v->type.dtype != n.outputs[0]->type.dtype || constant_of(g, v)) return false;
    return true;
  }
  // ReduceMean/ReduceSum only: oneDNN's max and min start from the lowest finite
  // value, so a row of -inf (a fully masked attention row) reads -FLT_MAX, not
  // -inf, and the NaN guards of expanded attention no longer fire (conformance).
  if (onnx && (op == "ReduceMean" || op == "ReduceSum")) {
    if (!is_f32(in(0)) || n.attr_int("noop_with_empty_axes", 0)) return false;
    return !n.has_input(1) || constant_of(g, in(1));
  }
  if (onnx && (op == "Add" || op == "Mul" || op == "Sub" || op == "Div")) {
    const ir::Value* out_v = n.outputs[0];
    if (n.inputs.size() != 2 || !out_v->type.shape.rank_known) return false;
    const size_t rank = out_v->type.shape.rank();
    if (rank < 1 || rank > 5) return false;
    // The first operand must have the output's shape; the second broadcasts into it.
    const auto& out = out_v->type.shape;
    const auto& a = n.inputs[0]->type.shape;
    const bool commutative = op == "Add" || op == "Mul";
    auto full = [&](const Shape& s) { return s.rank_known && s.rank() == rank && s.str() == out.str() && s.str().find('?') == std::string::npos; };
    auto fits = [&](const Shape& s) {
      if (!s.rank_known || s.rank() > rank) return false;
      const size_t off = rank - s.rank();
      for (size_t i = 0; i < s.rank(); ++i) {
        const Dim& d = s.dims[i];
        if (d.known() && d.value == 1) continue;
        if (!(d == out.dims[i + off])) return false;
      }
      return true;
    };
    const auto& b = n.inputs[1]->type.shape;
    if (!is_f32(n.inputs[0]) || !is_f32(n.inputs[1])) return false;
    if (full(a) && fits(b)) return true;
    if (commutative && full(b) && fits(a)) return true;  // Mul(scalar, x): the lowering swaps them
    // Add/Mul of values whose symbolic shapes do not tell which one broadcasts:
    // decided when the plan is built (one must have the output's shape).
    return commutative && a.rank_known && b.rank_known && a.rank() == rank && b.rank() <= rank;
  }
  if (op == "LayerNormalization" && (onnx || duet)) {
    const Tensor *scale = constant_of(g, in(1)), *bias = constant_of(g, in(2));
    if (!in(0) || !is_f32(in(0)) || !scale || scale->rank() != 1 || (n.has_input(2) && (!bias || bias->rank() != 1))) return false;
    for (size_t k = 1; k < n.outputs.size(); ++k) if (n.outputs[k]) return false;
    const int64_t rank = static_cast<int64_t>(in(0)->type.shape.rank());
    const int64_t axis = n.attr_int("axis", -1);
    return rank >= 2 && rank <= 5 && (axis == -1 || axis == rank - 1);
  }
  if (onnx && (op == "Reshape" || op == "Squeeze" || op == "Unsqueeze" || op == "Flatten")) {
    if (!in(0) || !is_f32(in(0))) return false;
    if (op == "Reshape") return constant_of(g, in(1)) && n.attr_int("allowzero", 0) == 0;
    if (op == "Squeeze" || op == "Unsqueeze") return !n.has_input(1) || constant_of(g, in(1));
    return true;
  }
  if (onnx && op == "Slice" && model.opset("") >= 10) {
    if (!in(0) || !is_f32(in(0))) return false;
    for (size_t i = 1; i < n.inputs.size(); ++i)
      if (n.inputs[i] && !constant_of(g, n.inputs[i])) return false;
    if (n.has_input(4))
      for (int64_t step : constant_of(g, in(4))->to_int_vector()) if (step != 1) return false;
    return true;
  }
  if (onnx && op == "Softmax") {
    if (!in(0) || !in(0)->type.shape.rank_known || !is_f32(in(0))) return false;
    const int64_t rank = static_cast<int64_t>(in(0)->type.shape.rank());
    const int64_t axis = n.attr_int("axis", model.opset("") >= 13 ? -1 : 1);
    return rank >= 1 && rank <= 5 && (axis == -1 || axis == rank - 1);
  }
  if (onnx && op == "Transpose") {
    if (!in(0) || !in(0)->type.shape.rank_known || !is_f32(in(0))) return false;
    const size_t rank = in(0)->type.shape.rank();
    return rank >= 2 && rank <= 6;
  }
  if (onnx) {
    auto post = ops::activation_post_op(n, model.opset_or_latest(""),
                                        [&](const ir::Value* v) { return constant_of(g, v); });
    return post && in(0) && in(0)->type.shape.rank_known && in(0)->type.shape.rank() >= 1 &&
           in(0)->type.shape.rank() <= 5;
  }
  return false;
}

// What the backend lowers for each op it knows: the reason a node of that op
// is refused once the general checks (domain, ranks, types) have passed.
const char* lowered_form(const std::string& op) {
  static const std::map<std::string, const char*> forms = {
      {"Conv", "takes a 4-D float32 input with constant 4-D float32 weights and a constant bias (computed weights: group 1, no residual)"},
      {"FusedConv", "takes a 4-D float32 input with constant 4-D float32 weights, a constant bias and a 4-D residual"},
      {"ConvTranspose", "takes a 4-D input, constant 4-D float32 weights and bias, no output_padding, output_shape or auto_pad"},
      {"MatMul", "takes a 2-D to 6-D float32 input times constant 2-D float32 weights, or two computed 3-D/4-D float32 operands"},
      {"FusedMatMul", "takes a 2-D to 6-D float32 input times constant 2-D float32 weights with a constant bias"},
      {"ConvGrad", "takes 4-D float32 operands and group 1"},
      {"BatchNormalization", "takes inference mode on a 4-D input with constant float32 statistics and one output"},
      {"GlobalAveragePool", "takes a 4-D input"},
      {"GlobalMaxPool", "takes a 4-D input"},
      {"MaxPool", "takes a 4-D input without dilations or indices output"},
      {"AveragePool", "takes a 4-D input without dilations or ceil_mode"},
      {"Resize", "takes 4-D nearest / asymmetric / floor resizing by constant integer scales >= 1 on H and W"},
      {"Concat", "takes computed 1-5-D inputs of the output's type"},
      {"Add", "takes float32 rank 1-5 with one operand of the output's shape and the other broadcasting into it"},
      {"Sub", "takes float32 rank 1-5 with the first operand of the output's shape and the second broadcasting into it"},
      {"Mul", "takes float32 rank 1-5 with one operand of the output's shape and the other broadcasting into it"},
      {"Div", "takes float32 rank 1-5 with the first operand of the output's shape and the second broadcasting into it"},
      {"LayerNormalization", "takes float32 over the last axis of a 2-5-D input with constant 1-D scale and bias, one output"},
      {"Reshape", "takes a float32 input with a constant shape (allowzero 0)"},
      {"Squeeze", "takes a float32 input with constant axes"},
      {"Unsqueeze", "takes a float32 input with constant axes"},
      {"Flatten", "takes a float32 input"},
      {"Slice", "takes float32 with constant starts, ends and axes, steps of 1, opset >= 10"},
      {"Softmax", "takes float32 of rank 1-5 over the last axis"},
      {"ReduceMean", "takes float32 with constant axes (noop_with_empty_axes 0) and an output of rank 1-6"},
      {"ReduceSum", "takes float32 with constant axes (noop_with_empty_axes 0) and an output of rank 1-6"},
      {"Transpose", "takes float32 of rank 2-6"},
      {"QuantizeLinear", "takes float32 <-> 8-bit codes with a constant scalar scale and zero point, no block_size"},
      {"DequantizeLinear", "takes float32 <-> 8-bit codes with a constant scalar scale and zero point, no block_size"},
      {"QuantizedConv", "takes 8-bit codes, constant int8 weights with per-tensor/per-channel float32 scales, scalar activation scales"},
      {"QuantizedConvTranspose", "takes 8-bit codes, constant int8 weights with float32 scales, group 1, no output_padding"},
      {"QuantizedMatMul", "takes 2-D/3-D 8-bit codes times constant int8 weights where the integer product is exact on this CPU"},
      {"QuantizedBinary", "takes Add/Sub/Mul/Div of 8-bit codes with scalar scales (Div by a constant only)"},
  };
  auto it = forms.find(op);
  return it == forms.end() ? nullptr : it->second;
}

}  // namespace

// claims_node with the reason for a refusal: the general checks first, then
// what the backend lowers for the node's op.
Claim claim_node(const ir::Model& model, const ir::Node& n) {
  if (claims_node(model, n)) return Claim::yes();
  if (!op_allowed(n.op_type)) return Claim::no(n.op_type + " is not in DUET_CPU_OPS");
  if (n.domain != "" && n.domain != "com.duet") return Claim::no("domain " + n.domain + " is not lowered");
  for (auto* v : n.inputs)
    if (v && !constant_of(*model.graph, v) &&
        !(v->type.shape.rank_known && v->type.shape.rank() >= 1 && v->type.shape.rank() <= 6))
      return Claim::no("input '" + v->name + "' has " +
                       (v->type.shape.rank_known ? "rank " + std::to_string(v->type.shape.rank()) : std::string("an unknown rank")) +
                       " (oneDNN takes ranks 1 to 6)");
  for (auto* v : n.inputs)
    if (v && !constant_of(*model.graph, v) && zero_size(v))
      return Claim::no("input '" + v->name + "' has no elements (a zero-size dimension)");
  for (auto* v : n.outputs)
    if (v && zero_size(v)) return Claim::no("output '" + v->name + "' has no elements (a zero-size dimension)");
  if (const char* form = lowered_form(n.op_type)) return Claim::no(std::string("the oneDNN backend ") + form);
  if (n.domain.empty() && ops::activation_post_op(n, model.opset_or_latest(""), [](const ir::Value*) { return nullptr; }))
    return Claim::no("an eltwise activation of float32 rank 1-5 only");
  return Claim::no("no oneDNN lowering for " + n.op_type);
}

}  // namespace duet::runtime::dnnl_detail
