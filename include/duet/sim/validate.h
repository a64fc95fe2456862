// Validation of the host-CPU model against the machine: runs the model on the
// oneDNN cpu backend (the graph optimizer's graph, so predicted and measured
// nodes are the same nodes), times it, and sets every node's measured time
// beside the host-CPU model's prediction (sim/cpu_model.h).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "duet/core/shape.h"
#include "duet/sim/simulate.h"

namespace duet::sim {

struct ValidationRow {
  std::string name, op, cpu_class;
  bool modelled = false, measured = false;  // a node the simulator folds away is measured only
  double predicted_s = 0, measured_s = 0;   // measured: median over the profiled runs
  double error() const { return measured_s > 0 ? (predicted_s - measured_s) / measured_s : 0; }
};

struct HostValidation {
  std::string model, device_id;
  int threads = 1, runs = 0;
  double measured_total_s = 0;   // median latency of unprofiled runs (the figure compared)
  double measured_nodes_s = 0;   // sum of the per-node medians of the profiled runs
  double predicted_total_s = 0;  // the model's latency (sum of its nodes)
  double load_average = -1;      // 1-minute load average when the runs ended (-1: unknown)
  std::vector<ValidationRow> rows;  // graph order
  double total_error() const { return measured_total_s > 0 ? (predicted_total_s - measured_total_s) / measured_total_s : 0; }
  // Median of |per-node error| over nodes both modelled and measured.
  double median_abs_node_error() const;
};

struct ValidationOptions {
  int runs = 10;    // measured rounds: each one unprofiled run and one profiled run
  int warmup = 2;
};

// Loads `model_path`, optimizes it as the cpu backend does, simulates it on
// `host` (which must carry [cpu_kernels]) and measures it. `shapes` binds
// input shapes (as --shape); inputs are seeded uniform [0, 1) float32 tensors.
HostValidation validate_host(const std::string& model_path, const std::map<std::string, Dims>& shapes, const Device& host,
                             const SimOptions& options, const ValidationOptions& v = {});

}  // namespace duet::sim
