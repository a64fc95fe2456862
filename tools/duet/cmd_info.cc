// duet info MODEL [--shape NAME=1x3x640x640]: inputs/outputs, op histogram,
// parameters, FLOPs and bytes at the given shapes.
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <map>

#include "commands.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/shape_inference.h"
#include "duet/runtime/session.h"

namespace duet::cli {

namespace {

std::string human(double v, const char* unit) {
  const char* prefixes[] = {"", "K", "M", "G", "T", "P"};
  int p = 0;
  while (v >= 1000 && p < 5) { v /= 1000; ++p; }
  std::ostringstream os;
  os << std::fixed << std::setprecision(v < 10 && p > 0 ? 2 : (p > 0 ? 1 : 0)) << v << " " << prefixes[p] << unit;
  return os.str();
}

nlohmann::json value_json(const ir::Value& v) {
  return {{"name", v.name}, {"type", v.type.kind == ir::ValueType::Kind::Tensor ? std::string(dtype_name(v.type.dtype)) : v.type.str()},
          {"shape", v.type.shape.str()}};
}

}  // namespace

std::map<std::string, Dims> parse_shape_bindings(const std::vector<std::string>& specs) {
  std::map<std::string, Dims> shapes;
  for (auto& s : specs) {
    const auto eq = s.find('=');
    DUET_CHECK(eq != std::string::npos && eq > 0, "--shape expects NAME=DIMS (e.g. x=1x3x640x640), got '", s, "'");
    shapes[s.substr(0, eq)] = parse_dims(s.substr(eq + 1));
  }
  return shapes;
}

Runner add_info(CLI::App& app) {
  struct Options {
    std::string model;
    std::vector<std::string> shapes;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("info", "Describe a model: inputs/outputs, op histogram, parameters, FLOPs and bytes");
  cmd->add_option("model", o->model, "ONNX model file")->required();
  cmd->add_option("--shape", o->shapes, "Bind an input shape, NAME=1x3x640x640 (repeatable)");
  cmd->add_flag("--json", o->json, "Print as JSON");
  return [o]() {
    auto model = onnx_io::load_model(o->model);
    ir::verify(*model->graph);
    std::string support_problem;
    try {
      runtime::check_supported(*model);
    } catch (const Error& e) {
      support_problem = e.what();
    }
    passes::ShapeInferenceOptions opts;
    opts.input_shapes = parse_shape_bindings(o->shapes);
    auto inferred = passes::infer_shapes(*model, opts);
    auto costs = passes::node_costs(*model);
    const ir::Graph& g = *model->graph;

    struct OpStats { int count = 0; double flops = 0; };
    std::map<std::string, OpStats> histogram;
    double flops = 0, bytes = 0;
    int unknown = 0;
    for (auto& c : costs) {
      auto& h = histogram[c.node->op_type];
      h.count++;
      h.flops += c.cost.flops;
      flops += c.cost.flops;
      for (double b : c.cost.input_bytes) bytes += b;
      for (double b : c.cost.output_bytes) bytes += b;
      if (!c.known) ++unknown;
    }
    int64_t params = 0;
    double param_bytes = 0;
    // Parameters: initializers, and the tensors of Constant nodes (some
    // exporters, e.g. paddle2onnx, store weights that way).
    for (auto& [name, t] : g.initializers) {
      params += t.numel();
      param_bytes += static_cast<double>(t.nbytes());
    }
    for (auto& n : g.nodes) {
      if (n->op_type != "Constant") continue;
      const ir::Attribute* a = n->attr("value");
      if (a && a->type == ir::AttrType::Tensor && a->t.numel() > 1 && !a->t.is_sequence()) {
        params += a->t.numel();
        param_bytes += static_cast<double>(a->t.nbytes());
      }
    }
    std::vector<const ir::Value*> inputs;
    for (auto* in : g.inputs) if (!g.initializers.count(in->name)) inputs.push_back(in);

    if (o->json) {
      nlohmann::json j;
      j["model"] = o->model;
      j["ir_version"] = model->ir_version;
      nlohmann::json opsets = nlohmann::json::object();
      for (auto& op : model->opset_imports) opsets[op.domain.empty() ? "ai.onnx" : op.domain] = op.version;
      j["opsets"] = opsets;
      j["producer"] = model->producer_name + " " + model->producer_version;
      j["inputs"] = nlohmann::json::array();
      for (auto* in : inputs) j["inputs"].push_back(value_json(*in));
      j["outputs"] = nlohmann::json::array();
      for (auto* out : g.outputs) j["outputs"].push_back(value_json(*out));
      j["nodes"] = g.nodes.size();
      j["parameters"] = params;
      j["parameter_bytes"] = param_bytes;
      j["flops"] = flops;
      j["bytes"] = bytes;
      j["nodes_with_unknown_shapes"] = unknown;
      j["unresolved_nodes"] = inferred.unresolved;
      j["supported"] = support_problem.empty();
      if (!support_problem.empty()) j["unsupported"] = support_problem;
      nlohmann::json ops = nlohmann::json::object();
      for (auto& [op, s] : histogram) ops[op] = {{"count", s.count}, {"flops", s.flops}};
      j["ops"] = ops;
      print_json(j, 1);
      return 0;
    }
    std::cout << "model      " << o->model << "\n";
    std::cout << "producer   " << model->producer_name << " " << model->producer_version << ", IR " << model->ir_version
              << ", opsets";
    for (auto& op : model->opset_imports) std::cout << " " << (op.domain.empty() ? "ai.onnx" : op.domain) << ":" << op.version;
    std::cout << "\n";
    for (auto* in : inputs) std::cout << "input      " << in->name << "  " << in->type.str() << "\n";
    for (auto* out : g.outputs) std::cout << "output     " << out->name << "  " << out->type.str() << "\n";
    std::cout << "nodes      " << g.nodes.size() << "\n";
    std::cout << "parameters " << params << " (" << human(param_bytes, "B") << ")\n";
    std::cout << "FLOPs      " << human(flops, "FLOP") << (unknown ? "  (" + std::to_string(unknown) + " nodes with unknown shapes not counted; bind them with --shape)" : "") << "\n";
    std::cout << "bytes      " << human(bytes, "B") << " read+written by nodes\n";
    if (!support_problem.empty()) std::cout << "support    " << support_problem << "\n";
    std::cout << "\n" << std::left << std::setw(28) << "op" << std::right << std::setw(7) << "count" << std::setw(14) << "FLOPs"
              << std::setw(9) << "share" << "\n";
    std::vector<std::pair<std::string, OpStats>> sorted(histogram.begin(), histogram.end());
    std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.second.flops > b.second.flops; });
    for (auto& [op, s] : sorted) {
      std::cout << std::left << std::setw(28) << op << std::right << std::setw(7) << s.count << std::setw(14)
                << human(s.flops, "") << std::setw(8) << std::fixed << std::setprecision(1)
                << (flops > 0 ? 100.0 * s.flops / flops : 0.0) << "%\n";
    }
    return 0;
  };
}

}  // namespace duet::cli
