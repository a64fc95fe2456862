// Graph optimization passes. Each rewrites model.graph in place, keeps graph
// input/output names, and leaves a graph whose reference execution equals the
// original's within float rounding (folds change the order of float ops).
//
//   fold_constants     Constant nodes and nodes whose inputs are all constant
//                      become initializers (random ops excluded; with
//                      keep_integer_dequantize, DequantizeLinear of 8-bit
//                      weights read by Conv/ConvTranspose/MatMul stays, for fuse_qdq)
//   fuse_qdq           DequantizeLinear(X u8/s8) and DequantizeLinear(W int8,
//                      per tensor or per output channel) -> Conv/
//                      ConvTranspose/MatMul -> [one activation] ->
//                      QuantizeLinear into com.duet QuantizedConv /
//                      QuantizedConvTranspose / QuantizedMatMul (ops/fused.cc); and
//                      DequantizeLinear (or a scalar constant) -> Add/Sub/Mul/
//                      Div -> QuantizeLinear into com.duet QuantizedBinary
//                      (absorbing the affine ones after a quantized op as its
//                      requantize steps); Resize nearest, MaxPool and Concat
//                      between DQ and Q of one scale/zero point on the codes
//   eliminate_noops    Identity, inference Dropout, Cast to the same type,
//                      Reshape of Reshape
//   fold_batchnorm     Conv -> BatchNormalization into the Conv's weights
//   fold_conv_affine   Conv -> Mul/Add/Sub/Div by a per-channel constant into
//                      the Conv's weights and bias
//   gemm_to_matmul     Gemm with constant B (and a constant bias row), alpha 1,
//                      beta 1, no transA into MatMul / FusedMatMul
//   fuse_matmul_bias   MatMul -> Add(bias along the last axis) into FusedMatMul
//   fuse_post_ops      Conv/MatMul -> residual Add, activations (Relu, Clip,
//                      HardSigmoid, Sigmoid, Tanh, Gelu, LeakyRelu, and the
//                      x·HardSigmoid(x), x·Clip(x+3,0,6)/6 and x·Sigmoid(x)
//                      patterns) and scalar affine steps into com.duet
//                      FusedConv / FusedMatMul post-op chains
//   fuse_layer_norm    ReduceMean/Sub/Pow 2/ReduceMean/Add eps/Sqrt/Div/Mul/Add
//                      over the last axis into com.duet LayerNormalization
//   remove_dead        nodes whose outputs nobody reads, unused initializers
#pragma once
#include <map>
#include <string>

#include "duet/ir/graph.h"

namespace duet::passes {

struct OptimizeOptions {
  bool fold_constants = true;
  bool eliminate_noops = true;
  bool fold_batchnorm = true;
  bool fold_affine = true;                   // per-channel Mul/Add/Sub/Div into Conv weights
  bool fuse = true;                          // bias, post-op and LayerNorm fusion into com.duet ops
  int64_t fold_limit_elements = 1 << 24;     // largest constant a fold may create
};

// Rewrites done per pass, by pass name ("fold_batchnorm": 3, ...).
using OptimizeReport = std::map<std::string, int>;

OptimizeReport optimize(ir::Model& model, const OptimizeOptions& options = {});

int fold_constants(ir::Model& model, int64_t limit_elements = 1 << 24, bool keep_integer_dequantize = false);
int fuse_qdq(ir::Model& model);
int eliminate_noops(ir::Model& model);
int fold_batchnorm(ir::Model& model);
int fold_conv_affine(ir::Model& model);
int gemm_to_matmul(ir::Model& model);
int fuse_matmul_bias(ir::Model& model);
int fuse_post_ops(ir::Model& model);
int fuse_layer_norm(ir::Model& model);
int remove_dead(ir::Model& model);

}  // namespace duet::passes
