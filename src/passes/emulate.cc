#include "duet/passes/emulate.h"

#include "duet/core/error.h"
#include "duet/ops/registry.h"

namespace duet::passes {

namespace {

// The com.duet Emulated* op of an ONNX matrix op, if one is registered.
const ops::OpDef* emulated_form(const ir::Node& n) {
  if (!(n.domain.empty() || n.domain == "ai.onnx") || !ops::matrix_traits(n)) return nullptr;
  return ops::Registry::builtin().find("com.duet", "Emulated" + n.op_type);
}

// Why this node cannot run through the datapath; empty when it can.
std::string obstacle(const ir::Node& n, const numerics::Precision& d) {
  if (d.weight_only()) return "weight-only precision " + d.str() + " (integer weights, float products) is not emulated";
  for (size_t i = 0; i < n.inputs.size() && i < 3; ++i) {
    const ir::Value* v = n.inputs[i];
    if (v && v->type.dtype != DType::Undefined && v->type.dtype != DType::Float32)
      return "input " + std::to_string(i) + " is " + std::string(dtype_name(v->type.dtype)) + ", not float32";
  }
  if (n.op_type != "Conv") return {};
  const ir::Value* w = n.inputs.size() > 1 ? n.inputs[1] : nullptr;
  if (w && w->type.shape.rank_known && w->type.shape.rank() > 4) return "3-D convolution (emulated Conv is 1-D/2-D)";
  if (d.x.scaling != numerics::emu::Scaling::None && d.x.scaling != numerics::emu::Scaling::Tensor)
    return std::string("Conv input scaling '") + numerics::scaling_name(d.x.scaling) + "' (Conv takes tensor scales)";
  if (d.w.scaling == numerics::emu::Scaling::Block) return "block-scaled Conv weights are not emulated";
  return {};
}

// Conv/MatMul/Gemm inside control-flow bodies: listed, not rewritten.
void list_subgraph_nodes(const ir::Graph& g, EmulateReport& report) {
  for (auto& n : g.nodes)
    for (const ir::Graph* body : n->subgraphs()) {
      for (auto& inner : body->nodes)
        if (emulated_form(*inner))
          report.kept_fp32.emplace_back(inner->label(), "inside the body of " + n->label() + " (not emulated)");
      list_subgraph_nodes(*body, report);
    }
}

}  // namespace

namespace {

// Rewrites one node to its Emulated* form computing through `precision`.
void rewrite(ir::Model& model, ir::Node& n, const numerics::Precision& precision, EmulateReport& report) {
  // 2:4 prunes weights: a product of two computed tensors (attention) stays dense.
  numerics::Precision own = precision;
  const ir::Value* b = n.inputs.size() > 1 ? n.inputs[1] : nullptr;
  const bool computed_b = !(b && model.graph->is_initializer(b));
  if (own.sparsity != numerics::Sparsity::Dense && computed_b) {
    own.sparsity = numerics::Sparsity::Dense;
    own.name = "custom";
  }
  // Per-channel scales belong to weights; a computed second operand (attention's
  // K and V) takes one scale per tensor, as engines and QDQ models scale activations.
  if (own.w.scaling == numerics::emu::Scaling::Channel && computed_b) {
    own.w.scaling = numerics::emu::Scaling::Tensor;
    own.name = "custom";
  }
  n.op_type = "Emulated" + n.op_type;
  n.domain = "com.duet";
  n.attributes.push_back({.name = "datapath", .type = ir::AttrType::String, .s = own.spec()});
  n.annotations[numerics::kPrecisionAnnotation] = own.str();
  report.emulated_nodes.push_back(n.name);
  ++report.emulated;
  if (model.opset("com.duet") == 0) model.opset_imports.push_back({"com.duet", 1});
}

}  // namespace

EmulateReport emulate_datapath(ir::Model& model, const numerics::Precision& datapath, const EmulateOptions& options) {
  EmulateReport report;
  for (auto& up : model.graph->nodes) {
    ir::Node& n = *up;
    if (!emulated_form(n)) {
      if ((n.domain.empty() || n.domain == "ai.onnx") && ops::matrix_traits(n))
        report.kept_fp32.emplace_back(n.label(), n.op_type + " has no emulated form");
      continue;
    }
    if (options.exclude_op_types.count(n.op_type)) {
      report.kept_fp32.emplace_back(n.label(), "excluded by op type");
      continue;
    }
    if (options.exclude_nodes.count(n.name)) {
      report.kept_fp32.emplace_back(n.label(), "excluded by name");
      continue;
    }
    if (std::string why = obstacle(n, datapath); !why.empty()) {
      report.kept_fp32.emplace_back(n.label(), why);
      continue;
    }
    rewrite(model, n, datapath, report);
  }
  list_subgraph_nodes(*model.graph, report);
  return report;
}

std::string emulation_obstacle(const ir::Node& n, const numerics::Precision& precision) {
  if (!emulated_form(n)) return n.op_type + " has no emulated form";
  return obstacle(n, precision);
}

EmulateReport emulate_nodes(ir::Model& model, const std::map<std::string, numerics::Precision>& precisions) {
  EmulateReport report;
  size_t found = 0;
  for (auto& up : model.graph->nodes) {
    ir::Node& n = *up;
    const auto it = precisions.find(n.name);
    if (n.name.empty() || it == precisions.end()) continue;
    ++found;
    if (it->second.str() == "fp32") continue;
    if (std::string why = emulation_obstacle(n, it->second); !why.empty()) {
      report.kept_fp32.emplace_back(n.label(), why);
      continue;
    }
    rewrite(model, n, it->second, report);
  }
  if (found < precisions.size())
    for (const auto& [name, _] : precisions) {
      bool present = false;
      for (auto& n : model.graph->nodes) present = present || n->name == name;
      DUET_CHECK(present, "emulate: no node named '", name, "' in the model");
    }
  return report;
}

}  // namespace duet::passes
