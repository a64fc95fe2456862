// duet run MODEL --input NAME=FILE... --output-dir DIR: run on the reference
// executor; FILE is an ONNX TensorProto (.pb) or NumPy (.npy) file, outputs are
// written in the format of the inputs.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>

#include "commands.h"
#include "duet/io/tensor_file.h"
#include "duet/onnx/onnx_io.h"
#include "duet/runtime/session.h"

namespace duet::cli {

namespace {
std::string safe_filename(const std::string& name) {
  std::string s = name;
  for (char& c : s) if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
  return s.empty() ? "output" : s;
}
}  // namespace

Runner add_run(CLI::App& app) {
  struct Options {
    std::string model;
    std::vector<std::string> inputs;
    std::string output_dir;
    int threads = 1;
    std::string backend = "reference";
    std::string precision = "fp32";
    bool json = false, verbose = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("run", "Run a model (reference executor, or --backend cpu)");
  cmd->add_option("model", o->model, "ONNX model file")->required();
  cmd->add_option("--input,-i", o->inputs, "NAME=FILE (.pb TensorProto or .npy); FILE alone for a single-input model");
  cmd->add_option("--output-dir,-o", o->output_dir, "Write each output to DIR/NAME.pb (or .npy when the inputs were .npy)");
  cmd->add_option("--threads", o->threads, "Intra-op threads")->check(CLI::Range(1, 256));
  cmd->add_option("--precision", o->precision, "fp32; bf16 (cpu backend: Conv/ConvTranspose/MatMul inputs rounded to BF16, FP32 accumulation; native with AVX512-BF16, emulated elsewhere); int8 (a QDQ model from duet quantize: integer kernels on the cpu backend)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  add_backend_option(cmd, o->backend, "reference, or cpu (graph optimizer + oneDNN)");
  cmd->add_flag("--json", o->json, "Print the outputs' summary as JSON");
  cmd->add_flag("-v,--verbose", o->verbose, "Also say where each node ran: backend partitions, and why backends refused the rest");
  return [o]() {
    std::shared_ptr<ir::Model> model = onnx_io::load_model(o->model);
    runtime::SessionOptions options;
    options.threads = o->threads;
    options.backend = o->backend;
    options.precision = parse_precision(o->precision, o->backend, *model->graph);
    runtime::prepare_model(*model, options);
    runtime::Session session(model, options);
    const ir::Graph& g = *model->graph;
    std::vector<const ir::Value*> formal;
    for (auto* in : g.inputs) if (!g.initializers.count(in->name)) formal.push_back(in);
    std::map<std::string, Tensor> feeds;
    bool npy = false;
    for (auto& spec : o->inputs) {
      std::string name, file;
      const auto eq = spec.find('=');
      if (eq == std::string::npos) {
        DUET_CHECK(formal.size() == 1, "--input '", spec, "' has no NAME=; the model has ", formal.size(),
                   " inputs, so name each one");
        name = formal[0]->name;
        file = spec;
      } else {
        name = spec.substr(0, eq);
        file = spec.substr(eq + 1);
      }
      npy |= file.size() > 4 && file.substr(file.size() - 4) == ".npy";
      DUET_CHECK(!feeds.count(name), "input '", name, "' given twice");
      feeds[name] = io::load_tensor_file(file);
    }
    const auto start = std::chrono::steady_clock::now();
    auto outputs = session.run(feeds);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!o->output_dir.empty()) std::filesystem::create_directories(o->output_dir);
    nlohmann::json j = {{"model", o->model}, {"seconds", seconds}, {"outputs", nlohmann::json::array()}};
    if (o->verbose) {
      nlohmann::json placement = nlohmann::json::array();
      const auto parts = session.partitions();
      const auto backends = session.partition_backends();
      for (size_t p = 0; p < parts.size(); ++p)
        placement.push_back({{"backend", backends[p]}, {"nodes", parts[p].size()}, {"first", parts[p].front()->label()}});
      nlohmann::json refused = nlohmann::json::array();
      for (auto& n : g.nodes)
        if (auto r = session.refusals().find(n.get()); r != session.refusals().end())
          for (auto& [backend, why] : r->second) refused.push_back({{"node", n->label()}, {"backend", backend}, {"reason", why}});
      j["partitions"] = placement;
      j["refused"] = refused;
    }
    // Output names that map to one file name (y:0 and y_0) get their position appended, so none overwrites another.
    std::map<std::string, int> uses;
    for (auto& out : outputs) ++uses[safe_filename(out.name)];
    for (size_t index = 0; index < outputs.size(); ++index) {
      auto& out = outputs[index];
      nlohmann::json jo = {{"name", out.name}};
      if (out.tensor.is_sequence()) {
        jo["type"] = "sequence";
        jo["length"] = out.tensor.sequence().size();
      } else if (!out.tensor.is_none()) {
        jo["type"] = dtype_name(out.tensor.dtype());
        jo["shape"] = out.tensor.dims();
        // Small numeric outputs (class scores, probabilities) are shown with their argmax.
        if (out.tensor.numel() > 0 && out.tensor.numel() <= 16 && dtype_is_float(out.tensor.dtype())) {
          std::vector<double> values;
          for (int64_t i = 0; i < out.tensor.numel(); ++i) values.push_back(out.tensor.get_double(i));
          jo["values"] = values;
          jo["argmax"] = std::max_element(values.begin(), values.end()) - values.begin();
        }
        if (!o->output_dir.empty()) {
          std::string stem = safe_filename(out.name);
          if (uses[stem] > 1) stem += "." + std::to_string(index);
          const std::string path = (std::filesystem::path(o->output_dir) / (stem + (npy ? ".npy" : ".pb"))).string();
          io::save_tensor_file(out.tensor, out.name, path);
          jo["file"] = path;
        }
      }
      j["outputs"].push_back(jo);
    }
    if (o->json) {
      print_json(j, 1);
    } else {
      if (o->verbose) {
        for (auto& p : j["partitions"])
          std::cout << "partition on " << p["backend"].get<std::string>() << ": " << p["nodes"].get<size_t>()
                    << " node(s) from " << p["first"].get<std::string>() << "\n";
        for (auto& r : j["refused"])
          std::cout << "reference kernels: " << r["node"].get<std::string>() << " (" << r["backend"].get<std::string>()
                    << ": " << r["reason"].get<std::string>() << ")\n";
      }
      for (auto& jo : j["outputs"]) {
        std::cout << "output " << jo["name"].get<std::string>() << "  " << jo.value("type", std::string("none"));
        if (jo.contains("shape")) std::cout << "[" << dims_str(jo["shape"].get<Dims>()) << "]";
        if (jo.contains("file")) std::cout << "  -> " << jo["file"].get<std::string>();
        if (jo.contains("values")) {
          std::cout << "  values";
          for (double v : jo["values"]) std::cout << " " << std::setprecision(4) << v;
          std::cout << "  argmax " << jo["argmax"].get<int64_t>();
        }
        std::cout << "\n";
      }
      std::cout << "ran in " << std::fixed << std::setprecision(1) << seconds * 1000 << " ms (" << o->backend << " backend, measured, "
                << o->threads << " thread" << (o->threads > 1 ? "s" : "") << ")\n";
    }
    return 0;
  };
}

}  // namespace duet::cli
