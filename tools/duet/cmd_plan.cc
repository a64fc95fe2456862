// duet plan MODEL --data DIR [--objective O] [limits] [--json] [--report plan.html] [-o OUT_DIR]
// duet plan --solve TABLE.csv [--limit COLUMN=VALUE]... [--minimize COLUMN] [--trade-off COLUMN]
// A front end over plan::plan_model (plan/planner.h) and the exact per-layer
// solver (plan/solver.h): parse, call, print.
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "duet/io/file.h"
#include "duet/core/html.h"
#include "duet/onnx/onnx_io.h"
#include "duet/plan/planner.h"
#include "duet/plan/solver.h"
#include "duet/report/chart.h"
#include "duet/train/distributed.h"

namespace duet::cli {

std::map<std::string, Dims> parse_shape_bindings(const std::vector<std::string>& specs);  // cmd_info.cc

namespace {

struct Options {
  std::string model, data, preprocess, metric = "agreement", objective = "latency", report, output, solve, minimize = "error",
                                       trade_off;
  std::vector<std::string> devices = {"all"}, precisions = {"fp32", "bf16", "fp16", "fp8", "int8"}, shapes, limits;
  std::vector<int64_t> batches = {1};
  double max_drop = 1.0, max_latency_ms = 0, min_throughput = 0, max_power = 0, max_cost = 0, arrival_rate = 0, percentile = 99;
  bool sparsity = false, json = false;
  size_t max_samples = 16, max_held_out = 0, refine = 16;
  int threads = 1;
};

std::string fmt(double v, int prec = 4) { return format_number(v, prec); }

nlohmann::json optional_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

// ---- --solve: a user's own per-layer table ----

int run_solve(const Options& o) {
  plan::Problem p = plan::read_table(o.solve);
  p.objective = o.minimize;
  for (const std::string& l : o.limits) {
    const size_t eq = l.find('=');
    DUET_CHECK(eq != std::string::npos && eq > 0, "--limit expects COLUMN=VALUE, got '", l, "'");
    char* end = nullptr;
    const std::string v = l.substr(eq + 1);
    const double value = std::strtod(v.c_str(), &end);
    DUET_CHECK(!v.empty() && end && *end == '\0', "--limit ", l.substr(0, eq), ": '", v, "' is not a number");
    p.limits[l.substr(0, eq)] = value;
  }
  auto solution_json = [&](const plan::Solution& s) {
    nlohmann::json j = {{"feasible", s.feasible}, {"exact", s.exact}, {"search_nodes", s.nodes}};
    if (!s.feasible) return j;
    for (size_t i = 0; i < p.layers.size(); ++i)
      j["layers"].push_back({{"layer", p.layers[i].name}, {"group", p.layers[i].group},
                             {"option", p.layers[i].options[s.choice[i]].name}});
    for (size_t c = 0; c < p.columns.size(); ++c) j["totals"][p.columns[c]] = s.totals[c];
    if (!s.exact) j["lower_bound"] = s.lower_bound;
    return j;
  };
  if (!o.trade_off.empty()) {
    const auto front = plan::trade_off(p, o.trade_off);
    if (o.json) {
      nlohmann::json j = {{"table", o.solve}, {"minimize", o.minimize}, {"trade_off", o.trade_off}};
      j["front"] = nlohmann::json::array();
      for (const auto& s : front) j["front"].push_back(solution_json(s));
      print_json(j);
      return 0;
    }
    std::cout << front.size() << " plans on the exact front of " << o.trade_off << " vs " << o.minimize << ":\n";
    for (const auto& s : front) {
      std::cout << "  " << o.trade_off << " " << fmt(s.totals[std::find(p.columns.begin(), p.columns.end(), o.trade_off) - p.columns.begin()], 6)
                << "  " << o.minimize << " " << fmt(s.objective(), 6) << "\n";
    }
    return 0;
  }
  const plan::Solution s = plan::solve(p);
  if (!s.feasible) {
    const plan::Infeasibility why = p.limits.empty() ? plan::Infeasibility{} : plan::diagnose(p);
    if (o.json) {
      nlohmann::json j = {{"table", o.solve}, {"feasible", false}, {"binding", why.binding}, {"limit", why.limit},
                          {"nearest", why.nearest}, {"message", why.message()}};
      if (why.plan.feasible) j["nearest_plan"] = solution_json(why.plan);
      print_json(j);
    }
    fail(why.message());
  }
  if (o.json) {
    nlohmann::json j = solution_json(s);
    j["table"] = o.solve;
    j["minimize"] = o.minimize;
    j["limits"] = p.limits;
    print_json(j);
    return 0;
  }
  std::cout << (s.exact ? "optimal" : "best found (search stopped; lower bound " + fmt(s.lower_bound, 6) + ")")
            << " choice for " << p.layers.size() << " layers, minimizing " << o.minimize << ":\n";
  for (size_t i = 0; i < p.layers.size(); ++i)
    std::cout << "  " << p.layers[i].name << (p.layers[i].group.empty() ? "" : " [" + p.layers[i].group + "]") << ": "
              << p.layers[i].options[s.choice[i]].name << "\n";
  std::cout << "totals:";
  for (size_t c = 0; c < p.columns.size(); ++c) {
    std::cout << " " << p.columns[c] << " " << fmt(s.totals[c], 6);
    if (p.limits.count(p.columns[c])) std::cout << " (limit " << fmt(p.limits.at(p.columns[c]), 6) << ")";
    std::cout << (c + 1 < p.columns.size() ? "," : "\n");
  }
  return 0;
}

// ---- planning a model ----

nlohmann::json figures_json(const plan::Figures& f) {
  return {{"score", f.score}, {"value", f.metric_value}, {"drop_points", f.drop_points}, {"samples", f.samples}};
}

nlohmann::json plan_json(const plan::Plan& p) {
  nlohmann::json j = {{"device", p.device},
                      {"device_name", p.device_name},
                      {"batch", p.batch},
                      {"summary", p.summary},
                      {"latency_ms", p.latency_ms},
                      {"latency", p.measured_latency ? "measured (cpu backend, median of 10 runs)" : "modelled"},
                      {"tail_latency_ms", p.tail_latency_ms ? nlohmann::json(std::isfinite(*p.tail_latency_ms) ? *p.tail_latency_ms : -1) : nlohmann::json(nullptr)},
                      {"throughput_per_s", p.throughput},
                      {"energy_mj_per_inference", optional_json(p.energy_mj)},
                      {"cost_per_million_usd", optional_json(p.cost_per_million)},
                      {"cost_source", p.cost_source},
                      {"power_w", p.power_w},
                      {"host_fallback_nodes", p.host_fallback_nodes},
                      {"host_fallback", p.host_fallback},
                      {"accuracy_search", figures_json(p.search)},
                      {"accuracy_held_out", figures_json(p.held_out)},
                      {"accuracy", "measured (bit-exact emulation of the plan on this CPU)"},
                      {"feasible", p.feasible},
                      {"pareto", p.pareto},
                      {"rejected", p.rejected}};
  j["precision"] = p.precision;
  return j;
}

std::string deployment_note(const plan::Plan& p) {
  if (p.device == "host") return "Run with duet run / duet bench --precision " + std::string(p.summary.find("bf16") != std::string::npos ? "bf16" : "fp32") + " on this CPU.";
  std::string s = "Per-node precisions are in the annotated model (annotation \"precision\"); tell the device compiler to "
                  "cast each matrix node as annotated (e.g. TensorRT per-layer precision, Neuron --auto-cast none with "
                  "casts).";
  if (p.host_fallback_nodes) {
    s += " " + std::to_string(p.host_fallback_nodes) + " node(s) fall back to the host CPU (modelled):";
    for (const auto& [what, count] : p.host_fallback) s += " " + std::to_string(count) + "x " + what + ";";
  }
  return s;
}

report::Chart front_chart(const plan::PlanResult& r) {
  report::Chart c;
  c.title = "Plans: latency vs accuracy drop (latency modelled or measured; accuracy measured)";
  c.x = {"latency per batch, ms (log)", true};
  c.y = {"accuracy drop, points of " + r.metric + " (held out)", false};
  c.pareto = true;
  std::map<std::string, report::Series> by_device;
  for (size_t i = 0; i < r.plans.size(); ++i) {
    const plan::Plan& p = r.plans[i];
    auto& s = by_device[p.device];
    s.name = p.device;
    s.x.push_back(p.latency_ms);
    s.y.push_back(p.held_out.drop_points);
    s.labels.push_back(p.device + " b" + std::to_string(p.batch) + " " + p.summary + (static_cast<int>(i) == r.chosen ? " (chosen)" : ""));
  }
  for (auto& [_, s] : by_device) c.series.push_back(s);
  return c;
}

report::Chart sensitivity_chart(const plan::PlanResult& r) {
  report::Chart c;
  c.title = "Layer sensitivity: output noise power with only this layer at each precision (measured)";
  c.kind = report::Kind::Bar;
  c.y = {"squared relative L2 (log)", true};
  std::map<std::string, report::Series> by_option;
  for (const auto& l : r.layers) c.categories.push_back(l.node);
  for (size_t li = 0; li < r.layers.size(); ++li)
    for (const auto& o : r.layers[li].options) {
      if (o.precision == "fp32") continue;
      auto& s = by_option[o.precision];
      s.name = o.precision;
      s.y.resize(r.layers.size(), 0);
      s.y[li] = o.noise;
    }
  for (auto& [_, s] : by_option) c.series.push_back(s);
  return c;
}

std::string report_html(const Options& o, const plan::PlanResult& r) {
  const report::Chart front = front_chart(r), sens = sensitivity_chart(r);
  std::ostringstream f;
  f << "<h1>Plan: " << html_escape(o.model) << "</h1><p>Objective: <b>" << html_escape(r.objective)
    << "</b>, accuracy drop at most " << fmt(o.max_drop) << " points of " << html_escape(r.metric_description)
    << ". Accuracy is measured (bit-exact emulation of each plan on this CPU) on " << r.search_samples
    << " search samples and reported on " << r.held_out_samples
    << " held-out samples; catalog-device latency, energy and cost are modelled; the host CPU's latency is measured.</p>";
  f << "<p>FP32: " << html_escape(r.metric) << " " << fmt(r.fp32_held_out.metric_value) << " (held out), "
    << fmt(r.fp32_search.metric_value) << " (search).</p>";
  if (r.chosen >= 0) {
    const plan::Plan& c = r.plans[r.chosen];
    f << "<h2>Chosen plan</h2><p><b>" << html_escape(c.device_name) << "</b> (" << html_escape(c.device) << "), batch "
      << c.batch << ", " << html_escape(c.summary) << ": " << fmt(c.latency_ms) << " ms per batch ("
      << (c.measured_latency ? "measured" : "modelled") << "), " << fmt(c.throughput) << " inferences/s, "
      << html_escape(r.metric) << " " << fmt(c.held_out.metric_value) << " held out (drop " << fmt(c.held_out.drop_points, 3)
      << " points, measured)";
    if (c.cost_per_million) f << ", $" << fmt(*c.cost_per_million) << " per million (modelled; price: " << html_escape(c.cost_source) << ")";
    f << ".</p><p>" << html_escape(deployment_note(c)) << "</p>";
  } else {
    f << "<h2>No plan meets the request</h2><p>" << html_escape(r.infeasible) << "</p>";
  }
  f << report::svg(front);
  f << "<h2>Every plan considered</h2><table><tr><th>device</th><th>batch</th><th>precisions</th><th>latency ms</th>"
       "<th>inferences/s</th><th>mJ/inference</th><th>$/million</th><th>drop (search)</th><th>drop (held out)</th>"
       "<th>Pareto</th><th>why not chosen</th></tr>";
  for (size_t i = 0; i < r.plans.size(); ++i) {
    const plan::Plan& p = r.plans[i];
    f << "<tr" << (static_cast<int>(i) == r.chosen ? " style=\"font-weight:bold\"" : "") << "><td>" << html_escape(p.device)
      << "</td><td>" << p.batch << "</td><td>" << html_escape(p.summary) << "</td><td>" << fmt(p.latency_ms)
      << (p.measured_latency ? " (measured)" : "") << "</td><td>" << fmt(p.throughput) << "</td><td>"
      << (p.energy_mj ? fmt(*p.energy_mj) : "-") << "</td><td>" << (p.cost_per_million ? fmt(*p.cost_per_million) : "-")
      << "</td><td>" << fmt(p.search.drop_points, 3) << "</td><td>" << fmt(p.held_out.drop_points, 3) << "</td><td>"
      << (p.pareto ? "yes" : "") << "</td><td>" << html_escape(static_cast<int>(i) == r.chosen ? "chosen" : p.rejected)
      << "</td></tr>";
  }
  f << "</table><h2>Layer sensitivity</h2>" << report::svg(sens);
  return report::page("duet plan", f.str());
}

int run_plan(const Options& o) {
  DUET_CHECK(!o.model.empty(), "plan: a MODEL is required (or --solve TABLE.csv)");
  DUET_CHECK(!o.data.empty(), "plan: --data DIR is required (samples to measure accuracy on)");
  plan::PlanRequest r;
  r.objective = plan::parse_objective(o.objective);
  r.max_accuracy_drop = o.max_drop;
  if (o.max_latency_ms > 0) r.max_latency_ms = o.max_latency_ms;
  if (o.min_throughput > 0) r.min_throughput = o.min_throughput;
  if (o.max_power > 0) r.max_power_w = o.max_power;
  if (o.max_cost > 0) r.max_cost_per_million = o.max_cost;
  DUET_CHECK(o.arrival_rate >= 0 && o.max_latency_ms >= 0 && o.min_throughput >= 0 && o.max_power >= 0 && o.max_cost >= 0,
             "plan: limits and --arrival-rate are not negative (0: none)");
  if (o.arrival_rate > 0) r.arrival_rate = o.arrival_rate;
  r.percentile = o.percentile;
  r.devices = o.devices;
  r.precisions = o.precisions;
  r.batches = o.batches;
  r.sparsity = o.sparsity;
  r.metric = eval::parse_metric(o.metric);
  r.max_samples = o.max_samples;
  r.max_held_out = o.max_held_out;
  r.refine = o.refine;
  r.input_shapes = parse_shape_bindings(o.shapes);
  r.threads = o.threads;
  r.progress = progress_display("plan");
  std::shared_ptr<ir::Model> model = onnx_io::load_model(o.model);
  const quant::SampleSource data = quant::sample_folder(o.data, *model->graph, o.preprocess);
  const plan::PlanResult result = plan::plan_model(*model, r, data);
  // Under mpirun every rank holds the same result; rank 0 speaks for them.
  if (train::Communicator* comm = train::mpi_world(); comm && comm->rank() != 0) return result.chosen >= 0 ? 0 : 1;
  if (progress_shown())
    note("plan", fmt(result.search_s, 3) + " s (of which measuring accuracy " + fmt(result.measure_s, 3) + " s, " +
                     std::to_string(result.emulated_models) + " whole-model emulations)");

  nlohmann::json j = {{"model", o.model},
                      {"data", o.data},
                      {"objective", result.objective},
                      {"metric", result.metric},
                      {"metric_description", result.metric_description},
                      {"max_accuracy_drop_points", o.max_drop},
                      {"search_samples", result.search_samples},
                      {"held_out_samples", result.held_out_samples},
                      {"fp32_search", figures_json(result.fp32_search)},
                      {"fp32_held_out", figures_json(result.fp32_held_out)},
                      {"feasible", result.chosen >= 0},
                      {"solver", {{"solves", result.solves},
                                  {"optimality_gap", result.solver_gap},
                                  {"stopped_by_node_limit", result.solves_stopped}}}};
  if (result.chosen >= 0) {
    j["chosen"] = plan_json(result.plans[result.chosen]);
    j["chosen"]["deployment_note"] = deployment_note(result.plans[result.chosen]);
  } else {
    j["infeasible"] = result.infeasible;
  }
  j["plans"] = nlohmann::json::array();
  for (const auto& p : result.plans) j["plans"].push_back(plan_json(p));
  for (const auto& l : result.layers) {
    nlohmann::json lj = {{"node", l.node}, {"op", l.op}};
    for (const auto& c : l.options)
      lj["options"].push_back({{"precision", c.precision}, {"noise", c.noise}, {"task_drop_points", c.task_drop}});
    j["layers"].push_back(lj);
  }

  if (!o.output.empty() && result.chosen >= 0 && !result.plans[result.chosen].measured_latency) {
    // The deployable QDQ form (dynamic activation scales, as emulated), measured again.
    const plan::Deployable dep = plan::deployable_model(result, result.plans[result.chosen], r, data);
    std::filesystem::create_directories(o.output);
    onnx_io::save_model(*dep.model, (std::filesystem::path(o.output) / "plan.qdq.onnx").string());
    j["chosen"]["deployable"] = {{"model", "plan.qdq.onnx"},
                                 {"int8_nodes_as_qdq", dep.int8_nodes},
                                 {"accuracy_held_out", figures_json(dep.held_out)},
                                 {"accuracy", "measured (the QDQ model run by the cpu backend; activation scales computed at run time, "
                                                          "products summed in FP32)"}};
  }
  if (!o.output.empty() && result.chosen >= 0) {
    std::filesystem::create_directories(o.output);
    const auto m = plan::annotated_model(result, result.plans[result.chosen]);
    onnx_io::save_model(*m, (std::filesystem::path(o.output) / "plan.onnx").string());
    if (!result.plans[result.chosen].measured_latency)  // the host's plan is the model itself at a precision
      onnx_io::save_model(*plan::emulated_model(result, result.plans[result.chosen]),
                          (std::filesystem::path(o.output) / "plan.emulated.onnx").string());
    io::write_file_atomically((std::filesystem::path(o.output) / "plan.json").string(), j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", "plan");
  }
  if (!o.report.empty()) {
    report::write_report(o.report, report_html(o, result), report::data(std::vector<report::Chart>{front_chart(result), sensitivity_chart(result)}));
  }
  if (o.json) {
    print_json(j);
  } else {
    std::cout << "FP32 " << result.metric << ": " << fmt(result.fp32_held_out.metric_value) << " on " << result.held_out_samples
              << " held-out samples (" << fmt(result.fp32_search.metric_value) << " on " << result.search_samples
              << " search samples); " << result.layers.size() << " matrix layers planned\n";
    std::printf("%-12s %5s %-28s %11s %11s %10s %10s %8s  %s\n", "device", "batch", "precisions", "latency ms", "infer/s",
                "$/million", "drop(held)", "pareto", "");
    for (size_t i = 0; i < result.plans.size(); ++i) {
      const plan::Plan& p = result.plans[i];
      std::printf("%-12s %5lld %-28s %10.4g%s %11.4g %10s %10.3f %8s  %s\n", p.device.c_str(), static_cast<long long>(p.batch),
                  p.summary.substr(0, 28).c_str(), p.latency_ms, p.measured_latency ? "*" : " ", p.throughput,
                  p.cost_per_million ? fmt(*p.cost_per_million).c_str() : "-", p.held_out.drop_points, p.pareto ? "yes" : "",
                  static_cast<int>(i) == result.chosen ? "<- chosen" : p.rejected.c_str());
    }
    std::cout << "(latency: * measured on this CPU, otherwise modelled" << (o.arrival_rate > 0 ? "; per batch, p" + fmt(o.percentile) + " request latency in the JSON" : "")
              << "; accuracy drop in points, measured)\n";
    if (result.chosen >= 0) std::cout << "chosen: " << result.plans[result.chosen].device << ", batch "
                                      << result.plans[result.chosen].batch << ", " << result.plans[result.chosen].summary << "\n"
                                      << deployment_note(result.plans[result.chosen]) << "\n";
    if (!o.report.empty()) std::cout << "report: " << o.report << "\n";
    if (!o.output.empty() && result.chosen >= 0)
      std::cout << "plan: " << o.output << "/plan.onnx (annotated), " << o.output << "/plan.json"
                << (result.plans[result.chosen].measured_latency ? "" : ", " + o.output + "/plan.emulated.onnx (duet run computes it bit-exactly), " +
                    o.output + "/plan.qdq.onnx (INT8 nodes as QDQ, " + result.metric + " " +
                    fmt(j["chosen"]["deployable"]["accuracy_held_out"]["value"].get<double>()) + " held out, measured)")
                << "\n";
  }
  if (result.chosen < 0) throw CheckFailed(result.infeasible);
  return 0;
}

}  // namespace

Runner add_plan(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("plan",
                                 "Choose device, batch and per-layer precision for an objective under limits, with "
                                 "measured accuracy and modelled cost; or solve a per-layer table (--solve)");
  cmd->add_option("model", o->model, "ONNX model file");
  cmd->add_option("--data", o->data, "Samples (test_data_set_*/input_*.pb folders, .npy/.pb files or images), with their "
                                     "labels or text beside them for task metrics; even-numbered ones search, odd ones are held out");
  cmd->add_option("--preprocess", o->preprocess, "Image preprocessing spec (as duet quantize)");
  cmd->add_option("--metric", o->metric, "Task metric: agreement (with FP32), top1[,labels=A,B,...], cer,keys=FILE[,spaces=ignore] or boxes (text detectors)")
      ->capture_default_str();
  cmd->add_option("--objective", o->objective, "latency | cost | energy | throughput | accuracy")->capture_default_str();
  cmd->add_option("--max-accuracy-drop", o->max_drop, "Points of the task metric the plan may lose against FP32")
      ->capture_default_str();
  cmd->add_option("--max-latency-ms", o->max_latency_ms, "Latency limit per batch (0: none)");
  cmd->add_option("--min-throughput", o->min_throughput, "Inferences per second at least (0: none)");
  cmd->add_option("--arrival-rate", o->arrival_rate,
                  "Requests per second (Poisson): --max-latency-ms then bounds the modelled request latency at "
                  "--percentile, batch filling and queueing included (0: none)");
  cmd->add_option("--percentile", o->percentile, "Tail percentile of request latency with --arrival-rate")
      ->check(CLI::Range(1.0, 99.999))
      ->capture_default_str();
  cmd->add_option("--max-power", o->max_power, "Device TDP limit, W (0: none)");
  cmd->add_option("--max-cost", o->max_cost, "USD per million inferences at most (0: none)");
  cmd->add_option("--device", o->devices, "Catalog ids, host, or all (the calibrated catalog and this CPU)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--precision", o->precisions, "Precisions a layer may take (numerics::Precision texts)")
      ->delimiter(';')
      ->capture_default_str();
  cmd->add_option("--batch", o->batches, "Batch sizes to consider")->delimiter(',')->capture_default_str();
  cmd->add_flag("--sparsity", o->sparsity, "Also offer 2:4 sparse weights for each precision");
  cmd->add_option("--max-samples", o->max_samples, "At most this many search samples (and held-out ones)")->capture_default_str();
  cmd->add_option("--max-held-out", o->max_held_out, "At most this many held-out samples (0: as --max-samples)")
      ->capture_default_str();
  cmd->add_option("--refine", o->refine,
                  "With --objective accuracy: at most this many whole models measured per device and batch in a local "
                  "search around the solver's plan (0: none)")
      ->capture_default_str();
  cmd->add_option("--shape", o->shapes, "Bind an input dimension for the simulator, NAME=1x3x48x320 (repeatable)");
  cmd->add_option("--threads", o->threads, "Intra-op threads for measurements")->check(CLI::Range(1, 256));
  cmd->add_option("--report", o->report, "Write a self-contained HTML report (and its data as JSON beside it)");
  cmd->add_option("-o,--output", o->output,
                  "Directory for the chosen plan: plan.onnx (each matrix node annotated with its precision), "
                  "plan.emulated.onnx (what duet run computes bit-exactly), plan.qdq.onnx (its INT8 nodes as QDQ with "
                  "activation scales computed at run time, accuracy measured again) and plan.json");
  cmd->add_option("--solve", o->solve, "Solve a per-layer table instead: CSV with layer, option, [group,] value columns");
  cmd->add_option("--minimize", o->minimize, "--solve: the column to minimize")->capture_default_str();
  cmd->add_option("--limit", o->limits, "--solve: COLUMN=VALUE, the most a column's sum may be (repeatable)");
  cmd->add_option("--trade-off", o->trade_off, "--solve: print the exact front of this column against --minimize");
  cmd->add_flag("--json", o->json, "Print the results as JSON");
  return [o] { return o->solve.empty() ? run_plan(*o) : run_solve(*o); };
}

}  // namespace duet::cli
