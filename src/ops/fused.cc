// Fused ops (domain com.duet) that the graph optimizer forms: a matrix op,
// an optional residual sum and a post-op chain, in one node. Their reference
// kernels compose the reference kernels of the parts, so a fused graph gives
// the same values as the unfused one on the reference executor; the fast CPU
// backend runs them as single primitives.
//
//   FusedConv(X, W, B?, Z?)   = post_ops(Conv(X, W, B) + Z)     Conv's attributes
//   FusedMatMul(A, B, C?, Z?) = post_ops(MatMul(A, B) + C + Z)  C: bias broadcast along the last axis
//   LayerNormalization(X, scale, B)                               ONNX opset-17 semantics, any model opset
//
// The quantized forms are what a QDQ graph (QuantizeLinear/DequantizeLinear
// around float ops, as ONNX Runtime's quantize_static writes it) says around
// a Conv or MatMul, in one node; the CPU backend runs them as integer kernels
// with the requantization fused:
//
//   QuantizedConv(X, x_scale, x_zero_point?, W, w_scale, w_zero_point?, y_scale, y_zero_point?, B?)
//     = QuantizeLinear(post_ops(Conv(DequantizeLinear(X), DequantizeLinear(W, axis 0), B)), y_scale, y_zero_point)
//   QuantizedConvTranspose(...)  the same with ConvTranspose (W per tensor or along axis 1)
//   QuantizedMatMul(A, a_scale, a_zero_point?, B, b_scale, b_zero_point?, y_scale, y_zero_point?)
//     = QuantizeLinear(post_ops(MatMul(DequantizeLinear(A), DequantizeLinear(B, last axis))), y_scale, y_zero_point)
//
//   QuantizedBinary(A, a_scale?, a_zero_point?, B, b_scale?, b_zero_point?, y_scale, y_zero_point?)
//     = QuantizeLinear(DequantizeLinear(A) <operation> DequantizeLinear(B), y_scale, y_zero_point)
//     operation: Add, Sub, Mul or Div; an operand without a scale is float and taken as is
//
// Each may end with requantize steps (post_ops.h): affine QDQ steps on the
// output codes that the node absorbed from the QuantizedBinary nodes after it.
//
// X/A are per tensor; W/B per tensor or per output channel; B of the conv is
// float (the dequantized int32 bias of the QDQ graph, folded).
#include <cmath>
#include <sstream>

#include "duet/ops/kernel_util.h"
#include "duet/ops/post_ops.h"
#include "families.h"

namespace duet::ops {

namespace {

struct PostOpInfo {
  PostOpKind kind;
  const char* name;
  int arity;
};

constexpr PostOpInfo kPostOps[] = {
    {PostOpKind::Relu, "Relu", 1},       {PostOpKind::Clip, "Clip", 2},   {PostOpKind::HardSigmoid, "HardSigmoid", 2},
    {PostOpKind::HardSwish, "HardSwish", 0}, {PostOpKind::Sigmoid, "Sigmoid", 0}, {PostOpKind::Tanh, "Tanh", 0},
    {PostOpKind::Silu, "Silu", 0},       {PostOpKind::GeluErf, "GeluErf", 0}, {PostOpKind::GeluTanh, "GeluTanh", 0},
    {PostOpKind::Linear, "Linear", 2},
};

const PostOpInfo& info(PostOpKind k) {
  for (auto& i : kPostOps) if (i.kind == k) return i;
  fail("unknown post-op kind ", static_cast<int>(k));
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

const char* post_op_name(PostOpKind kind) { return info(kind).name; }
int post_op_arity(PostOpKind kind) { return info(kind).arity; }

float PostOp::apply(float x) const {
  switch (kind) {
    case PostOpKind::Relu: return x > 0 ? x : x * a;
    case PostOpKind::Clip: return std::fmin(std::fmax(x, a), b);
    case PostOpKind::HardSigmoid: return std::fmax(0.0f, std::fmin(1.0f, a * x + b));
    case PostOpKind::HardSwish: return x * std::fmax(0.0f, std::fmin(1.0f, x / 6.0f + 0.5f));
    case PostOpKind::Sigmoid: return sigmoid(x);
    case PostOpKind::Tanh: return std::tanh(x);
    case PostOpKind::Silu: return x * sigmoid(x);
    case PostOpKind::GeluErf: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case PostOpKind::GeluTanh:
      return 0.5f * x * (1.0f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case PostOpKind::Linear: return a * x + b;
  }
  return x;
}

std::string PostOp::str() const {
  std::ostringstream s;
  s << post_op_name(kind);
  const int n = post_op_arity(kind);
  if (n > 0) s << "(" << a;
  if (n > 1) s << ", " << b;
  if (n > 0) s << ")";
  return s.str();
}

std::vector<PostOp> read_post_ops(const ir::Node& node) {
  const auto names = node.attr_strings("activations");
  const auto params = node.attr_floats("activation_params");
  std::vector<PostOp> ops;
  size_t p = 0;
  for (auto& name : names) {
    const PostOpInfo* found = nullptr;
    for (auto& i : kPostOps) if (name == i.name) found = &i;
    if (!found) fail(node.label(), ": unknown activation '", name, "' in the post-op chain");
    PostOp op{found->kind};
    if (p + found->arity > params.size())
      fail(node.label(), ": activation_params has ", params.size(), " values, too few for the chain");
    if (found->arity > 0) op.a = params[p];
    if (found->arity > 1) op.b = params[p + 1];
    p += found->arity;
    ops.push_back(op);
  }
  if (p != params.size()) fail(node.label(), ": activation_params has ", params.size(), " values, the chain takes ", p);
  return ops;
}

void write_post_ops(ir::Node& node, const std::vector<PostOp>& ops) {
  std::erase_if(node.attributes, [](const ir::Attribute& a) {
    return a.name == "activations" || a.name == "activation_params";
  });
  if (ops.empty()) return;
  ir::Attribute names{.name = "activations", .type = ir::AttrType::Strings};
  ir::Attribute params{.name = "activation_params", .type = ir::AttrType::Floats};
  for (auto& op : ops) {
    names.strings.push_back(post_op_name(op.kind));
    const int n = post_op_arity(op.kind);
    if (n > 0) params.floats.push_back(op.a);
    if (n > 1) params.floats.push_back(op.b);
  }
  node.attributes.push_back(std::move(names));
  node.attributes.push_back(std::move(params));
}

void apply_post_ops(const std::vector<PostOp>& ops, float* data, int64_t n) {
  for (auto& op : ops) {
    for (int64_t i = 0; i < n; ++i) data[i] = op.apply(data[i]);
  }
}

std::pair<double, double> RequantizeStep::affine() const {
  const double s = in_scale, z = static_cast<double>(in_zero);
  if (op == "Add") return {s, c - s * z};
  if (op == "Sub") return {s, -s * z - c};
  if (op == "RSub") return {-s, c + s * z};
  if (op == "Mul") return {c * s, -c * s * z};
  if (op == "Div") return {s / c, -s * z / c};
  fail("unknown requantize step '", op, "'");
}

std::vector<RequantizeStep> read_requantize_steps(const ir::Node& node) {
  const auto ops = node.attr_strings("requantize_ops");
  const auto params = node.attr_floats("requantize_params");
  const auto zeros = node.attr_ints("requantize_zero_points");
  if (params.size() != 3 * ops.size() || zeros.size() != 2 * ops.size())
    fail(node.label(), ": ", ops.size(), " requantize steps need ", 3 * ops.size(), " params and ", 2 * ops.size(),
         " zero points, got ", params.size(), " and ", zeros.size());
  std::vector<RequantizeStep> steps;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i] != "Add" && ops[i] != "Sub" && ops[i] != "RSub" && ops[i] != "Mul" && ops[i] != "Div")
      fail(node.label(), ": unknown requantize step '", ops[i], "'");
    steps.push_back({ops[i], params[3 * i], params[3 * i + 1], params[3 * i + 2], zeros[2 * i], zeros[2 * i + 1]});
  }
  return steps;
}

void write_requantize_steps(ir::Node& node, const std::vector<RequantizeStep>& steps) {
  std::erase_if(node.attributes, [](const ir::Attribute& a) {
    return a.name == "requantize_ops" || a.name == "requantize_params" || a.name == "requantize_zero_points";
  });
  if (steps.empty()) return;
  ir::Attribute ops{.name = "requantize_ops", .type = ir::AttrType::Strings};
  ir::Attribute params{.name = "requantize_params", .type = ir::AttrType::Floats};
  ir::Attribute zeros{.name = "requantize_zero_points", .type = ir::AttrType::Ints};
  for (auto& step : steps) {
    ops.strings.push_back(step.op);
    params.floats.insert(params.floats.end(), {step.c, step.in_scale, step.out_scale});
    zeros.ints.insert(zeros.ints.end(), {step.in_zero, step.out_zero});
  }
  node.attributes.push_back(std::move(ops));
  node.attributes.push_back(std::move(params));
  node.attributes.push_back(std::move(zeros));
}

std::optional<PostOp> activation_post_op(const ir::Node& n, int64_t opset, const ConstantFn& constant) {
  if (!n.domain.empty()) return std::nullopt;
  const std::string& op = n.op_type;
  if (op == "Relu") return PostOp{PostOpKind::Relu, 0};
  if (op == "LeakyRelu") return PostOp{PostOpKind::Relu, n.attr_float("alpha", 0.01f)};
  if (op == "HardSigmoid")
    return PostOp{PostOpKind::HardSigmoid, n.attr_float("alpha", 0.2f), n.attr_float("beta", 0.5f)};
  if (op == "HardSwish") return PostOp{PostOpKind::HardSwish};
  if (op == "Sigmoid") return PostOp{PostOpKind::Sigmoid};
  if (op == "Tanh") return PostOp{PostOpKind::Tanh};
  if (op == "Gelu")
    return PostOp{n.attr_string("approximate", "none") == "tanh" ? PostOpKind::GeluTanh : PostOpKind::GeluErf};
  if (op != "Clip") return std::nullopt;
  float bounds[2] = {-INFINITY, INFINITY};
  for (int k = 0; k < 2; ++k) {
    if (opset < 11) {
      bounds[k] = n.attr_float(k ? "max" : "min", bounds[k]);
    } else if (n.has_input(k + 1)) {
      const Tensor* t = constant(n.inputs[k + 1]);
      if (!t || t->numel() != 1 || t->dtype() != DType::Float32) return std::nullopt;
      bounds[k] = t->data<float>()[0];
    }
  }
  return PostOp{PostOpKind::Clip, bounds[0], bounds[1]};
}

namespace {

// Runs the ONNX op `op_type` on the first `count` inputs of ctx with ctx's
// node (and so its attributes); returns its first output.
Tensor run_part(KernelContext& ctx, const char* op_type, size_t count) {
  const OpDef* def = Registry::builtin().find("", op_type);
  KernelContext part{ctx.node};
  part.opset = 21;
  for (size_t i = 0; i < count; ++i) part.inputs.push_back(ctx.optional_input(i));
  part.outputs.resize(1);
  part.allocator = ctx.allocator;
  part.parallel = ctx.parallel;
  def->kernel(part);
  return part.outputs[0];
}

void finish(KernelContext& ctx, Tensor y, size_t z_index) {
  if (y.dtype() != DType::Float32) unsupported(ctx.node.label(), ": fused ops take float32, got ", dtype_name(y.dtype()));
  float* out = y.data<float>();
  if (const Tensor* z = ctx.optional_input(z_index)) {
    if (z->dtype() != DType::Float32 || z->dims() != y.dims())
      fail(ctx.node.label(), ": the residual input Z is ", z->describe(), ", the result is ", y.describe());
    const float* zp = z->data<float>();
    for (int64_t i = 0; i < y.numel(); ++i) out[i] += zp[i];
  }
  apply_post_ops(read_post_ops(ctx.node), out, y.numel());
  ctx.set_output(0, std::move(y));
}

void fused_conv_kernel(KernelContext& ctx) { finish(ctx, run_part(ctx, "Conv", 3), 3); }

void fused_matmul_kernel(KernelContext& ctx) {
  Tensor y = run_part(ctx, "MatMul", 2);
  if (const Tensor* c = ctx.optional_input(2)) {
    const int64_t n = y.rank() ? y.dims().back() : 1;
    if (c->dtype() != DType::Float32 || c->numel() != n)
      fail(ctx.node.label(), ": bias C must be float32 with ", n, " elements (the last axis), got ", c->describe());
    float* out = y.data<float>();
    const float* cp = c->data<float>();
    for (int64_t i = 0; i < y.numel(); ++i) out[i] += cp[i % n];
  }
  finish(ctx, std::move(y), 3);
}

// A QuantizeLinear / DequantizeLinear node with `axis`, named after `owner`
// (errors then name the fused node).
ir::Node quantize_step(const ir::Node& owner, const char* op_type, int64_t axis) {
  ir::Node n;
  n.name = owner.name + "/" + op_type;
  n.op_type = op_type;
  n.attributes.push_back({.name = "axis", .type = ir::AttrType::Int, .i = axis});
  return n;
}

// Runs the ONNX op `op_type` as `node` (its attributes) on explicit inputs.
Tensor run_as(const KernelContext& ctx, const ir::Node& node, const char* op_type, std::vector<const Tensor*> inputs) {
  KernelContext part{node};
  part.opset = 21;
  part.inputs = std::move(inputs);
  part.outputs.resize(1);
  part.allocator = ctx.allocator;
  part.parallel = ctx.parallel;
  Registry::builtin().find("", op_type)->kernel(part);
  return part.outputs[0];
}

// A scalar of `type` holding v (zero points of the codes' type).
Tensor scalar_of(DType type, int64_t v) {
  Tensor t(type, {});
  if (type == DType::UInt8) t.data<uint8_t>()[0] = static_cast<uint8_t>(v);
  else if (type == DType::Int8) t.data<int8_t>()[0] = static_cast<int8_t>(v);
  else fail("requantize steps take 8-bit codes, got ", dtype_name(type));
  return t;
}

// The node's requantize steps on its output codes q, each through the ONNX kernels.
Tensor requantize(const KernelContext& ctx, Tensor q) {
  const ir::Node dq = quantize_step(ctx.node, "DequantizeLinear", 1);
  const ir::Node qn = quantize_step(ctx.node, "QuantizeLinear", 1);
  for (auto& step : read_requantize_steps(ctx.node)) {
    const Tensor in_scale = Tensor::scalar<float>(step.in_scale), out_scale = Tensor::scalar<float>(step.out_scale);
    const Tensor in_zero = scalar_of(q.dtype(), step.in_zero), out_zero = scalar_of(q.dtype(), step.out_zero);
    const Tensor c = Tensor::scalar<float>(step.c);
    const Tensor x = run_as(ctx, dq, "DequantizeLinear", {&q, &in_scale, &in_zero});
    const Tensor y = step.op == "RSub" ? run_as(ctx, ctx.node, "Sub", {&c, &x}) : run_as(ctx, ctx.node, step.op.c_str(), {&x, &c});
    q = run_as(ctx, qn, "QuantizeLinear", {&y, &out_scale, &out_zero});
  }
  return q;
}

// Input positions of the quantized ops (QLinearConv's order, bias last).
enum QuantizedInput : size_t { kX, kXScale, kXZero, kW, kWScale, kWZero, kYScale, kYZero, kBias };

// op_type: Conv, ConvTranspose or MatMul; the weights' output-channel axis
// is 0, 1 and the last.
void quantized_kernel(KernelContext& ctx, const std::string& op_type) {
  const Tensor& w = ctx.input(kW);
  const bool conv = op_type != "MatMul";
  const int64_t w_axis = op_type == "Conv" ? 0 : op_type == "ConvTranspose" ? 1 : static_cast<int64_t>(w.rank()) - 1;
  const ir::Node dq_x = quantize_step(ctx.node, "DequantizeLinear", 1);
  const ir::Node dq_w = quantize_step(ctx.node, "DequantizeLinear", w_axis);
  const ir::Node q_y = quantize_step(ctx.node, "QuantizeLinear", 1);
  const Tensor x = run_as(ctx, dq_x, "DequantizeLinear", {&ctx.input(kX), &ctx.input(kXScale), ctx.optional_input(kXZero)});
  const Tensor wf = run_as(ctx, dq_w, "DequantizeLinear", {&w, &ctx.input(kWScale), ctx.optional_input(kWZero)});
  Tensor y = conv ? run_as(ctx, ctx.node, op_type.c_str(), {&x, &wf, ctx.optional_input(kBias)})
                  : run_as(ctx, ctx.node, "MatMul", {&x, &wf});
  apply_post_ops(read_post_ops(ctx.node), y.data<float>(), y.numel());
  ctx.set_output(0, requantize(ctx, run_as(ctx, q_y, "QuantizeLinear", {&y, &ctx.input(kYScale), ctx.optional_input(kYZero)})));
}

void quantized_binary_kernel(KernelContext& ctx) {
  const std::string op = ctx.node.attr_string("operation", "");
  if (op != "Add" && op != "Sub" && op != "Mul" && op != "Div")
    fail(ctx.node.label(), ": operation must be Add, Sub, Mul or Div, got '", op, "'");
  const ir::Node dq = quantize_step(ctx.node, "DequantizeLinear", 1);
  const ir::Node q_y = quantize_step(ctx.node, "QuantizeLinear", 1);
  auto operand = [&](size_t i) {
    if (!ctx.has_input(i + 1)) return ctx.input(i);
    return run_as(ctx, dq, "DequantizeLinear", {&ctx.input(i), &ctx.input(i + 1), ctx.optional_input(i + 2)});
  };
  const Tensor a = operand(kX), b = operand(kW);
  const Tensor y = run_as(ctx, ctx.node, op.c_str(), {&a, &b});
  ctx.set_output(0, requantize(ctx, run_as(ctx, q_y, "QuantizeLinear", {&y, &ctx.input(kYScale), ctx.optional_input(kYZero)})));
}

// The float op's view of a quantized node: its data operands (X, W and, for
// the conv, the bias).
std::vector<size_t> float_positions(bool bias) {
  return bias ? std::vector<size_t>{kX, kW, kBias} : std::vector<size_t>{kX, kW};
}

template <typename T>
std::vector<T> float_operands(const std::vector<T>& all, bool bias) {
  std::vector<T> part;
  for (size_t i : float_positions(bias)) if (i < all.size()) part.push_back(all[i]);
  return part;
}

InferFn infer_quantized(const char* op_type, bool bias) {
  return [op_type, bias](InferContext& ctx) {
    InferContext part = ctx;
    part.inputs = float_operands(ctx.inputs, bias);
    part.values = float_operands(ctx.values, bias);
    for (auto& t : part.inputs) if (t.dtype != DType::Undefined) t.dtype = DType::Float32;
    auto out = Registry::builtin().find("", op_type)->infer(part);
    out[0].dtype = ctx.has_input(kYZero) ? ctx.inputs[kYZero].dtype : DType::UInt8;
    return out;
  };
}

CostFn cost_quantized(const char* op_type, bool bias) {
  return [op_type, bias](const CostContext& c) {
    CostContext part{c.node, float_operands(c.inputs, bias), c.outputs};
    Cost cost = Registry::builtin().find("", op_type)->cost(part);
    // Bytes back at the quantized node's input positions (scales and zero points: none).
    std::vector<double> bytes(c.inputs.size(), 0.0);
    size_t k = 0;
    for (size_t i : float_positions(bias))
      if (i < c.inputs.size() && k < cost.input_bytes.size()) bytes[i] = cost.input_bytes[k++];
    cost.input_bytes = std::move(bytes);
    return cost;
  };
}

InferFn infer_as(const char* op_type, size_t inputs) {
  return [op_type, inputs](InferContext& ctx) {
    InferContext part = ctx;
    part.inputs.resize(std::min(part.inputs.size(), inputs));
    part.values.resize(std::min(part.values.size(), inputs));
    return Registry::builtin().find("", op_type)->infer(part);
  };
}

CostFn cost_as(const char* op_type) {
  return [op_type](const CostContext& c) {
    Cost cost = Registry::builtin().find("", op_type)->cost(c);
    const double elements = c.outputs.empty() ? 0 : value_bytes(c.outputs[0]) / 4;
    cost.flops += elements * (read_post_ops(c.node).size() + (c.inputs.size() > 3 ? 1 : 0));
    return cost;
  };
}

}  // namespace

void register_fused(Registry& r) {
  // LayerNormalization recognized from its primitive-op expansion (models older
  // than opset 17 spell it out); same semantics as the ONNX op, last axis.
  r.add({.domain = "com.duet", .name = "LayerNormalization",
         .kernel = [](KernelContext& ctx) { Registry::builtin().find("", "LayerNormalization")->kernel(ctx); },
         .infer = [](InferContext& ctx) { return Registry::builtin().find("", "LayerNormalization")->infer(ctx); },
         .cost = [](const CostContext& c) { return Registry::builtin().find("", "LayerNormalization")->cost(c); }});
  r.add({.domain = "com.duet", .name = "FusedConv", .kernel = fused_conv_kernel, .infer = infer_as("Conv", 3),
         .cost = cost_as("Conv"), .matrix = conv_traits()});
  r.add({.domain = "com.duet", .name = "FusedMatMul", .kernel = fused_matmul_kernel, .infer = infer_as("MatMul", 2),
         .cost = cost_as("MatMul"), .matrix = matmul_traits()});
  r.add({.domain = "com.duet", .name = "QuantizedConv", .kernel = [](KernelContext& ctx) { quantized_kernel(ctx, "Conv"); },
         .infer = infer_quantized("Conv", true), .cost = cost_quantized("Conv", true)});
  r.add({.domain = "com.duet", .name = "QuantizedConvTranspose",
         .kernel = [](KernelContext& ctx) { quantized_kernel(ctx, "ConvTranspose"); },
         .infer = infer_quantized("ConvTranspose", true), .cost = cost_quantized("ConvTranspose", true)});
  r.add({.domain = "com.duet", .name = "QuantizedMatMul",
         .kernel = [](KernelContext& ctx) { quantized_kernel(ctx, "MatMul"); }, .infer = infer_quantized("MatMul", false),
         .cost = cost_quantized("MatMul", false)});
  r.add({.domain = "com.duet", .name = "QuantizedBinary", .kernel = quantized_binary_kernel,
         .infer = infer_quantized("Add", false), .cost = cost_quantized("Add", false)});
}

}  // namespace duet::ops
