// Structured N:M pruning of a model's weights: 2:4 (two non-zeros in every
// group of four weights along the reduction axis K), the pattern NVIDIA's
// sparse tensor cores run at twice the dense matrix rate.
//
// Every matrix op (MatMul, Gemm, Conv, ConvTranspose and their fused forms)
// with constant float32 weights is a candidate. In each group of four weights
// along the op's reduction axis (ops::MatrixTraits::weight_axes: the input
// channels of a convolution, the rows of a MatMul's B) the two of smallest
// magnitude become zero (numerics::prune_2of4, the rule emulation uses), and the
// node's precision annotation gains sparsity=2:4, which the simulator (the
// sparse rate where a node is compute-bound) and emulation read per node.
// A node is left dense, with the reason, where K is not a multiple of 4
// (depthwise convolutions: K = 1), its weights are computed, or they are shared
// with a node that is not pruned alike.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "duet/ir/graph.h"

namespace duet::passes {

struct SparsifyOptions {
  std::string pattern = "2:4";        // N:M; 2:4 is the one sparse tensor cores run
  std::set<std::string> op_types;     // only these op types (empty: every matrix op)
  std::set<std::string> exclude;      // node names left dense
};

struct SparsifiedNode {
  std::string node, op;
  std::string weight;         // the weight initializer's name
  bool pruned = false;
  std::string reason;         // why it stayed dense
  int64_t k = 0;              // length of the reduction axis
  int64_t weights = 0, zeroed = 0;  // weight count, and how many pruning made zero
};

struct SparsifyReport {
  std::vector<SparsifiedNode> nodes;  // every matrix op, in graph order
  int64_t pruned = 0, dense = 0;
  int64_t weights = 0, zeroed = 0;    // over the pruned nodes
};

// Checks the pattern text: "2:4" passes; any other N:M is duet::Unsupported;
// anything else one clear error.
void check_sparsity_pattern(const std::string& pattern);

// Prunes in place (constants folded first: weights written as Constant nodes
// become initializers); throws naming why when no node could be pruned.
SparsifyReport sparsify(ir::Model& model, const SparsifyOptions& options = {});

}  // namespace duet::passes
