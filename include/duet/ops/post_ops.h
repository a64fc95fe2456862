// Post-op chains of the fused ops (com.duet FusedConv, FusedMatMul, FusedGemm):
// pointwise functions applied, in order, to the result of the matrix op (and
// of the optional residual sum). The vocabulary is the set the CPU backend can
// run inside its primitives; the reference semantics are defined here, once.
//
// In a node the chain is two attributes: `activations` (strings, one name per
// step) and `activation_params` (floats, the params of every step, in order;
// each kind takes a fixed number, see kPostOpArity).
#pragma once
#include <functional>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "duet/ir/graph.h"

namespace duet::ops {

enum class PostOpKind {
  Relu,         // max(x, 0) when alpha = 0, else LeakyRelu(alpha)        params: alpha
  Clip,         // min(max(x, lo), hi)                                    params: lo, hi
  HardSigmoid,  // max(0, min(1, alpha x + beta))                         params: alpha, beta
  HardSwish,    // x · HardSigmoid(x; 1/6, 1/2)
  Sigmoid,
  Tanh,
  Silu,         // x · sigmoid(x)
  GeluErf,      // 0.5 x (1 + erf(x / √2))
  GeluTanh,     // 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
  Linear,       // scale · x + shift                                      params: scale, shift
};

struct PostOp {
  PostOpKind kind;
  float a = 0, b = 0;
  float apply(float x) const;
  std::string str() const;  // "Clip(0, 6)"
};

const char* post_op_name(PostOpKind kind);
int post_op_arity(PostOpKind kind);

// Reads / writes the chain of a fused node. Throws naming the node on an
// unknown name or a params count that does not match.
std::vector<PostOp> read_post_ops(const ir::Node& node);
void write_post_ops(ir::Node& node, const std::vector<PostOp>& ops);

// The single-input activation `node` (Relu, LeakyRelu, HardSigmoid, HardSwish,
// Sigmoid, Tanh, Gelu, Clip with constant bounds) as a post-op; nullopt for
// anything else. `constant` gives the value of a constant input (or null).
using ConstantFn = std::function<const Tensor*(const ir::Value*)>;
std::optional<PostOp> activation_post_op(const ir::Node& node, int64_t opset, const ConstantFn& constant);

// Applies the chain in place to n floats.
void apply_post_ops(const std::vector<PostOp>& ops, float* data, int64_t n);

// Requantization steps of the quantized fused ops (com.duet QuantizedConv,
// QuantizedMatMul, QuantizedBinary): after the node's own output codes q,
// each step computes, as the QDQ graph it came from did,
//   q = QuantizeLinear(DequantizeLinear(q, in_scale, in_zero) <op> c, out_scale, out_zero)
// with a scalar float constant c: op Add, Sub, Mul, Div (q <op> c) or RSub
// (c - q); every step is affine in q, and every code has the node's output
// type. In a node: `requantize_ops` (strings), `requantize_params` (floats c,
// in_scale, out_scale per step), `requantize_zero_points` (ints in_zero,
// out_zero per step).
struct RequantizeStep {
  std::string op;
  float c = 0, in_scale = 1, out_scale = 1;
  int64_t in_zero = 0, out_zero = 0;
  // The step's real result as alpha * q + beta, before QuantizeLinear.
  std::pair<double, double> affine() const;
};

std::vector<RequantizeStep> read_requantize_steps(const ir::Node& node);
void write_requantize_steps(ir::Node& node, const std::vector<RequantizeStep>& steps);

}  // namespace duet::ops
