// Costs a workload on a device: per node a roofline (compute at the
// precision's peak vs bytes over each memory level's bandwidth) or, for
// systolic matrix engines, fold-based cycles with double-buffered DRAM
// traffic; energy from the device's technology table; nodes whose op or
// precision the device lacks fall back to the host CPU, with transfers
// charged at partition boundaries. Every figure here is modelled.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "duet/sim/device.h"
#include "duet/sim/workload.h"

namespace duet::sim {

struct SimOptions {
  std::string precision = "fp32";
  std::string auto_cast = "none";  // none | matmul | all (as AWS Neuron's --auto-cast)
  std::string auto_cast_type = "bf16";
  std::optional<Dataflow> dataflow;  // systolic engines; default: the device's first
  bool sparse_2to4 = false;          // weights of matrix ops pruned 2:4
  int threads = 1;                   // host CPU: rates measured at this many threads (sim/cpu_model.h)
};
void validate(const SimOptions& o);  // one clear error for a bad value

struct EnergyBreakdown {
  double compute_j = 0, on_chip_j = 0, dram_j = 0, transfer_j = 0;
  double total() const { return compute_j + on_chip_j + dram_j + transfer_j; }
  EnergyBreakdown& operator+=(const EnergyBreakdown& o);
};

struct NodeResult {
  std::string name, op, precision;
  bool matrix = false;
  bool on_host = false;
  std::string fallback_reason;
  double flops = 0, dram_bytes = 0, on_chip_bytes = 0, transfer_bytes = 0;
  double compute_s = 0, memory_s = 0, transfer_s = 0, time_s = 0;
  // "compute", "memory", "overhead" (host-CPU model; [efficiency] kernel time),
  // "fused" (joined its producer's kernel) or "view" (no kernel)
  std::string bound;
  double intensity = 0;    // FLOPs per DRAM byte
  std::string dataflow;    // systolic engines
  int64_t systolic_cycles = -1;
  double mapping_efficiency = 0, compute_utilization = 0;
  EnergyBreakdown energy;
  std::string cpu_class, cpu_level;  // host-CPU model: ceiling met, memory level holding the working set
  double overhead_s = 0;             // host-CPU model: per-primitive overhead; [efficiency]: per kernel
  int node_index = -1;               // the workload item's graph position
  int64_t compute_bound_batch = -1;  // smallest batch at which it is compute-bound (roofline); -1: none up to 2^20
};

struct SimResult {
  std::string device_id, device_name;
  int64_t batch = 1;
  std::vector<NodeResult> nodes;
  double latency_s = 0, throughput_per_s = 0;
  EnergyBreakdown energy;  // whole batch, dynamic
  double static_energy_j = 0;  // idle power over the latency
  double energy_per_inference_j = 0;  // (dynamic + static) / batch
  std::optional<double> cost_per_million_usd;
  int host_nodes = 0;
  double peak_flops = 0;     // matrix peak at the requested precision (roofline ceiling)
  double dram_bandwidth = 0;
};

// `host` runs fallback nodes; may be null or uncalibrated, in which case a
// node needing it is an error naming the node.
SimResult simulate(const Workload& w, const Device& device, const Device* host, const SimOptions& options);

}  // namespace duet::sim
