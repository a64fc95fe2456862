// The op registry: every op is defined once, in one file per op family, with
//  - its reference kernel (portable C++, the correctness oracle for every backend),
//  - its type/shape inference (symbolic dims; constant inputs visible when known),
//  - its cost (FLOPs and bytes per operand) for the hardware models.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "duet/core/tensor.h"
#include "duet/ir/graph.h"

namespace duet::ops {

// Runs a subgraph (If/Loop/Scan bodies). Formal inputs are bound in order;
// names the body captures from enclosing graphs resolve in the caller's scope.
class SubgraphRunner {
 public:
  virtual ~SubgraphRunner() = default;
  virtual std::vector<Tensor> run(const ir::Graph& body, const std::vector<Tensor>& inputs) = 0;
};

// Splits [0, n) into contiguous chunks run on the session's intra-op threads.
// Work per index must be independent so results do not depend on the split.
class Parallel {
 public:
  virtual ~Parallel() = default;
  virtual int threads() const = 0;
  virtual void for_range(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn) = 0;
};
Parallel& serial();  // runs everything on the calling thread

struct KernelContext {
  const ir::Node& node;
  int64_t opset = 0;                   // version of the node's domain in this model
  std::vector<const Tensor*> inputs;   // nullptr for omitted optional inputs
  std::vector<Tensor> outputs;         // one per node output; kernels fill them
  Allocator* allocator = nullptr;
  Parallel* parallel = nullptr;
  SubgraphRunner* subgraphs = nullptr;

  size_t num_inputs() const { return inputs.size(); }
  bool has_input(size_t i) const { return i < inputs.size() && inputs[i] != nullptr; }
  const Tensor& input(size_t i) const;       // throws naming the node if missing
  const Tensor* optional_input(size_t i) const { return has_input(i) ? inputs[i] : nullptr; }
  size_t num_outputs() const { return outputs.size(); }
  bool output_requested(size_t i) const;     // false when the output name is empty
  Tensor& allocate_output(size_t i, DType dtype, Dims dims);
  void set_output(size_t i, Tensor t);
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) const;
};

using KernelFn = std::function<void(KernelContext&)>;

struct InferContext {
  const ir::Node& node;
  int64_t opset = 0;
  std::vector<ir::ValueType> inputs;   // Undefined dtype for omitted inputs
  std::vector<const Tensor*> values;   // constant values when known (initializers, folded shapes)
  size_t num_outputs = 0;
  int* fresh_counter = nullptr;

  bool has_input(size_t i) const { return i < inputs.size() && inputs[i].dtype != DType::Undefined; }
  const Tensor* value(size_t i) const { return i < values.size() ? values[i] : nullptr; }
  Dim fresh_dim();  // a new unknown dimension (data-dependent sizes)
};

using InferFn = std::function<std::vector<ir::ValueType>(InferContext&)>;

// Cost of one execution with concrete shapes. Bytes are per operand so that
// memory models can tell weights from activations.
struct Cost {
  double flops = 0;   // multiply and add count as two
  std::vector<double> input_bytes;
  std::vector<double> output_bytes;
};

struct CostContext {
  const ir::Node& node;
  std::vector<ir::ValueType> inputs;
  std::vector<ir::ValueType> outputs;
};

using CostFn = std::function<Cost(const CostContext&)>;

// A matrix op's GEMM: `groups` independent M×K by K×N products (grouped
// convolutions, batched MatMul).
struct GemmLowering {
  int64_t m = 1, n = 1, k = 1, groups = 1;
  double macs() const { return double(m) * double(n) * double(k) * double(groups); }
};

// Axes of a matrix op's weight: its output channels (per-channel scales) and
// the reduced axis K (INT4 blocks, 2:4 groups run along it); -1 where none.
struct WeightAxes {
  int64_t channel = -1, reduce = -1;
};

// What the passes that treat matrix ops specially (quantization, QAT,
// autocast, emulation, the simulator, sparsity) need to know, stated with the op.
struct MatrixTraits {
  size_t weight_input = 1;   // where a constant weight sits
  bool convolution = false;  // lowered by im2col: gemm.n counts output channels per group
  // The weight's axes for a weight of `rank` under this node's attributes.
  std::function<WeightAxes(const ir::Node&, int64_t rank)> weight_axes;
  // The GEMM from the node's inferred value shapes; nullopt when they are not all known.
  std::function<std::optional<GemmLowering>(const ir::Node&)> lower;
};

struct OpDef {
  std::string domain;  // "" for the default ONNX domain
  std::string name;
  KernelFn kernel;
  InferFn infer;       // may be empty: outputs then have unknown type
  CostFn cost;         // may be empty: one FLOP per output element
  std::optional<MatrixTraits> matrix;  // set for matrix ops
  std::string family;  // source family (for listings), set by the registry
};

class Registry {
 public:
  void add(OpDef def);
  const OpDef* find(const std::string& domain, const std::string& name) const;
  std::vector<const OpDef*> all() const;
  // The registry of every built-in op, built on first use and immutable after.
  static const Registry& builtin();
  std::string current_family;  // set while a family registers

 private:
  std::map<std::pair<std::string, std::string>, OpDef> ops_;
};

// The matrix traits of a node's op (builtin registry); nullptr for other ops.
const MatrixTraits* matrix_traits(const ir::Node& n);
// The op types of `domain` ("" for ONNX) that are matrix ops: Conv, ConvTranspose, Gemm, MatMul.
std::set<std::string> matrix_op_types(const std::string& domain = "");
// A value's dimensions when its inferred shape is fully known, else empty.
Dims known_dims(const ir::Value* v);

// Default cost: one FLOP per output element, bytes of every operand.
Cost default_cost(const CostContext& ctx);
double value_bytes(const ir::ValueType& t);  // 0 when the shape is not known

}  // namespace duet::ops
