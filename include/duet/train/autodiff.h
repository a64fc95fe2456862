// Reverse-mode automatic differentiation as a graph pass: from a scalar loss,
// the backward nodes that compute d loss / d value for every requested value
// are appended to the same graph, and the gradients become graph outputs.
//
// Gradients are ordinary graph nodes: standard ONNX ops where they suffice
// (MatMul, Gemm, Mul, Transpose, ReduceSum, ...), and com.duet gradient ops
// with reference kernels where they do not (ConvGrad, ResizeGrad, MaxPoolGrad,
// AveragePoolGrad, ReluGrad, BatchNormalizationGrad, LayerNormalizationGrad,
// SoftmaxCrossEntropyLossGrad, SumToShape). So a training graph runs on any
// Duet backend, and every rule is checked against finite differences
// (tests/test_autodiff.cc).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "duet/ir/graph.h"

namespace duet::train {

struct GradientRequest {
  std::string loss;               // a float scalar value of the graph
  std::vector<std::string> wrt;   // values to differentiate with respect to (graph inputs)
  // Optional graph input holding d loss (a float scalar: the loss scale of
  // mixed-precision training). Without one, the seed is the constant 1.
  std::string seed;
};

// Appends the backward pass to model's graph and one graph output per wrt
// value ("grad.<name>"); returns wrt name -> gradient output name. The graph
// must have inferred types (passes::infer_shapes) and default opset >= 13.
// Throws duet::Unsupported naming the first op on the path that has no
// gradient rule, duet::Error for a non-scalar loss or an unknown name.
std::map<std::string, std::string> add_gradients(ir::Model& model, const GradientRequest& request);

// The op types (default domain unless "com.duet:" prefixed) with gradient rules.
std::vector<std::string> differentiable_ops();

}  // namespace duet::train
