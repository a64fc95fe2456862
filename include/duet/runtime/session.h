// Session: checks a model once (verifier, every op known, opsets supported),
// then runs it on the reference kernels. Values die after their last use and
// their buffers return to a pool that later nodes reuse; intra-op threads are
// configurable. Same inputs give the same bits.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "duet/core/tensor.h"
#include "duet/ir/graph.h"
#include "duet/runtime/backend.h"

namespace duet::runtime {

using ir::kMaxOnnxOpset;

struct SessionOptions {
  int threads = 1;
  // An ordered preference of backends, comma-separated ("cuda,cpu"): each
  // node runs on the first that claims it, the rest on the reference kernels.
  // "reference": every node on the reference kernels. "cpu": the oneDNN
  // backend (run prepare_model first so that types are inferred and fusions formed).
  std::string backend = "reference";
  const BackendRegistry* registry = nullptr;  // where backend names resolve; null: BackendRegistry::builtin()
  // Default precision (numerics::Precision text) of the nodes without their own
  // annotation: fp32, or bf16 on the cpu backend (BackendOptions::precision).
  std::string precision = "fp32";
  bool profile = false;  // time every node (and every backend primitive); see Session::node_times
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

class Session {
 public:
  explicit Session(std::shared_ptr<const ir::Model> model, SessionOptions options = {});
  ~Session();

  // Runs with inputs by name; returns the graph outputs in graph order.
  // Throws duet::Error naming a wrong input name, dtype or shape.
  std::vector<NamedTensor> run(const std::map<std::string, Tensor>& feeds);

  const ir::Model& model() const { return *model_; }
  // Bytes currently held by the buffer pool (for tests of buffer reuse).
  size_t pooled_bytes() const;
  size_t allocation_count() const;  // fresh allocations made by the pool so far
  // With options.profile: measured milliseconds per top-level node, summed
  // over the runs since the last reset.
  const NodeTimes& node_times() const;
  void reset_node_times();
  // The nodes of each backend partition (empty for the reference backend).
  std::vector<std::vector<const ir::Node*>> partitions() const;
  // The backend running each partition, by name.
  std::vector<std::string> partition_backends() const;
  // Per node left on the reference kernels, each backend's reason for refusing it.
  const std::map<const ir::Node*, std::vector<std::pair<std::string, std::string>>>& refusals() const;

 private:
  class Impl;
  std::shared_ptr<const ir::Model> model_;
  std::unique_ptr<Impl> impl_;
};

// Seeded uniform feeds for every formal input of `graph` (those that are not
// initializers), shaped by `shapes` or by the declared shape; throws naming an
// input whose shape is not known ("bind it with --shape"). For benchmarks and
// model validation, where the values do not matter as long as the model runs:
// floating-point inputs in [0, 1); integer and bool inputs in [0, rows) when
// they index a constant table through Gather (token ids into an embedding),
// else [0, 2) (masks, flags). `ranges` sets [lo, hi) per input; `given`
// tensors are used as they are (each must name an input).
std::map<std::string, Tensor> seeded_feeds(const ir::Graph& graph, const std::map<std::string, Dims>& shapes,
                                           const std::map<std::string, Tensor>& given = {},
                                           const std::map<std::string, std::pair<double, double>>& ranges = {});

// Readies a model for a session with these options: the cpu backend gets the
// graph optimizer's passes (types inferred, fusions formed) first.
void prepare_model(ir::Model& model, const SessionOptions& options);

// Checks that every op of the graph (subgraphs included) is registered and
// the opsets are ones Duet implements; throws duet::Unsupported naming the op.
void check_supported(const ir::Model& model);

}  // namespace duet::runtime
