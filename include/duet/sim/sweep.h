// The device × precision × batch sweep: one model (or SCALE-Sim topology)
// costed on several catalog devices, at several default precisions and batch
// sizes, every figure modelled. `duet simulate` prints and reports it; the
// planner and the Python module call it directly.
//
//   sim::SweepRequest r;
//   r.devices = {"t4", "a100", "tpu-v4"};
//   r.precisions = {"fp16", "int8"};
//   r.batches = {1, 8};
//   const sim::Sweep s = sim::sweep_model(model, r);   // s.points: 3 × 2 × 2
//
// Nodes that carry their own precision annotation keep it at every point; the
// point's precision is the default of the others. CPUs with measured kernel
// rates (the host) cost the graph the cpu backend runs (passes::optimize
// first); other devices cost the graph as given.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "duet/core/progress.h"
#include "duet/ir/graph.h"
#include "duet/sim/device.h"
#include "duet/sim/simulate.h"
#include "duet/sim/topology.h"

namespace duet::sim {

struct SweepRequest {
  std::string catalog_dir = default_devices_dir();
  std::vector<std::string> devices;         // catalog ids; "all": every calibrated device
  std::vector<Override> overrides;          // applied to every device file
  std::vector<int64_t> batches = {1};
  std::vector<std::string> precisions = {"fp32"};  // numerics::Precision texts
  SimOptions options;                       // its precision is replaced by each point's
  std::map<std::string, Dims> input_shapes; // binds unknown non-batch input dimensions
  Progress progress;                        // stages: workloads (one per batch and graph form), simulating (points)
};

struct SweepPoint {
  size_t device = 0;  // index into Sweep::devices
  std::string precision;
  int64_t batch = 1;
  SimResult result;
  int nodes = 0, unknown_cost_nodes = 0;  // of the workload costed
};

struct Sweep {
  std::vector<Device> devices;
  bool has_host = false;  // a calibrated host.toml took the fallback nodes
  std::vector<SweepPoint> points;  // device-major, then precision, then batch
};

// Checks the request (devices exist, batches positive, precisions parse), one clear error otherwise.
std::vector<Device> resolve_devices(const SweepRequest& request);
Sweep sweep_model(const ir::Model& model, const SweepRequest& request);
Sweep sweep_topology(const Topology& topology, const SweepRequest& request);

}  // namespace duet::sim
