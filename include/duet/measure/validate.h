// Validation of the host-CPU model against the machine: runs the model on the
// oneDNN cpu backend (the graph optimizer's graph, so predicted and measured
// nodes are the same nodes), times it, and sets every node's measured time
// beside the host-CPU model's prediction. Measurement sits above the runtime
// and the simulator; the simulator itself stays a pure model.
#pragma once
#include <map>
#include <string>

#include "duet/core/shape.h"
#include "duet/sim/device.h"
#include "duet/sim/simulate.h"
#include "duet/sim/validation.h"

namespace duet::measure {

using sim::HostValidation;
using sim::ValidationRow;

struct ValidationOptions {
  int runs = 10;    // measured rounds: each one unprofiled run and one profiled run
  int warmup = 2;
};

// Loads `model_path`, optimizes it as the cpu backend does, simulates it on
// `host` (which must carry [cpu_kernels]) and measures it. `shapes` binds
// input shapes (as --shape); inputs are seeded uniform [0, 1) float32 tensors.
HostValidation validate_host(const std::string& model_path, const std::map<std::string, Dims>& shapes, const sim::Device& host,
                             const sim::SimOptions& options, const ValidationOptions& v = {});

}  // namespace duet::measure
