// emulate_datapath: rewrites a model's Conv, MatMul and Gemm nodes into com.duet
// EmulatedConv / EmulatedMatMul / EmulatedGemm (ops/emulated.cc) that compute
// through a numerics::Precision, so the whole model runs as a device with that
// matrix engine would compute it (`duet emulate`). Everything else stays FP32,
// as on a device whose vector units keep FP32. Nodes that cannot be emulated
// are listed with the reason (including those inside If/Loop/Scan bodies, which
// stay FP32), never skipped silently.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "duet/ir/graph.h"
#include "duet/numerics/precision.h"

namespace duet::passes {

struct EmulateOptions {
  std::set<std::string> exclude_op_types;  // e.g. {"Gemm"}: keep these in FP32
  std::set<std::string> exclude_nodes;     // node names kept in FP32
};

struct EmulateReport {
  int emulated = 0;
  std::vector<std::string> emulated_nodes;
  std::vector<std::pair<std::string, std::string>> kept_fp32;  // node label, reason
};

EmulateReport emulate_datapath(ir::Model& model, const numerics::Precision& datapath, const EmulateOptions& options = {});

// Why `node` cannot compute through `precision` (no emulated form, an input
// that is not float32, a scaling the emulated op lacks...); empty when it can.
std::string emulation_obstacle(const ir::Node& node, const numerics::Precision& precision);

// Mixed precision: each named node through its own precision (a plan's
// per-layer choice); nodes not named, and nodes named with FP32, stay as they
// are. A named node that cannot take its precision is listed in kept_fp32; a
// name that is no node is an error.
EmulateReport emulate_nodes(ir::Model& model, const std::map<std::string, numerics::Precision>& precisions);

}  // namespace duet::passes
