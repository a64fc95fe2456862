#include "duet/passes/emulate.h"

namespace duet::passes {

namespace {

// Why this node cannot run through the datapath; empty when it can.
std::string obstacle(const ir::Node& n, const numerics::Datapath& d) {
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
    for (auto& a : n->attributes) {
      std::vector<const ir::Graph*> bodies;
      if (a.g) bodies.push_back(a.g.get());
      for (auto& b : a.graphs) bodies.push_back(b.get());
      for (const ir::Graph* body : bodies) {
        for (auto& inner : body->nodes)
          if (inner->op_type == "Conv" || inner->op_type == "MatMul" || inner->op_type == "Gemm")
            report.kept_fp32.emplace_back(inner->label(), "inside the body of " + n->label() + " (not emulated)");
        list_subgraph_nodes(*body, report);
      }
    }
}

}  // namespace

EmulateReport emulate_datapath(ir::Model& model, const numerics::Datapath& datapath, const EmulateOptions& options) {
  EmulateReport report;
  const std::string spec = datapath.spec();
  bool any = false;
  for (auto& up : model.graph->nodes) {
    ir::Node& n = *up;
    if (!(n.domain.empty() || n.domain == "ai.onnx")) continue;
    if (n.op_type != "Conv" && n.op_type != "MatMul" && n.op_type != "Gemm") continue;
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
    n.op_type = "Emulated" + n.op_type;
    n.domain = "com.duet";
    n.attributes.push_back({.name = "datapath", .type = ir::AttrType::String, .s = spec});
    n.annotations["precision"] = datapath.name == "custom" ? spec : datapath.name;
    report.emulated_nodes.push_back(n.name);
    ++report.emulated;
    any = true;
  }
  list_subgraph_nodes(*model.graph, report);
  if (any && model.opset("com.duet") == 0) model.opset_imports.push_back({"com.duet", 1});
  return report;
}

}  // namespace duet::passes
