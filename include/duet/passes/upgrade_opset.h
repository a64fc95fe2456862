// Raises a model's default-domain opset, rewriting the nodes whose ONNX
// definition changed on the way so that the model computes the same values:
//
//   Clip < 11            min/max attributes become inputs
//   Slice < 10           starts/ends/axes attributes become inputs
//   Pad < 11             pads/value attributes become inputs
//   TopK < 10            k attribute becomes an input
//   Reshape < 5          shape attribute becomes an input
//   Upsample, Resize 10  become Resize with asymmetric coordinates and the
//                        legacy nearest rule (floor enlarging, ceil shrinking)
//   Squeeze/Unsqueeze, ReduceSum, Split < 13
//                        axes/split attributes become inputs
//   Softmax/LogSoftmax/Hardmax < 13
//                        "coerce to 2-D at axis" kept: the axis is made the
//                        last one, or the input is flattened and reshaped back
//   Dropout < 12         ratio attribute becomes an input (is_test dropped)
//   Reduce* < 18         axes attributes become inputs (when target >= 18)
//
// The quantizer needs this: per-channel QuantizeLinear/DequantizeLinear exist
// from opset 13 (FP8 from 19, blocked INT4 from 21), and many deployed models
// (PaddleOCR: 9 and 11) are older. Models below opset 7 (legacy broadcasting)
// are refused with duet::Unsupported, as are subgraph-holding nodes that need
// a rewrite inside their bodies.
#pragma once
#include <cstdint>

#include "duet/ir/graph.h"

namespace duet::passes {

// Returns the number of nodes rewritten; does nothing when the model's opset
// is already >= target.
int upgrade_opset(ir::Model& model, int64_t target);

}  // namespace duet::passes
