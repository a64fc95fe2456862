// duet optimize-graph MODEL -o OUT.onnx: runs the graph optimization passes
// (constant folding, no-op elimination, BatchNorm/affine folding, bias and
// activation fusion) and writes the result for inspection. Fused nodes are
// com.duet FusedConv / FusedMatMul with their post-op chain as attributes.
#include <nlohmann/json.hpp>

#include <iostream>
#include <map>

#include "commands.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/optimize.h"
#include "duet/runtime/session.h"

namespace duet::cli {

namespace {
std::map<std::string, int> op_histogram(const ir::Graph& g) {
  std::map<std::string, int> h;
  for (auto& n : g.nodes) h[n->op_type]++;
  return h;
}
}  // namespace

Runner add_optimize_graph(CLI::App& app) {
  struct Options {
    std::string model, output;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("optimize-graph", "Run the graph optimization passes and write the optimized model");
  cmd->add_option("model", o->model, "ONNX model file")->required();
  cmd->add_option("-o,--output", o->output, "Where to write the optimized ONNX model")->required();
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  return [o]() {
    auto model = onnx_io::load_model(o->model);
    ir::verify(*model->graph);
    runtime::check_supported(*model);
    const auto before = op_histogram(*model->graph);
    const size_t nodes_before = model->graph->nodes.size();
    auto report = passes::optimize(*model);
    const auto after = op_histogram(*model->graph);
    onnx_io::save_model(*model, o->output);
    if (o->json) {
      nlohmann::json j = {{"model", o->model}, {"output", o->output}, {"passes", report},
                          {"nodes_before", nodes_before}, {"nodes_after", model->graph->nodes.size()},
                          {"ops_before", before}, {"ops_after", after}};
      print_json(j, 2);
      return 0;
    }
    std::cout << o->model << ": " << nodes_before << " nodes -> " << model->graph->nodes.size() << " nodes\n";
    for (auto& [pass, n] : report) std::cout << "  " << pass << ": " << n << "\n";
    std::cout << "ops after:";
    for (auto& [op, n] : after) std::cout << " " << op << "×" << n;
    std::cout << "\nwrote " << o->output << "\n";
    return 0;
  };
}

}  // namespace duet::cli
