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

}  // namespace duet::ops
