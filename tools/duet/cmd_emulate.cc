// duet emulate MODEL [--datapath P]... [--data DIR] [--json] [--report out.html] [-o out.onnx]
// A front end over quant::emulate_precisions (quant/emulation.h), which runs the model's Conv/MatMul/Gemm through each datapath (numerics::Precision:
// input formats and scales, accumulator, output format; presets name real
// devices' matrix engines) and measures how far its outputs move from FP32 on
// the given samples: relative L2, SQNR, max |error|, argmax agreement. The
// errors are measured (bit-exact emulation on this CPU); nothing is modelled.
#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "commands.h"
#include "duet/core/html.h"
#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/emulate.h"
#include "duet/quant/emulation.h"
#include "duet/quant/ptq.h"
#include "duet/report/chart.h"

namespace duet::cli {

std::map<std::string, Dims> parse_shape_bindings(const std::vector<std::string>& specs);                       // cmd_info.cc

namespace {

struct Options {
  std::string model, data, preprocess, report, output, metric = "agreement";
  std::vector<std::string> datapaths, shapes, exclude_ops, exclude_nodes;
  size_t max_samples = 8;
  int threads = 1;
  std::string backend = "cpu";
  bool json = false, list = false;
};

using Result = quant::EmulatedPrecision;

int list_presets(bool json) {
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& d : numerics::precision_presets())
      j.push_back({{"name", d.name}, {"spec", d.spec()}, {"devices", d.devices}});
    print_json(j, 2);
    return 0;
  }
  for (const auto& d : numerics::precision_presets())
    std::cout << d.name << "\n    " << d.spec() << "\n    " << d.devices << "\n";
  return 0;
}

std::string fmt(double v, int prec = 4) { return format_number(v, prec); }

// One bar per datapath.
report::Chart datapath_chart(const std::vector<Result>& results, const std::string& value_label,
                             const std::function<double(const Result&)>& value) {
  report::Chart c;
  c.title = value_label + " (measured)";
  c.kind = report::Kind::Bar;
  c.x.label = "datapath";
  c.y.label = value_label + " (measured)";
  report::Series s;
  s.name = value_label;
  s.color = "#4a7ab5";
  for (const auto& r : results) {
    c.categories.push_back(r.precision.name);
    s.y.push_back(value(r));
  }
  c.series = {s};
  return c;
}

std::vector<report::Chart> charts(const std::vector<Result>& results) {
  return {datapath_chart(results, "SQNR dB (mean over outputs)",
                         [](const Result& r) {
                           double s = 0;
                           for (const auto& oc : r.comparison.outputs) s += oc.sqnr_db;
                           return r.comparison.outputs.empty() ? 0.0 : s / r.comparison.outputs.size();
                         }),
          datapath_chart(results, "mean relative L2 error", [](const Result& r) { return r.comparison.rel_l2; })};
}

std::string report_html(const Options& o, const std::vector<Result>& results, size_t samples) {
  const std::vector<report::Chart> c = charts(results);
  std::ostringstream f;
  f << "<h1>Precision emulation: " << html_escape(o.model) << "</h1><p>Measured: every Conv/MatMul/Gemm computed bit-exactly as the datapath would "
    << "(inputs rounded with dynamic scales, exact products, the stated accumulator, the output format), compared "
    << "with FP32 on " << samples << " sample(s)" << (o.data.empty() ? " (seeded random inputs)" : " from " + html_escape(o.data))
    << ".</p><h2>Output SQNR (dB, higher is closer to FP32)</h2>" << report::svg(c[0])
    << "<h2>Relative L2 error</h2>" << report::svg(c[1])
    << "<h2>Datapaths</h2><table><tr><th>datapath</th><th>spec</th><th>emulated nodes</th><th>kept FP32</th>"
       "<th>rel L2</th><th>argmax changed</th><th>ms/sample (measured, emulated)</th></tr>";
  for (const auto& r : results) {
    f << "<tr><td>" << html_escape(r.precision.name) << "</td><td>" << html_escape(r.precision.spec()) << "</td><td>"
      << r.rewrite.emulated << "</td><td>" << r.rewrite.kept_fp32.size() << "</td><td>" << fmt(r.comparison.rel_l2)
      << "</td><td>" << fmt(100 * r.comparison.argmax_changed, 3) << "%</td><td>" << fmt(r.ms_per_sample, 4) << "</td></tr>";
  }
  f << "</table><h2>Per output</h2><table><tr><th>datapath</th><th>output</th><th>rel L2</th><th>SQNR dB</th>"
       "<th>max |err|</th><th>argmax agreement</th></tr>";
  for (const auto& r : results)
    for (const auto& oc : r.comparison.outputs)
      f << "<tr><td>" << html_escape(r.precision.name) << "</td><td>" << html_escape(oc.name) << "</td><td>"
        << fmt(oc.rel_l2) << "</td><td>" << fmt(oc.sqnr_db) << "</td><td>" << fmt(oc.max_abs) << "</td><td>"
        << fmt(100 * oc.argmax_agree, 4) << "%</td></tr>";
  f << "</table><h2>Nodes kept in FP32</h2><ul>";
  for (const auto& r : results)
    for (const auto& [node, why] : r.rewrite.kept_fp32)
      f << "<li>" << html_escape(r.precision.name) << ": " << html_escape(node) << ": " << html_escape(why) << "</li>";
  f << "</ul>";
  return report::page("duet emulate", f.str());
}

int run(const Options& o) {
  if (o.list) return list_presets(o.json);
  DUET_CHECK(!o.model.empty(), "emulate: a MODEL is required (or --list)");
  quant::EmulationRequest request;
  if (!o.datapaths.empty()) request.precisions = o.datapaths;
  DUET_CHECK(o.output.empty() || request.precisions.size() == 1, "emulate: -o writes one model; give exactly one --datapath");
  request.rewrite.exclude_op_types.insert(o.exclude_ops.begin(), o.exclude_ops.end());
  request.rewrite.exclude_nodes.insert(o.exclude_nodes.begin(), o.exclude_nodes.end());
  request.max_samples = o.max_samples;
  request.task = eval::parse_metric(o.metric);
  DUET_CHECK(!request.task.needs_references() || !o.data.empty(), "emulate: --metric ", request.task.name(),
             " reads the reference beside each sample: give --data");
  request.run.threads = o.threads;
  request.run.backend = o.backend;
  request.keep_models = !o.output.empty();
  request.progress = progress_display("emulate");
  std::shared_ptr<ir::Model> model = onnx_io::load_model(o.model);
  const quant::SampleSource data = o.data.empty() ? quant::seeded_samples(*model->graph, parse_shape_bindings(o.shapes))
                                                  : quant::sample_folder(o.data, *model->graph, o.preprocess);
  if (progress_shown()) note("emulate", "FP32 reference outputs");
  quant::EmulationResult emulation = quant::emulate_precisions(*model, request, data);
  const std::vector<Result>& results = emulation.precisions;
  if (!o.output.empty()) onnx_io::save_model(*results.front().model, o.output);
  if (!o.report.empty()) report::write_report(o.report, report_html(o, results, emulation.samples), report::data(charts(results)));

  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"samples", emulation.samples},
                        {"data", o.data.empty() ? "seeded random inputs" : o.data},
                        {"figures", "measured (bit-exact emulation on this CPU)"},
                        {"task_metric", {{"metric", request.task.name()},
                                         {"description", request.task.description()},
                                         {"fp32", emulation.fp32_task_value}}}};
    for (const auto& r : results) {
      nlohmann::json d = {{"datapath", r.precision.name},
                          {"spec", r.precision.spec()},
                          {"emulated_nodes", r.rewrite.emulated},
                          {"rel_l2", r.comparison.rel_l2},
                          {"argmax_changed", r.comparison.argmax_changed},
                          {"task_value", r.comparison.task_value},
                          {"task_drop_points", r.comparison.task_drop_points},
                          {"measured_ms_per_sample", r.ms_per_sample}};
      for (const auto& [node, why] : r.rewrite.kept_fp32) d["kept_fp32"].push_back({{"node", node}, {"reason", why}});
      for (const auto& oc : r.comparison.outputs)
        d["outputs"].push_back({{"name", oc.name},
                                {"rel_l2", oc.rel_l2},
                                {"sqnr_db", oc.sqnr_db},
                                {"max_abs", oc.max_abs},
                                {"argmax_agree", oc.argmax_agree},
                                {"rows", oc.rows}});
      j["datapaths"].push_back(d);
    }
    print_json(j, 2);
    return 0;
  }
  std::cout << "measured on " << emulation.samples << " sample(s) "
            << (o.data.empty() ? std::string("(seeded random inputs; give --data for real ones)") : "from " + o.data)
            << ", FP32 vs each datapath (bit-exact emulation on this CPU):\n";
  std::printf("%-18s %6s %6s %11s %9s %11s %9s %12s\n", "datapath", "nodes", "fp32", "rel L2", "SQNR dB", "max |err|",
              "argmax", "ms/sample");
  for (const auto& r : results) {
    for (size_t k = 0; k < r.comparison.outputs.size(); ++k) {
      const auto& oc = r.comparison.outputs[k];
      std::printf("%-18s %6d %6zu %11.4g %9.2f %11.4g %8.3f%% %12.2f  %s\n", k == 0 ? r.precision.name.c_str() : "",
                  r.rewrite.emulated, r.rewrite.kept_fp32.size(), oc.rel_l2, oc.sqnr_db, oc.max_abs,
                  100 * oc.argmax_agree, r.ms_per_sample, oc.name.c_str());
    }
    if (request.task.kind != eval::MetricKind::Agreement)
      std::cout << "    " << request.task.description() << ": " << format_number(100 * r.comparison.task_value) << "% (FP32 "
                << format_number(100 * emulation.fp32_task_value) << "%, drop "
                << format_number(r.comparison.task_drop_points, 3) << " points)\n";
    // Kept nodes grouped by reason (--json lists every one).
    std::map<std::string, std::vector<std::string>> by_reason;
    for (const auto& [node, why] : r.rewrite.kept_fp32) by_reason[why].push_back(node);
    for (const auto& [why, nodes] : by_reason) {
      std::cout << "    kept FP32 (" << why << "): " << nodes.size() << " node(s): " << nodes[0];
      if (nodes.size() > 1) std::cout << ", " << nodes[1] << (nodes.size() > 2 ? ", ..." : "");
      std::cout << "\n";
    }
  }
  if (!o.report.empty()) std::cout << "report: " << o.report << "\n";
  if (!o.output.empty()) std::cout << "emulated model: " << o.output << "\n";
  return 0;
}

}  // namespace

Runner add_emulate(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("emulate",
                                 "Run a model's Conv/MatMul/Gemm through device datapaths (formats, scales, accumulator) "
                                 "and measure the output error against FP32");
  cmd->add_option("model", o->model, "ONNX model file");
  cmd->add_option("--datapath,-d", o->datapaths,
                  "Preset (see --list) or spec x=FMT[/SCALING],w=FMT[/SCALING],acc=ACC,out=FMT[,round=R][,block=N] "
                  "(repeatable; default: bf16 fp16 fp8 int8)");
  cmd->add_flag("--list", o->list, "List the datapath presets and the devices they stand for");
  cmd->add_option("--data", o->data, "Samples: test_data_set_*/input_*.pb folders, .npy/.pb files or images (default: one seeded random input)");
  cmd->add_option("--preprocess", o->preprocess, "Image preprocessing spec (as duet quantize)");
  cmd->add_option("--shape", o->shapes, "Bind an input shape for random inputs, NAME=1x3x48x320 (repeatable)");
  cmd->add_option("--metric", o->metric,
                  "Task metric beside the output error: agreement (default), top1[,labels=A,B,...], "
                  "cer,keys=FILE[,spaces=ignore] or boxes (references beside the --data samples)");
  cmd->add_option("--max-samples", o->max_samples, "Use at most this many samples")->capture_default_str();
  cmd->add_option("--exclude-op", o->exclude_ops, "Keep every node of this op type (Conv, MatMul, Gemm) in FP32 (repeatable)");
  cmd->add_option("--exclude-node", o->exclude_nodes, "Keep this node in FP32 (repeatable)");
  cmd->add_option("--threads", o->threads, "Intra-op threads")->check(CLI::Range(1, 256));
  add_backend_option(cmd, o->backend, "Executor for the FP32 parts: cpu (oneDNN) or reference")
      ->capture_default_str();
  cmd->add_option("--report", o->report, "Write a self-contained HTML report");
  cmd->add_option("-o,--output", o->output, "Write the emulated model (com.duet Emulated* nodes; one --datapath)");
  cmd->add_flag("--json", o->json, "Print the results as JSON");
  return [o] { return run(*o); };
}

}  // namespace duet::cli
