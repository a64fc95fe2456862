// Shape inference with constant folding of shape subgraphs: binds input
// shapes, runs each op's infer function, and evaluates nodes whose inputs are
// all known and small (Shape -> Gather -> Concat -> Reshape chains) with their
// reference kernels, so that data-dependent shapes resolve.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "duet/ir/graph.h"
#include "duet/ops/registry.h"

namespace duet::passes {

struct ShapeInferenceOptions {
  std::map<std::string, Dims> input_shapes;  // binds symbolic input dims
  int64_t fold_limit_elements = 1 << 16;     // fold nodes whose inputs are at most this big
};

struct ShapeInferenceResult {
  std::map<std::string, Tensor> constants;  // values known without running the model
  std::vector<std::string> unresolved;      // nodes whose outputs stay without full shape
};

// Updates Value::type throughout model.graph (top level).
ShapeInferenceResult infer_shapes(ir::Model& model, const ShapeInferenceOptions& options = {});

// Cost of every node of the top-level graph at the inferred shapes.
struct NodeCost {
  const ir::Node* node;
  ops::Cost cost;
  bool known;  // false when some shape was not known
};
std::vector<NodeCost> node_costs(const ir::Model& model);

}  // namespace duet::passes
