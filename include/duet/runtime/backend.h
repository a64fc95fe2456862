// Execution backends. A backend answers a capability query per node, as ONNX
// Runtime's execution providers do; the session groups consecutive claimed
// nodes into partitions, compiles each once, and runs the rest on the
// reference kernels. Values cross a partition boundary as plain (row-major)
// Tensors; inside, a backend keeps whatever layout its kernels prefer.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "duet/core/tensor.h"
#include "duet/ir/graph.h"

namespace duet::runtime {

enum class Precision { FP32, BF16 };

struct BackendOptions {
  int threads = 1;
  Precision precision = Precision::FP32;
};

// The nodes of one partition, in execution order, and the values that cross
// its boundary (constants are not inputs: a backend reads them at compile time).
struct PartitionSpec {
  std::vector<const ir::Node*> nodes;
  std::vector<const ir::Value*> inputs;
  std::vector<const ir::Value*> outputs;
};

// Measured milliseconds per node, accumulated over runs (profiling).
using NodeTimes = std::unordered_map<const ir::Node*, double>;

class CompiledPartition {
 public:
  virtual ~CompiledPartition() = default;
  // inputs follow spec.inputs; outputs (one per spec.outputs) are allocated
  // from alloc. Plans are cached per input shape, so a new shape costs one
  // compilation and later runs with that shape allocate nothing. With times
  // set, each primitive is timed and charged to the node it was lowered from
  // (layout reorders to the node that needed them).
  virtual std::vector<Tensor> run(const std::vector<const Tensor*>& inputs, Allocator& alloc,
                                  NodeTimes* times = nullptr) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Whether this backend runs `node` (types from shape inference are set).
  virtual bool claims(const ir::Model& model, const ir::Node& node) const = 0;
  virtual std::unique_ptr<CompiledPartition> compile(const ir::Model& model, const PartitionSpec& spec,
                                                     const BackendOptions& options) = 0;
};

// The oneDNN CPU backend (FP32; BF16 with FP32 accumulation; INT8 for the
// QuantizeLinear/DequantizeLinear patterns passes::fuse_qdq forms).
std::unique_ptr<Backend> make_cpu_backend();

// Groups the top-level nodes of `model` that `backend` claims into maximal
// runs of consecutive nodes.
std::vector<PartitionSpec> partition(const ir::Model& model, const Backend& backend);

}  // namespace duet::runtime
