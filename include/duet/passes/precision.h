// annotate_qdq_precision: reads a QDQ model's structure into the one precision
// vocabulary. A matrix op (ops::MatrixTraits) whose activation and/or weight
// input comes from a DequantizeLinear gets the node annotation "precision"
// (numerics::Precision text) of what a device computes there: the quantized
// formats (INT8/UINT8 -> int8 products, INT4 -> int4, FP8 E4M3/E5M2), the
// scale granularity (DequantizeLinear's axis -> per channel, block_size ->
// blocks along K, else per tensor), integer accumulation for integer products.
// Integer weights over float activations are weight-only (w8a16-like, the
// activations' float format). UINT8 with a zero point is written as int8: the
// products are 8-bit either way. Nodes that already carry an annotation keep it.
// So a model from `duet quantize` (or ONNX Runtime's quantize_static) is costed
// by the simulator at the precisions it was quantized to.
#pragma once
#include "duet/ir/graph.h"

namespace duet::passes {

// Returns the number of nodes annotated.
int annotate_qdq_precision(ir::Model& model);

}  // namespace duet::passes
