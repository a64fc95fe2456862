// What a device model costs: the nodes of a model (or the rows of a SCALE-Sim
// topology) at one batch size, with the FLOPs and tensor sizes the op
// registry reports, and, for Conv/MatMul/Gemm, their GEMM lowering.
#pragma once
#include <string>
#include <vector>

#include "duet/ir/graph.h"
#include "duet/sim/systolic.h"
#include "duet/sim/topology.h"

namespace duet::sim {

struct WorkItem {
  std::string name, op;
  int node_index = -1;  // position in the graph's node list (ONNX models)
  bool matrix = false;  // runs on a matrix engine (GEMM lowering in `gemm`)
  Gemm gemm;
  bool conv = false;    // Conv / FusedConv / ConvTranspose (gemm.n: output channels per group)
  double flops = 0;
  double weight_elements = 0;  // constant inputs (initializers)
  double input_elements = 0;   // activations read
  double output_elements = 0;
  // Where each activation input comes from: index of the producing item, or
  // -1 for a model input (which starts on the host).
  std::vector<int> producers;
  std::vector<double> producer_elements;
  // Channels (dimension 1) of each 4-d activation input (as producers) and
  // output; 0 for other ranks. CPU kernels store 4-d tensors channel-blocked.
  std::vector<int64_t> input_channels;
  std::vector<double> output_parts;
  std::vector<int64_t> output_channels;
  bool model_output = false;  // an output goes back to the host
  // Convolutions (Conv, FusedConv): spatial kernel, strides, dilations, groups
  // and the output's spatial size, for kernels that apply to some shapes only
  // (the host CPU's Winograd 3x3). Empty for other nodes.
  std::vector<int64_t> conv_kernel, conv_strides, conv_dilations, conv_output_spatial;
  int64_t conv_group = 1;
  std::vector<std::string> post_ops;  // a fused node's activation chain (ops::PostOp::str, e.g. "Relu(0)")
  // The node's own precision (numerics::Precision text, its annotation
  // kPrecisionAnnotation); empty: the simulation's default applies.
  std::string precision;
};

struct Workload {
  std::string name;
  int64_t batch = 1;
  std::vector<WorkItem> items;
  int unknown_cost_nodes = 0;  // nodes left out: shapes not known
};

Workload workload_from_topology(const Topology& topo, int64_t batch);
// Binds the first dimension of every model input to `batch` (other unknown
// dimensions must be fixed by `input_shapes`), infers shapes, and costs every
// node that is not folded into a constant. Rewrites the graph's value types
// (shape inference): give each batch its own copy (ir::clone_sharing_initializers),
// since batch 1 keeps a fully known input as it finds it.
Workload workload_from_model(ir::Model& model, int64_t batch,
                             const std::map<std::string, Dims>& input_shapes = {});

}  // namespace duet::sim
