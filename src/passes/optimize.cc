#include "duet/passes/optimize.h"

#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "duet/ops/post_ops.h"
#include "duet/ops/registry.h"
#include "duet/passes/shape_inference.h"
#include "duet/ir/edit.h"

namespace duet::passes {

namespace {

using ir::Graph;
using ir::Node;
using ir::Value;
using ops::PostOp;
using ops::PostOpKind;
using namespace ir::edit;

bool is(const Node* n, const char* op) { return n && n->domain.empty() && n->op_type == op; }

void ensure_opset(ir::Model& model, const std::string& domain) {
  if (model.opset(domain) == 0) model.opset_imports.push_back({domain, 1});
}

// Fusion: `producer` takes over the first output of `reader`, which dies.
void absorb(Node* producer, Node* reader, std::unordered_set<const Node*>& dead) {
  producer->outputs[0] = reader->outputs[0];
  reader->outputs[0]->producer = producer;
  dead.insert(reader);
}

// --- constants --------------------------------------------------------------

bool is_random(const Node& n) {
  static const std::unordered_set<std::string> random = {"RandomNormal", "RandomUniform", "RandomNormalLike",
                                                         "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"};
  return random.count(n.op_type) > 0;
}

bool has_subgraph(const Node& n) {
  for (auto& a : n.attributes) if (a.g || !a.graphs.empty()) return true;
  return false;
}

// --- conv weights ------------------------------------------------------------

// A float32 Conv (or FusedConv without Z or post-ops) whose weights and bias
// are constants this graph may rewrite.
bool foldable_conv(const Graph& g, const Node* n) {
  if (!n) return false;
  const bool fused = n->domain == "com.duet" && n->op_type == "FusedConv";
  if (!is(n, "Conv") && !fused) return false;
  if (fused && (n->has_input(3) || n->has_attr("activations"))) return false;
  const Tensor* w = constant(g, n->inputs.size() > 1 ? n->inputs[1] : nullptr);
  if (!w || w->dtype() != DType::Float32 || w->rank() < 3) return false;
  if (n->has_input(2)) {
    const Tensor* b = constant(g, n->inputs[2]);
    if (!b || b->dtype() != DType::Float32 || b->numel() != w->dim(0)) return false;
  }
  return true;
}

// Gives conv new weights y = scale[o]·conv(x) + shift[o].
void rescale_conv(Graph& g, Node* conv, const std::vector<double>& scale, const std::vector<double>& shift) {
  const Tensor& w = *constant(g, conv->inputs[1]);
  const int64_t cout = w.dim(0), per = w.numel() / cout;
  Tensor nw(DType::Float32, w.dims());
  Tensor nb(DType::Float32, {cout});
  const float* b = conv->has_input(2) ? constant(g, conv->inputs[2])->data<float>() : nullptr;
  for (int64_t o = 0; o < cout; ++o) {
    for (int64_t k = 0; k < per; ++k)
      nw.data<float>()[o * per + k] = static_cast<float>(w.data<float>()[o * per + k] * scale[o]);
    nb.data<float>()[o] = static_cast<float>((b ? b[o] : 0.0) * scale[o] + shift[o]);
  }
  const std::string base = conv->outputs[0]->name;
  conv->inputs[1] = add_initializer(g, base + "_w", std::move(nw));
  if (conv->inputs.size() < 3) conv->inputs.resize(3, nullptr);
  conv->inputs[2] = add_initializer(g, base + "_b", std::move(nb));
}

// Per-output-channel values of a constant that broadcasts against a conv
// output of rank `rank` along the channel axis only; empty when it does not.
std::vector<double> per_channel(const Tensor* c, size_t rank, int64_t channels) {
  if (!c || c->dtype() != DType::Float32 || c->rank() > rank) return {};
  Dims d(rank - c->rank(), 1);
  d.insert(d.end(), c->dims().begin(), c->dims().end());
  for (size_t i = 0; i < rank; ++i)
    if (d[i] != 1 && !(i == 1 && d[i] == channels)) return {};
  std::vector<double> v(channels);
  for (int64_t o = 0; o < channels; ++o) v[o] = c->data<float>()[c->numel() == 1 ? 0 : o];
  return v;
}

// --- post-ops ----------------------------------------------------------------

bool is_fused(const Node* n, const char* op) { return n && n->domain == "com.duet" && n->op_type == op; }

std::optional<PostOp> activation_post_op(const Graph& g, const Node* n, int64_t opset) {
  if (!n) return std::nullopt;
  return ops::activation_post_op(*n, opset, [&](const Value* v) { return constant(g, v); });
}

// n = a (op) c or c (op) a with a scalar constant c, as a Linear post-op.
std::optional<PostOp> affine_post_op(const Graph& g, const Node* n, const Value* a) {
  if (!n || !n->domain.empty() || n->inputs.size() != 2) return std::nullopt;
  const bool first = n->inputs[0] == a;
  auto c = scalar(g, n->inputs[first ? 1 : 0]);
  if (!c || n->inputs[first ? 0 : 1] != a) return std::nullopt;
  if (n->op_type == "Mul") return PostOp{PostOpKind::Linear, *c, 0};
  if (n->op_type == "Add") return PostOp{PostOpKind::Linear, 1, *c};
  if (n->op_type == "Sub") return first ? PostOp{PostOpKind::Linear, 1, -*c} : PostOp{PostOpKind::Linear, -1, *c};
  if (n->op_type == "Div" && first && *c != 0) return PostOp{PostOpKind::Linear, 1 / *c, 0};
  return std::nullopt;
}

bool is_scale_by(const Graph& g, const Node* n, const Value* a, double factor) {
  auto op = affine_post_op(g, n, a);
  return op && op->b == 0 && std::fabs(op->a - factor) < 1e-6 * std::fabs(factor);
}

// What a fusion step absorbs: the nodes and the value the producer takes over.
struct Match {
  std::vector<PostOp> post_ops;
  Value* residual = nullptr;
  std::vector<const Node*> absorbed;
  Value* result = nullptr;
};

// x·f(x) patterns over value a (two readers): x·Sigmoid(x), x·HardSigmoid(x)
// with the HardSwish constants, x·Clip(x+3, 0, 6)/6 in either order, and
// GELU's erf form (0.5·x·(1 + erf(x/√2))).
std::optional<Match> gated_match(const Graph& g, const Uses& uses, const Value* a, int64_t opset) {
  const auto& rs = uses.of(a);
  if (rs.size() != 2 || uses.pinned.count(a)) return std::nullopt;
  for (int first = 0; first < 2; ++first) {
    Node* gate = rs[first].first;
    Node* mul = rs[1 - first].first;
    if (!is(mul, "Mul") || mul->inputs.size() != 2 || !gate->outputs.size()) continue;
    Value* s = gate->outputs[0];
    auto mul_reads = [&](const Value* gated) {
      return (mul->inputs[0] == a && mul->inputs[1] == gated) || (mul->inputs[1] == a && mul->inputs[0] == gated);
    };
    if (is(gate, "Sigmoid") && uses.sole_reader(s) == mul && mul_reads(s))
      return Match{{PostOp{PostOpKind::Silu}}, nullptr, {gate, mul}, mul->outputs[0]};
    if (is(gate, "HardSigmoid") && uses.sole_reader(s) == mul && mul_reads(s) &&
        std::fabs(gate->attr_float("alpha", 0.2f) - 1.0f / 6) < 1e-6 && gate->attr_float("beta", 0.5f) == 0.5f)
      return Match{{PostOp{PostOpKind::HardSwish}}, nullptr, {gate, mul}, mul->outputs[0]};
    // GELU as PyTorch exports it: Div(a, √2) -> Erf -> Add 1 -> Mul(a, .) -> Mul 0.5,
    // or with a·0.5 taken first: Mul(a, 0.5) -> Mul(., Erf(a/√2) + 1).
    if (is_scale_by(g, gate, a, 0.70710678118654752)) {
      Node* erf = uses.sole_reader(s);
      Node* one = is(erf, "Erf") ? uses.sole_reader(erf->outputs[0]) : nullptr;
      auto plus = affine_post_op(g, one, erf ? erf->outputs[0] : nullptr);
      if (one && plus && plus->a == 1 && plus->b == 1) {
        Value* e1 = one->outputs[0];
        Node* last = uses.sole_reader(e1);
        if (last == mul && mul_reads(e1)) {
          Node* half = uses.sole_reader(mul->outputs[0]);
          if (is_scale_by(g, half, mul->outputs[0], 0.5))
            return Match{{PostOp{PostOpKind::GeluErf}}, nullptr, {gate, erf, one, mul, half}, half->outputs[0]};
        } else if (is(last, "Mul") && is_scale_by(g, mul, a, 0.5) && uses.sole_reader(mul->outputs[0]) == last &&
                   ((last->inputs[0] == mul->outputs[0] && last->inputs[1] == e1) ||
                    (last->inputs[1] == mul->outputs[0] && last->inputs[0] == e1))) {
          return Match{{PostOp{PostOpKind::GeluErf}}, nullptr, {gate, erf, one, mul, last}, last->outputs[0]};
        }
      }
    }
    // Add(a, 3) -> Clip(0, 6) -> [ /6 ] -> Mul(a, .) -> [ /6 ]
    auto shift = affine_post_op(g, gate, a);
    if (!shift || shift->a != 1 || shift->b != 3) continue;
    Node* clip = uses.sole_reader(s);
    auto bound = activation_post_op(g, clip, opset);
    if (!is(clip, "Clip") || !bound || bound->a != 0 || bound->b != 6) continue;
    Value* c = clip->outputs[0];
    Node* next = uses.sole_reader(c);
    if (next == mul && mul_reads(c)) {
      Node* div = uses.sole_reader(mul->outputs[0]);
      if (is_scale_by(g, div, mul->outputs[0], 1.0 / 6))
        return Match{{PostOp{PostOpKind::HardSwish}}, nullptr, {gate, clip, mul, div}, div->outputs[0]};
    } else if (next && is_scale_by(g, next, c, 1.0 / 6) && uses.sole_reader(next->outputs[0]) == mul &&
               mul_reads(next->outputs[0])) {
      return Match{{PostOp{PostOpKind::HardSwish}}, nullptr, {gate, clip, next, mul}, mul->outputs[0]};
    }
  }
  return std::nullopt;
}

bool same_shape(const ir::ValueType& a, const ir::ValueType& b) {
  if (!a.shape.rank_known || !b.shape.rank_known || a.shape.rank() != b.shape.rank()) return false;
  for (size_t i = 0; i < a.shape.rank(); ++i) {
    const Dim &x = a.shape.dims[i], &y = b.shape.dims[i];
    if (x.known() && y.known() && x.value == y.value) continue;
    if (!x.known() && !y.known() && !x.symbol.empty() && x.symbol == y.symbol) continue;
    return false;
  }
  return true;
}

std::optional<Match> next_match(const Graph& g, const Uses& uses, Node* producer, int64_t opset) {
  Value* a = producer->outputs[0];
  if (auto m = gated_match(g, uses, a, opset)) return m;
  Node* n = uses.sole_reader(a);
  if (!n || n->outputs.empty() || !n->outputs[0]) return std::nullopt;
  if (auto op = activation_post_op(g, n, opset)) return Match{{*op}, nullptr, {n}, n->outputs[0]};
  if (auto op = affine_post_op(g, n, a)) return Match{{*op}, nullptr, {n}, n->outputs[0]};
  // Residual sum: only before any post-op, and only between equal shapes.
  const size_t z_index = 3;
  if (is(n, "Add") && n->inputs.size() == 2 && !producer->has_attr("activations") && !producer->has_input(z_index)) {
    Value* z = n->inputs[0] == a ? n->inputs[1] : n->inputs[0];
    if (z != a && !constant(g, z) && a->type.dtype == DType::Float32 && same_shape(a->type, z->type) &&
        same_shape(a->type, n->outputs[0]->type))
      return Match{{}, z, {n}, n->outputs[0]};
  }
  return std::nullopt;
}

// --- QDQ ---------------------------------------------------------------------

bool is_8bit(DType t) { return t == DType::UInt8 || t == DType::Int8; }
bool is_8bit(const Tensor* t) { return t && is_8bit(t->dtype()); }

// A scalar constant: float32 when `scale`, else an 8-bit zero point.
bool scalar_constant(const Graph& g, const Value* v, bool scale) {
  const Tensor* t = constant(g, v);
  return t && t->numel() == 1 && (scale ? t->dtype() == DType::Float32 : is_8bit(t->dtype()));
}

// QuantizeLinear / DequantizeLinear per tensor between float32 and 8 bits:
// a constant float32 scale and a constant zero point (or none).
bool per_tensor_qdq(const Graph& g, const Node* n, const char* op) {
  if (!is(n, op) || n->inputs.size() < 2 || !n->inputs[0] || n->outputs.empty() || !n->outputs[0]) return false;
  if (n->attr_int("block_size", 0) != 0 || n->attr_int("precision", 0) != 0) return false;
  if (!scalar_constant(g, n->inputs[1], true) || (n->has_input(2) && !scalar_constant(g, n->inputs[2], false)))
    return false;
  const bool quantize = std::string(op) == "QuantizeLinear";
  const Value* coded = quantize ? n->outputs[0] : n->inputs[0];
  const Value* real = quantize ? n->inputs[0] : n->outputs[0];
  return is_8bit(coded->type.dtype) && real->type.dtype == DType::Float32;
}

// DequantizeLinear of constant int8 weights, symmetric (zero points all 0),
// per tensor or per slice along `out_axis` (the output channels).
bool weight_dequantize(const Graph& g, const Node* n, int64_t out_axis) {
  if (!is(n, "DequantizeLinear") || n->inputs.size() < 2 || n->attr_int("block_size", 0) != 0) return false;
  const Tensor* w = constant(g, n->inputs[0]);
  const Tensor* scale = constant(g, n->inputs[1]);
  if (!w || w->dtype() != DType::Int8 || w->rank() < 2 || !scale || scale->dtype() != DType::Float32) return false;
  if (scale->numel() != 1) {
    int64_t axis = n->attr_int("axis", 1);
    if (axis < 0) axis += static_cast<int64_t>(w->rank());
    if (axis != out_axis || scale->rank() != 1 || scale->numel() != w->dim(out_axis)) return false;
  }
  if (n->has_input(2)) {
    const Tensor* zero = constant(g, n->inputs[2]);
    if (!zero || zero->dtype() != DType::Int8) return false;
    for (int64_t i = 0; i < zero->numel(); ++i) if (zero->data<int8_t>()[i] != 0) return false;
  }
  return true;
}

Value* optional_input(const Node* n, size_t i) { return n->has_input(i) ? n->inputs[i] : nullptr; }

// DequantizeLinear of 8-bit constant weights read by a Conv, ConvTranspose or MatMul: a
// fuse_qdq pattern, which folding to float would destroy.
bool dequantizes_weights(const Graph& g, const Uses& uses, const Node* n) {
  if (!is(n, "DequantizeLinear") || n->inputs.empty() || !is_8bit(constant(g, n->inputs[0])) || !n->outputs[0]) return false;
  for (auto [reader, i] : uses.of(n->outputs[0]))
    if (i == 1 && (is(reader, "Conv") || is(reader, "ConvTranspose") || is(reader, "MatMul"))) return true;
  return false;
}

// Add/Sub/Mul/Div of dequantized values (one may be a scalar float constant)
// whose result is quantized: com.duet QuantizedBinary.
int fuse_qdq_binary(ir::Model& model) {
  Graph& g = *model.graph;
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  for (auto& node : g.nodes) {
    Node* p = node.get();
    const bool binary = is(p, "Add") || is(p, "Sub") || is(p, "Mul") || is(p, "Div");
    if (!binary || p->inputs.size() != 2 || p->outputs.empty() || !p->outputs[0]) continue;
    if (p->outputs[0]->type.dtype != DType::Float32) continue;
    Node* q = uses.sole_reader(p->outputs[0]);
    if (!per_tensor_qdq(g, q, "QuantizeLinear") || q->inputs[0] != p->outputs[0] || dead.count(q)) continue;
    std::vector<Value*> inputs;
    int quantized = 0;
    bool ok = true;
    for (Value* v : p->inputs) {
      Node* dq = v ? v->producer : nullptr;
      if (per_tensor_qdq(g, dq, "DequantizeLinear")) {
        inputs.insert(inputs.end(), {dq->inputs[0], dq->inputs[1], optional_input(dq, 2)});
        ++quantized;
      } else if (scalar_constant(g, v, true)) {
        inputs.insert(inputs.end(), {v, nullptr, nullptr});
      } else {
        ok = false;
      }
    }
    if (!ok || quantized == 0) continue;
    inputs.insert(inputs.end(), {q->inputs[1], optional_input(q, 2)});
    while (!inputs.empty() && !inputs.back()) inputs.pop_back();
    ensure_opset(model, "com.duet");
    p->attributes = {{.name = "operation", .type = ir::AttrType::String, .s = p->op_type}};
    p->op_type = "QuantizedBinary";
    p->domain = "com.duet";
    p->inputs = std::move(inputs);
    absorb(p, q, dead);
  }
  drop_nodes(g, dead);
  return static_cast<int>(dead.size());
}

// The value of a scalar constant as double (scales, zero points).
std::optional<double> scalar_value(const Graph& g, const Value* v) {
  const Tensor* t = constant(g, v);
  if (!t || t->numel() != 1) return std::nullopt;
  return t->get_double(0);
}

// Whether two per-tensor Q/DQ nodes share scale and zero point (by value).
bool same_quantization(const Graph& g, const Node* a, const Node* b) {
  auto zero = [&](const Node* n) { return n->has_input(2) ? scalar_value(g, n->inputs[2]) : std::optional<double>(0.0); };
  return scalar_value(g, a->inputs[1]) == scalar_value(g, b->inputs[1]) && zero(a) == zero(b) &&
         (a->has_input(2) ? a->inputs[2]->type.dtype : DType::UInt8) == (b->has_input(2) ? b->inputs[2]->type.dtype : DType::UInt8);
}

// Ops that only move or select values (Resize nearest, MaxPool, Concat)
// between DequantizeLinear and QuantizeLinear of one scale and zero point run
// on the codes: QuantizeLinear(DequantizeLinear(c)) gives c back, and
// dequantization is monotonic, so the results are the same codes.
int move_codes(ir::Model& model) {
  Graph& g = *model.graph;
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  for (auto& node : g.nodes) {
    Node* p = node.get();
    const bool moves = (is(p, "Resize") && p->attr_string("mode", "nearest") == "nearest") || is(p, "Concat") ||
                       (is(p, "MaxPool") && (p->outputs.size() < 2 || !p->outputs[1]));
    if (!moves || p->inputs.empty() || !p->outputs[0] || p->outputs[0]->type.dtype != DType::Float32) continue;
    Node* q = uses.sole_reader(p->outputs[0]);
    if (!per_tensor_qdq(g, q, "QuantizeLinear") || q->inputs[0] != p->outputs[0] || dead.count(q)) continue;
    const size_t data_inputs = is(p, "Concat") ? p->inputs.size() : 1;
    bool ok = true;
    for (size_t i = 0; i < data_inputs; ++i) {
      Node* dq = p->inputs[i] ? p->inputs[i]->producer : nullptr;
      ok &= per_tensor_qdq(g, dq, "DequantizeLinear") && same_quantization(g, dq, q);
    }
    if (!ok) continue;
    for (size_t i = 0; i < data_inputs; ++i) p->inputs[i] = p->inputs[i]->producer->inputs[0];
    absorb(p, q, dead);
  }
  drop_nodes(g, dead);
  return static_cast<int>(dead.size());
}

// QuantizedBinary `r` as a requantize step on the codes q: one quantized
// operand (q) and a scalar float constant, affine in q, codes of q's type.
std::optional<ops::RequantizeStep> requantize_step_of(const Graph& g, const Node* r, const Value* q) {
  if (!is_fused(r, "QuantizedBinary") || r->inputs.size() < 7 || !r->outputs[0]) return std::nullopt;
  const bool first = r->inputs[0] == q;
  const size_t qi = first ? 0 : 3, ci = first ? 3 : 0;
  if (r->inputs[qi] != q || !r->has_input(qi + 1) || r->has_input(ci + 1)) return std::nullopt;
  if (r->outputs[0]->type.dtype != q->type.dtype || !ops::read_requantize_steps(*r).empty()) return std::nullopt;
  std::string op = r->attr_string("operation", "");
  if (!first && op == "Sub") op = "RSub";
  if (!first && op == "Div") return std::nullopt;  // c / q is not affine
  auto zero = [&](size_t i) { return r->has_input(i) ? constant(g, r->inputs[i])->get_int(0) : 0; };
  return ops::RequantizeStep{op, *scalar(g, r->inputs[ci]), *scalar(g, r->inputs[qi + 1]), *scalar(g, r->inputs[6]),
                             zero(qi + 2), zero(7)};
}

// A quantized op whose codes only an affine QuantizedBinary reads takes it
// over as a requantize step (the CPU backend then runs both in one primitive).
int fuse_requantize_steps(ir::Model& model) {
  constexpr size_t kMaxSteps = 6;  // a bound on the attribute lists; the backend fuses the first step only
  Graph& g = *model.graph;
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  for (auto& node : g.nodes) {
    Node* p = node.get();
    const bool quantized = is_fused(p, "QuantizedConv") || is_fused(p, "QuantizedConvTranspose") ||
                           is_fused(p, "QuantizedMatMul") || is_fused(p, "QuantizedBinary");
    if (dead.count(p) || !quantized) continue;
    // Not after an activation: its clip beside the steps' clips would be two
    // eltwise post-ops of one kind with other parameters (see the backend).
    if (!ops::read_post_ops(*p).empty()) continue;
    auto steps = ops::read_requantize_steps(*p);
    while (steps.size() < kMaxSteps) {
      Node* r = uses.sole_reader(p->outputs[0]);
      auto step = r && !dead.count(r) ? requantize_step_of(g, r, p->outputs[0]) : std::nullopt;
      if (!step) break;
      steps.push_back(*step);
      absorb(p, r, dead);
    }
    ops::write_requantize_steps(*p, steps);
  }
  drop_nodes(g, dead);
  return static_cast<int>(dead.size());
}

}  // namespace

int fuse_qdq(ir::Model& model) {
  Graph& g = *model.graph;
  const int64_t opset = model.opset_or_latest("");
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  int fused = 0;
  for (auto& node : g.nodes) {
    Node* p = node.get();
    const bool deconv = is(p, "ConvTranspose");
    const bool conv = is(p, "Conv") || deconv;
    if ((!conv && !is(p, "MatMul")) || p->inputs.size() < 2 || !p->inputs[0] || !p->inputs[1] || !p->outputs[0]) continue;
    Node* dq_x = p->inputs[0]->producer;
    Node* dq_w = p->inputs[1]->producer;
    if (!per_tensor_qdq(g, dq_x, "DequantizeLinear") || !dq_w) continue;
    const Tensor* w = constant(g, dq_w->inputs[0]);
    // Output channels: axis 0 of Conv weights, 1 of ConvTranspose (group 1) and MatMul's B.
    if (!w || (!conv && w->rank() != 2) || (deconv && p->attr_int("group", 1) != 1) ||
        !weight_dequantize(g, dq_w, conv && !deconv ? 0 : 1))
      continue;
    Value* bias = conv ? optional_input(p, 2) : nullptr;
    if (bias) {
      const Tensor* b = constant(g, bias);
      if (!b || b->dtype() != DType::Float32 || b->numel() != w->dim(deconv ? 1 : 0)) continue;
    }
    // Conv/MatMul -> [one activation] -> QuantizeLinear, each the sole reader of the last.
    Value* y = p->outputs[0];
    if (y->type.dtype != DType::Float32) continue;
    std::vector<PostOp> chain;
    std::vector<const Node*> absorbed;
    Node* next = uses.sole_reader(y);
    if (auto op = activation_post_op(g, next, opset); op && next->inputs[0] == y && next->outputs[0]) {
      chain.push_back(*op);
      absorbed.push_back(next);
      y = next->outputs[0];
      next = uses.sole_reader(y);
    }
    if (!per_tensor_qdq(g, next, "QuantizeLinear") || next->inputs[0] != y) continue;
    absorbed.push_back(next);
    bool clash = dead.count(p) > 0;
    for (auto* n : absorbed) clash |= dead.count(n) > 0;
    if (clash) continue;
    ensure_opset(model, "com.duet");
    p->inputs = {dq_x->inputs[0], dq_x->inputs[1], optional_input(dq_x, 2), dq_w->inputs[0], dq_w->inputs[1],
                 optional_input(dq_w, 2), next->inputs[1], optional_input(next, 2), bias};
    while (!p->inputs.empty() && !p->inputs.back()) p->inputs.pop_back();
    p->op_type = deconv ? "QuantizedConvTranspose" : conv ? "QuantizedConv" : "QuantizedMatMul";
    p->domain = "com.duet";
    ops::write_post_ops(*p, chain);
    absorb(p, next, dead);
    for (auto* n : absorbed) dead.insert(n);
    ++fused;
  }
  drop_nodes(g, dead);
  fused += fuse_qdq_binary(model);
  fused += move_codes(model);
  remove_dead(model);  // the DequantizeLinear nodes the fused ones no longer need still read their codes
  return fused + fuse_requantize_steps(model);
}

int fold_constants(ir::Model& model, int64_t limit, bool keep_integer_dequantize) {
  Graph& g = *model.graph;
  const ops::Registry& reg = ops::Registry::builtin();
  const Uses uses(g);
  std::unordered_set<const Node*> dead;
  for (auto& node : g.nodes) {
    Node& n = *node;
    if (is_random(n) || has_subgraph(n) || (n.op_type == "Constant" && n.has_attr("sparse_value"))) continue;
    if (keep_integer_dequantize && dequantizes_weights(g, uses, &n)) continue;
    bool all_constant = true;
    std::vector<const Tensor*> inputs;
    for (auto* in : n.inputs) {
      const Tensor* t = in ? constant(g, in) : nullptr;
      if (in && !t) all_constant = false;
      inputs.push_back(t);
    }
    if (!all_constant || (n.inputs.empty() && n.op_type != "Constant")) continue;
    const ops::OpDef* def = reg.find(n.domain, n.op_type);
    if (!def) continue;
    ops::KernelContext ctx{n};
    ctx.opset = model.opset(n.domain);
    if (ctx.opset == 0 && n.domain.empty()) ctx.opset = ir::kMaxOnnxOpset;
    ctx.inputs = inputs;
    ctx.outputs.resize(n.outputs.size());
    try {
      def->kernel(ctx);
    } catch (const Error&) {
      continue;  // leave it to run time, where the error names the node
    }
    bool ok = true;
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      const Tensor& t = ctx.outputs[k];
      if (!n.outputs[k]) continue;
      if (!t.defined() || t.is_sequence() || t.is_none() || t.numel() > limit) ok = false;
    }
    if (!ok) continue;
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      Value* v = n.outputs[k];
      if (!v) continue;
      v->producer = nullptr;
      v->producer_output = -1;
      v->type.dtype = ctx.outputs[k].dtype();
      v->type.shape = Shape::from(ctx.outputs[k].dims());
      g.initializers[v->name] = ctx.outputs[k];
      g.initializer_order.push_back(v->name);
    }
    dead.insert(&n);
  }
  drop_nodes(g, dead);
  return static_cast<int>(dead.size());
}

int eliminate_noops(ir::Model& model) {
  Graph& g = *model.graph;
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  for (auto& node : g.nodes) {
    Node& n = *node;
    if (n.inputs.empty() || !n.inputs[0] || n.outputs.empty() || !n.outputs[0]) continue;
    bool noop = false;
    if (is(&n, "Identity")) noop = true;
    if (is(&n, "Dropout")) {
      const bool mask_used = n.outputs.size() > 1 && n.outputs[1] && (uses.count(n.outputs[1]) || uses.pinned.count(n.outputs[1]));
      const bool training = n.has_input(2) && (!constant(g, n.inputs[2]) || constant(g, n.inputs[2])->get_int(0) != 0);
      const bool legacy_training = model.opset("") < 7 && n.attr_int("is_test", 0) == 0;
      noop = !mask_used && !training && !legacy_training;
    }
    if (is(&n, "Cast") && n.inputs[0]->type.dtype != DType::Undefined &&
        static_cast<int64_t>(n.inputs[0]->type.dtype) == n.attr_int("to", -1))
      noop = true;
    if (is(&n, "Reshape") && n.inputs[0]->producer && is(n.inputs[0]->producer, "Reshape") &&
        uses.sole_reader(n.inputs[0]) == &n) {
      // Reshape(Reshape(x, s1), s2) == Reshape(x, s2) unless s2 copies dims (0) from the middle shape.
      const Tensor* s2 = constant(g, n.has_input(1) ? n.inputs[1] : nullptr);
      bool copies = !s2;
      if (s2) for (int64_t v : s2->to_int_vector()) copies |= v == 0;
      if (!copies) {
        Node* inner = n.inputs[0]->producer;
        n.inputs[0] = inner->inputs[0];
        dead.insert(inner);
        continue;
      }
    }
    if (noop && replace_uses(g, uses, n.outputs[0], n.inputs[0])) dead.insert(&n);
  }
  drop_nodes(g, dead);
  return static_cast<int>(dead.size());
}

int fold_batchnorm(ir::Model& model) {
  Graph& g = *model.graph;
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  for (auto& node : g.nodes) {
    Node* conv = node.get();
    if (dead.count(conv) || !foldable_conv(g, conv)) continue;
    Node* bn = uses.sole_reader(conv->outputs[0]);
    if (!is(bn, "BatchNormalization") || bn->inputs.size() < 5 || bn->attr_int("training_mode", 0) != 0) continue;
    bool extra_outputs = false;
    for (size_t k = 1; k < bn->outputs.size(); ++k)
      extra_outputs |= bn->outputs[k] && (uses.count(bn->outputs[k]) || uses.pinned.count(bn->outputs[k]));
    if (extra_outputs) continue;
    const int64_t cout = constant(g, conv->inputs[1])->dim(0);
    const Tensor *scale = constant(g, bn->inputs[1]), *bias = constant(g, bn->inputs[2]),
                 *mean = constant(g, bn->inputs[3]), *var = constant(g, bn->inputs[4]);
    bool ok = true;
    for (const Tensor* t : {scale, bias, mean, var}) ok &= t && t->dtype() == DType::Float32 && t->numel() == cout;
    if (!ok) continue;
    const double eps = bn->attr_float("epsilon", 1e-5f);
    std::vector<double> s(cout), shift(cout);
    for (int64_t o = 0; o < cout; ++o) {
      s[o] = scale->data<float>()[o] / std::sqrt(static_cast<double>(var->data<float>()[o]) + eps);
      shift[o] = bias->data<float>()[o] - mean->data<float>()[o] * s[o];
    }
    rescale_conv(g, conv, s, shift);
    absorb(conv, bn, dead);
  }
  drop_nodes(g, dead);
  return static_cast<int>(dead.size());
}

int fold_conv_affine(ir::Model& model) {
  int total = 0;
  for (;;) {
    Graph& g = *model.graph;
    Uses uses(g);
    std::unordered_set<const Node*> dead;
    for (auto& node : g.nodes) {
      Node* conv = node.get();
      if (dead.count(conv) || !foldable_conv(g, conv)) continue;
      Value* a = conv->outputs[0];
      Node* n = uses.sole_reader(a);
      if (!n || !n->domain.empty() || n->inputs.size() != 2 || dead.count(n)) continue;
      const bool first = n->inputs[0] == a;
      const Value* other = n->inputs[first ? 1 : 0];
      if (other == a) continue;
      const Tensor& w = *constant(g, conv->inputs[1]);
      const int64_t cout = w.dim(0);
      auto c = per_channel(constant(g, other), w.rank(), cout);
      if (c.empty() || !n->outputs[0]) continue;
      std::vector<double> scale(cout, 1.0), shift(cout, 0.0);
      if (n->op_type == "Mul") scale = c;
      else if (n->op_type == "Add") shift = c;
      else if (n->op_type == "Sub" && first) for (int64_t o = 0; o < cout; ++o) shift[o] = -c[o];
      else if (n->op_type == "Div" && first) for (int64_t o = 0; o < cout; ++o) scale[o] = 1.0 / c[o];
      else continue;
      rescale_conv(g, conv, scale, shift);
      absorb(conv, n, dead);
    }
    drop_nodes(g, dead);
    total += static_cast<int>(dead.size());
    if (dead.empty()) return total;
  }
}

int fuse_matmul_bias(ir::Model& model) {
  Graph& g = *model.graph;
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  for (auto& node : g.nodes) {
    Node* mm = node.get();
    if (!is(mm, "MatMul") || mm->inputs.size() != 2) continue;
    const Tensor* b = constant(g, mm->inputs[1]);
    if (!b || b->dtype() != DType::Float32 || b->rank() != 2) continue;
    Value* a = mm->outputs[0];
    Node* add = uses.sole_reader(a);
    if (!is(add, "Add") || add->inputs.size() != 2) continue;
    Value* other = add->inputs[0] == a ? add->inputs[1] : add->inputs[0];
    const Tensor* c = constant(g, other);
    const int64_t n = b->dim(1);
    if (!c || c->dtype() != DType::Float32 || c->numel() != n || (c->rank() && c->dims().back() != n)) continue;
    if (!a->type.shape.rank_known || c->rank() > a->type.shape.rank()) continue;
    ensure_opset(model, "com.duet");
    mm->op_type = "FusedMatMul";
    mm->domain = "com.duet";
    mm->inputs.push_back(add_initializer(g, a->name + "_bias", c->reshaped({n})));
    absorb(mm, add, dead);
  }
  drop_nodes(g, dead);
  return static_cast<int>(dead.size());
}

// Gemm(A, constant B, constant bias) with alpha 1, beta 1 and A untransposed
// is MatMul by B (transposed once here when transB) plus a bias along the last
// axis: com.duet FusedMatMul, which the cpu backend runs and post-op fusion
// extends (classifier heads: Gemm -> Relu -> Gemm).
int gemm_to_matmul(ir::Model& model) {
  Graph& g = *model.graph;
  int rewritten = 0;
  for (auto& node : g.nodes) {
    Node* n = node.get();
    if (!is(n, "Gemm") || n->inputs.size() < 2 || n->outputs.empty() || !n->outputs[0]) continue;
    if (n->attr_float("alpha", 1.0f) != 1.0f || n->attr_int("transA", 0) != 0) continue;
    const Tensor* b = constant(g, n->inputs[1]);
    if (!b || b->dtype() != DType::Float32 || b->rank() != 2) continue;
    const bool tb = n->attr_int("transB", 0) != 0;
    const int64_t k = tb ? b->dim(1) : b->dim(0), cols = tb ? b->dim(0) : b->dim(1);
    const Tensor* c = n->inputs.size() > 2 && n->inputs[2] ? constant(g, n->inputs[2]) : nullptr;
    if (n->inputs.size() > 2 && n->inputs[2]) {
      if (!c || c->dtype() != DType::Float32 || n->attr_float("beta", 1.0f) != 1.0f) continue;
      if (c->numel() != cols || (c->rank() == 2 && c->dim(0) != 1)) continue;  // a bias row, not a full C
    }
    Tensor w = *b;
    if (tb) {
      w = Tensor(DType::Float32, {k, cols});
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < cols; ++j) w.data<float>()[i * cols + j] = b->data<float>()[j * k + i];
    }
    std::vector<Value*> inputs = {n->inputs[0], add_initializer(g, n->outputs[0]->name + "_weights", w)};
    if (c) {
      ensure_opset(model, "com.duet");
      inputs.push_back(add_initializer(g, n->outputs[0]->name + "_bias", c->reshaped({cols})));
      n->op_type = "FusedMatMul";
      n->domain = "com.duet";
    } else {
      n->op_type = "MatMul";
    }
    n->inputs = inputs;
    n->attributes.clear();
    ++rewritten;
  }
  return rewritten;
}

int fuse_post_ops(ir::Model& model) {
  int total = 0;
  const int64_t opset = model.opset_or_latest("");
  for (;;) {
    Graph& g = *model.graph;
    Uses uses(g);
    std::unordered_set<const Node*> dead;
    bool residual_added = false;
    for (auto& node : g.nodes) {
      Node* p = node.get();
      if (dead.count(p) || p->outputs.empty() || !p->outputs[0]) continue;
      if (p->outputs[0]->type.dtype != DType::Float32) continue;
      const bool conv = is(p, "Conv") || is_fused(p, "FusedConv");
      if (!conv && !is(p, "MatMul") && !is_fused(p, "FusedMatMul")) continue;
      auto m = next_match(g, uses, p, opset);
      if (!m) continue;
      bool clash = false;
      for (auto* n : m->absorbed) clash |= dead.count(n) > 0;
      if (clash) continue;
      ensure_opset(model, "com.duet");
      if (p->domain.empty()) {
        p->op_type = conv ? "FusedConv" : "FusedMatMul";
        p->domain = "com.duet";
      }
      const size_t z_index = 3;
      if (m->residual) {
        p->inputs.resize(z_index + 1, nullptr);
        p->inputs[z_index] = m->residual;
        residual_added = true;
      }
      auto chain = ops::read_post_ops(*p);
      for (auto& op : m->post_ops) {
        // Consecutive affine steps compose into one.
        if (op.kind == PostOpKind::Linear && !chain.empty() && chain.back().kind == PostOpKind::Linear) {
          PostOp& last = chain.back();
          last = PostOp{PostOpKind::Linear, op.a * last.a, op.a * last.b + op.b};
        } else {
          chain.push_back(op);
        }
      }
      ops::write_post_ops(*p, chain);
      p->outputs[0] = m->result;
      m->result->producer = p;
      for (auto* n : m->absorbed) dead.insert(n);
    }
    drop_nodes(g, dead);
    if (residual_added) g.topological_sort();
    total += static_cast<int>(dead.size());
    if (dead.empty()) return total;
  }
}

namespace {

// ReduceMean over the last axis only, keeping dims.
bool is_last_axis_mean(const Graph& g, const Node* n, int64_t opset) {
  if (!is(n, "ReduceMean") || n->attr_int("keepdims", 1) != 1) return false;
  std::vector<int64_t> axes = n->attr_ints("axes");
  if (n->inputs.size() > 1 && n->inputs[1]) {
    const Tensor* t = constant(g, n->inputs[1]);
    if (!t) return false;
    axes = t->to_int_vector();
  }
  const auto& shape = n->inputs[0]->type.shape;
  return axes.size() == 1 && (axes[0] == -1 || (shape.rank_known && axes[0] == static_cast<int64_t>(shape.rank()) - 1));
}

}  // namespace

int fuse_layer_norm(ir::Model& model) {
  Graph& g = *model.graph;
  const int64_t opset = model.opset_or_latest("");
  Uses uses(g);
  std::unordered_set<const Node*> dead;
  struct Found {
    Value *x, *gamma, *beta, *y;
    float eps;
    std::string name;
  };
  std::vector<Found> found;  // nodes are added after the scan (adding invalidates its iterators)
  for (auto& node : g.nodes) {
    Node* mean = node.get();
    if (dead.count(mean) || !is_last_axis_mean(g, mean, opset)) continue;
    Value* x = mean->inputs[0];
    Node* sub = uses.sole_reader(mean->outputs[0]);
    if (!is(sub, "Sub") || sub->inputs[0] != x || sub->inputs[1] != mean->outputs[0]) continue;
    Value* d = sub->outputs[0];
    // d is read by Pow and by Div.
    const auto& readers = uses.of(d);
    if (readers.size() != 2 || uses.pinned.count(d)) continue;
    Node *pow = nullptr, *div = nullptr;
    for (auto [r, i] : readers) {
      if (is(r, "Pow") && i == 0) pow = r;
      if (is(r, "Div") && i == 0) div = r;
    }
    if (!pow || !div || scalar(g, pow->inputs[1]) != 2.0f) continue;
    Node* var = uses.sole_reader(pow->outputs[0]);
    if (!is_last_axis_mean(g, var, opset)) continue;
    Node* add = uses.sole_reader(var->outputs[0]);
    auto eps = add && is(add, "Add") ? scalar(g, add->inputs[1]) : std::nullopt;
    if (!eps) continue;
    Node* sqrt = uses.sole_reader(add->outputs[0]);
    if (!is(sqrt, "Sqrt") || uses.sole_reader(sqrt->outputs[0]) != div || div->inputs[1] != sqrt->outputs[0]) continue;
    Node* mul = uses.sole_reader(div->outputs[0]);
    const Tensor* gamma = mul && is(mul, "Mul") ? constant(g, mul->inputs[1]) : nullptr;
    if (!gamma || gamma->rank() != 1) continue;
    Node* shift = uses.sole_reader(mul->outputs[0]);
    const Tensor* beta = shift && is(shift, "Add") ? constant(g, shift->inputs[1]) : nullptr;
    if (!beta || beta->rank() != 1 || beta->numel() != gamma->numel()) continue;
    found.push_back({x, mul->inputs[1], shift->inputs[1], shift->outputs[0], *eps, mean->name + "_layernorm"});
    for (const Node* n : {static_cast<const Node*>(mean), static_cast<const Node*>(sub), static_cast<const Node*>(pow),
                          static_cast<const Node*>(var), static_cast<const Node*>(add), static_cast<const Node*>(sqrt),
                          static_cast<const Node*>(div), static_cast<const Node*>(mul), static_cast<const Node*>(shift)})
      dead.insert(n);
  }
  drop_nodes(g, dead);
  for (auto& f : found) {
    ensure_opset(model, "com.duet");
    Node* ln = g.add_node("LayerNormalization", {f.x, f.gamma, f.beta}, {f.y}, f.name, "com.duet");
    ln->attributes.push_back({.name = "axis", .type = ir::AttrType::Int, .i = -1});
    ln->attributes.push_back({.name = "epsilon", .type = ir::AttrType::Float, .f = f.eps});
    f.y->producer = ln;
  }
  if (!found.empty()) g.topological_sort();
  return static_cast<int>(found.size());
}

int remove_dead(ir::Model& model) {
  Graph& g = *model.graph;
  int removed = 0;
  for (;;) {
    Uses uses(g);
    std::unordered_set<const Node*> dead;
    for (auto& n : g.nodes) {
      bool used = false;
      for (auto* out : n->outputs) used |= out && (uses.count(out) || uses.pinned.count(out));
      if (!used) dead.insert(n.get());
    }
    drop_nodes(g, dead);
    removed += static_cast<int>(dead.size());
    if (dead.empty()) break;
  }
  Uses uses(g);
  std::vector<std::string> unused;
  for (auto& [name, t] : g.initializers) {
    const Value* v = g.find_value(name);
    if (!v || (!uses.count(v) && !uses.pinned.count(v) && !is_graph_input(g, v))) unused.push_back(name);
  }
  for (auto& name : unused) g.initializers.erase(name);
  std::erase_if(g.initializer_order, [&](const std::string& n) { return !g.initializers.count(n); });
  return removed + static_cast<int>(unused.size());
}

OptimizeReport optimize(ir::Model& model, const OptimizeOptions& options) {
  OptimizeReport report;
  {
    // Shape subgraphs that static shapes resolve become constants.
    Graph& g = *model.graph;
    auto known = infer_shapes(model);
    const Uses uses(g);
    int folded = 0;
    for (auto& [name, t] : known.constants) {
      Value* v = g.find_value(name);
      if (!v || !v->producer || v->producer->op_type == "Constant" || g.initializers.count(name) || t.is_sequence() || t.is_none()) continue;
      // Dequantized weights stay QDQ patterns until fuse_qdq has seen them.
      if (options.fuse && dequantizes_weights(g, uses, v->producer)) continue;
      // The producer keeps a fresh, unread output; remove_dead drops it.
      Node* p = v->producer;
      for (auto*& out : p->outputs)
        if (out == v) {
          out = g.value(fresh_name(g, name + "_folded"));
          out->producer = p;
        }
      v->producer = nullptr;
      g.initializers[name] = t;
      g.initializer_order.push_back(name);
      ++folded;
    }
    if (folded) report["fold_shapes"] = folded;
  }
  // DequantizeLinear of 8-bit weights stays a node until fuse_qdq has seen
  // the QDQ patterns; what it leaves unfused is folded to float afterwards.
  if (options.fold_constants)
    report["fold_constants"] = fold_constants(model, options.fold_limit_elements, options.fuse);
  if (options.eliminate_noops) report["eliminate_noops"] = eliminate_noops(model);
  if (options.fuse) {
    report["fuse_qdq"] = fuse_qdq(model);
    if (options.fold_constants) report["fold_constants"] += fold_constants(model, options.fold_limit_elements);
  }
  if (options.fold_batchnorm) report["fold_batchnorm"] = fold_batchnorm(model);
  if (options.fold_affine) report["fold_conv_affine"] = fold_conv_affine(model);
  if (options.fuse) {
    infer_shapes(model);
    report["gemm_to_matmul"] = gemm_to_matmul(model);
    report["fuse_matmul_bias"] = fuse_matmul_bias(model);
    report["fuse_post_ops"] = fuse_post_ops(model);
    report["fuse_layer_norm"] = fuse_layer_norm(model);
  }
  report["remove_dead"] = remove_dead(model);
  model.graph->topological_sort();
  ir::verify(*model.graph);
  infer_shapes(model);
  return report;
}

}  // namespace duet::passes
