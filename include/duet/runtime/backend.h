// Execution backends and placement. A backend answers a capability query per
// node with a reason when it refuses (as ONNX Runtime's execution providers
// and ggml's backends do); backends register by name in a BackendRegistry; a
// session takes an ordered preference list, gives each node to the first
// backend that claims it, groups consecutive nodes of one backend into
// partitions, compiles each once, and runs the rest on the reference kernels.
// Values cross a partition boundary as plain (row-major) Tensors; a device
// backend's tensors carry its device id (Tensor::device) and the session
// moves them with the backend's to_host / to_device where a reader on the
// other side needs them. Inside a partition a backend keeps whatever layout
// its kernels prefer. Adding a backend touches its own files and one
// registration, not the session.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "duet/core/tensor.h"
#include "duet/ir/graph.h"

namespace duet::runtime {

struct BackendOptions {
  int threads = 1;
  // The default precision (numerics::Precision text) of nodes without their
  // own "precision" annotation. The cpu backend computes fp32 and bf16
  // (Conv/ConvTranspose/MatMul on BF16-rounded inputs and weights, FP32
  // accumulation), per node by its annotation; the graph as written otherwise.
  std::string precision = "fp32";
};

// The nodes of one partition, in execution order, and the values that cross
// its boundary (constants are not inputs: a backend reads them at compile time).
struct PartitionSpec {
  std::vector<const ir::Node*> nodes;
  std::vector<const ir::Value*> inputs;
  std::vector<const ir::Value*> outputs;
  size_t backend = 0;  // index into the placement's backend list
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

// A backend's answer for one node: claimed, or why not (one line).
struct Claim {
  bool claimed = false;
  std::string reason;
  static Claim yes() { return {true, {}}; }
  static Claim no(std::string why) { return {false, std::move(why)}; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Whether this backend runs `node` (types from shape inference are set), and why not.
  virtual Claim claim(const ir::Model& model, const ir::Node& node) const = 0;
  bool claims(const ir::Model& model, const ir::Node& node) const { return claim(model, node).claimed; }
  virtual std::unique_ptr<CompiledPartition> compile(const ir::Model& model, const PartitionSpec& spec,
                                                     const BackendOptions& options) = 0;
  // Memory: -1 for backends that compute in host memory (no transfers); a
  // device backend returns its id >= 0, tags the tensors it produces with it,
  // and copies across here.
  virtual int device_id() const { return -1; }
  virtual Tensor to_device(const Tensor& host) { return host; }
  virtual Tensor to_host(const Tensor& on_device) { return on_device; }
};

// Backends by name. "reference" is not one: it is what runs every node no
// backend claims. builtin() holds Duet's own ("cpu": oneDNN plus Duet's
// kernels); a program adds its own to a registry of its own.
class BackendRegistry {
 public:
  using Factory = std::function<std::unique_ptr<Backend>()>;
  void add(const std::string& name, Factory factory);
  std::unique_ptr<Backend> make(const std::string& name) const;  // one clear error naming the known ones
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return factories_.count(name) > 0; }
  static const BackendRegistry& builtin();

 private:
  std::map<std::string, Factory> factories_;
};

// "cuda,cpu" -> {"cuda", "cpu"}; "reference" (alone or last) adds nothing.
std::vector<std::string> backend_preference(const std::string& list);

// The oneDNN CPU backend (FP32; BF16 with FP32 accumulation; INT8 for the
// QuantizeLinear/DequantizeLinear patterns passes::fuse_qdq forms).
std::unique_ptr<Backend> make_cpu_backend();

// Where each top-level node runs: the first backend of `preference` that
// claims it (none: the reference kernels), consecutive nodes of one backend
// grouped into maximal partitions. `refusals` lists, per node that no
// backend took, each backend's reason.
struct Placement {
  std::vector<PartitionSpec> partitions;
  std::map<const ir::Node*, std::vector<std::pair<std::string, std::string>>> refusals;  // node -> (backend, why)
};
Placement place(const ir::Model& model, const std::vector<const Backend*>& preference);

}  // namespace duet::runtime
