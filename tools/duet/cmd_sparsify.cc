// duet sparsify MODEL -o OUT.onnx [--pattern 2:4] [--op-types T,...] [--exclude NODE]:
// prunes every eligible matrix op's weights 2:4 along K (passes/sparsify.h),
// records the pattern on each pruned node, and lists the nodes left dense with
// the reason. The pruned model runs and emulates as it is (zeros stored dense);
// `duet simulate` costs its pruned nodes at the devices' sparse rates.
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>

#include "commands.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/sparsify.h"

namespace duet::cli {

Runner add_sparsify(CLI::App& app) {
  struct Options {
    std::string model, output, pattern = "2:4";
    std::vector<std::string> op_types, exclude;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("sparsify", "Prune a model's Conv/MatMul/Gemm weights 2:4 (structured sparsity) and record the pattern per node");
  cmd->add_option("model", o->model, "ONNX model file")->required();
  cmd->add_option("-o,--output", o->output, "Where to write the pruned ONNX model")->required();
  cmd->add_option("--pattern", o->pattern, "N:M structured pattern (2:4: two non-zeros in every four weights along K)");
  cmd->add_option("--op-types", o->op_types, "Only these op types, comma-separated (default: every matrix op)")->delimiter(',');
  cmd->add_option("--exclude", o->exclude, "Leave this node dense (repeatable)");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  return [o]() {
    passes::check_sparsity_pattern(o->pattern);  // before the model is read
    auto model = onnx_io::load_model(o->model);
    ir::verify(*model->graph);
    passes::SparsifyOptions options;
    options.pattern = o->pattern;
    options.op_types.insert(o->op_types.begin(), o->op_types.end());
    options.exclude.insert(o->exclude.begin(), o->exclude.end());
    for (const std::string& name : options.exclude) {
      bool found = false;
      for (auto& n : model->graph->nodes) found |= n->name == name;
      DUET_CHECK(found, "--exclude: the model has no node named '", name, "'");
    }
    const passes::SparsifyReport r = passes::sparsify(*model, options);
    onnx_io::save_model(*model, o->output);
    const double share = r.weights ? double(r.zeroed) / double(r.weights) : 0;
    if (o->json) {
      nlohmann::json nodes = nlohmann::json::array();
      for (auto& n : r.nodes) {
        nlohmann::json j = {{"node", n.node}, {"op", n.op}, {"pruned", n.pruned}, {"k", n.k}, {"weights", n.weights},
                            {"zeroed", n.zeroed}};
        if (!n.pruned) j["reason"] = n.reason;
        nodes.push_back(j);
      }
      print_json({{"model", o->model}, {"output", o->output}, {"pattern", o->pattern}, {"pruned", r.pruned},
                  {"dense", r.dense}, {"weights_pruned_nodes", r.weights}, {"zeroed", r.zeroed}, {"nodes", nodes}});
      return 0;
    }
    std::cout << "wrote " << o->output << ": " << r.pruned << " of " << r.nodes.size() << " matrix ops pruned "
              << o->pattern << " (" << r.zeroed << " of their " << r.weights << " weights zeroed, " << std::fixed
              << std::setprecision(1) << 100 * share << "%)\n";
    int listed = 0;
    for (auto& n : r.nodes) {
      if (n.pruned) continue;
      if (listed++ == 0) std::cout << "left dense:\n";
      std::cout << "  " << n.node << " (" << n.op << "): " << n.reason << "\n";
    }
    return 0;
  };
}

}  // namespace duet::cli
