// What a validation of the host-CPU model says: every node's measured time
// beside the model's prediction (sim/cpu_model.h). measure::validate_host
// (measure/validate.h) runs the model to fill it; sim's reports render it.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "duet/core/shape.h"

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

}  // namespace duet::sim
