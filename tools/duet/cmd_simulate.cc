// duet simulate MODEL_OR_CSV --device A[,B] [--precision P]... [--batch 1,8,64]
//   [--dataflow os|ws|is] [--auto-cast none|matmul|all --auto-cast-type T]
//   [--set key=value] [--threads N] [--validate [--runs N]] [--json] [--report out.html]
// Costs an ONNX model or a SCALE-Sim topology CSV on devices from the catalog
// (sim::sweep_model / sweep_topology: device x precision x batch); --validate
// also runs it on the cpu backend and reports measured against modelled per node.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "commands.h"
#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/report/chart.h"
#include "duet/sim/report.h"
#include "duet/sim/simulate.h"
#include "duet/sim/sweep.h"
#include "duet/sim/topology.h"
#include "duet/measure/validate.h"

namespace duet::cli {

std::map<std::string, Dims> parse_shape_bindings(const std::vector<std::string>& specs);  // cmd_info.cc

namespace {

std::vector<std::string> split_list(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (auto& v : values) {
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) out.push_back(item);
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void print_validation(std::ostream& out, const sim::HostValidation& v) {
  auto pct = [](double e) { std::ostringstream s; s << std::showpos << std::fixed << std::setprecision(1) << 100 * e << "%"; return s.str(); };
  out << "\nvalidation on this machine (" << v.threads << " thread" << (v.threads > 1 ? "s" : "") << ", median of " << v.runs
      << " runs, load average " << std::setprecision(3) << v.load_average << "):\n"
      << std::left << std::setw(28) << "node" << std::setw(20) << "op" << std::setw(10) << "class" << std::right
      << std::setw(14) << "modelled ms" << std::setw(14) << "measured ms" << std::setw(10) << "error" << "\n";
  for (auto& r : v.rows) {
    out << std::left << std::setw(28) << r.name.substr(0, 27) << std::setw(20) << r.op.substr(0, 19) << std::setw(10)
        << (r.modelled ? r.cpu_class : "folded") << std::right << std::fixed << std::setprecision(3) << std::setw(14)
        << r.predicted_s * 1e3 << std::setw(14) << r.measured_s * 1e3 << std::setw(10)
        << (r.modelled && r.measured ? pct(r.error()) : "-") << "\n" << std::defaultfloat;
  }
  out << std::fixed << std::setprecision(2) << "total: modelled " << v.predicted_total_s * 1e3 << " ms, measured "
      << v.measured_total_s * 1e3 << " ms (median latency; per-node medians sum to " << v.measured_nodes_s * 1e3
      << " ms), error " << pct(v.total_error()) << "; median |node error| " << std::setprecision(1)
      << 100 * v.median_abs_node_error() << "%\n" << std::defaultfloat;
}

}  // namespace

Runner add_simulate(CLI::App& app) {
  struct Options {
    std::string input, report, dir = sim::default_devices_dir(), dataflow;
    std::vector<std::string> devices, batches{"1"}, sets, shapes, precisions;
    sim::SimOptions sim;
    bool json = false, nodes = false, validate = false;
    int runs = 10;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("simulate", "Model latency, throughput, energy and cost of a model on accelerators (all figures modelled)");
  cmd->add_option("model", o->input, "ONNX model, or SCALE-Sim topology CSV (.csv: conv rows or GEMM M,N,K rows)")->required();
  cmd->add_option("--device", o->devices, "Device ids, comma-separated, or 'all' (see duet devices)")->required();
  cmd->add_option("--precision", o->precisions, "Default precision of every node without its own \"precision\" annotation: a preset (fp32, tf32, bf16, fp16, "
                  "fp8, int8, int4, w8a16, w4a16...) or a spec like int8,sparsity=2:4 (see duet emulate --list; default fp32); "
                  "repeat to sweep several")->allow_extra_args(false);
  cmd->add_option("--batch", o->batches, "Batch sizes, comma-separated (default 1)");
  cmd->add_option("--dataflow", o->dataflow, "Systolic dataflow: os, ws or is (default: the device's first)");
  cmd->add_option("--auto-cast", o->sim.auto_cast, "Cast matrix ops (matmul), every op (all) or nothing (none, default)");
  cmd->add_option("--auto-cast-type", o->sim.auto_cast_type, "Precision for --auto-cast: bf16 (default), fp16, tf32, fp8, or any precision text");
  cmd->add_flag("--sparse-2-4", o->sim.sparse_2to4, "Weights of matrix ops pruned 2:4 (uses the device's sparsity speedup)");
  cmd->add_option("--set", o->sets, "Override a device parameter, KEY=VALUE (e.g. matrix.rows=128); repeatable");
  cmd->add_option("--shape", o->shapes, "Bind an ONNX input shape, NAME=1x3x224x224 (batch still replaces dim 0)");
  cmd->add_option("--devices", o->dir, "Catalog folder (default: $DUET_DEVICES or the source tree's devices/)");
  cmd->add_option("--threads", o->sim.threads, "Host CPU: threads the model runs on (kernel rates measured at that count)")
      ->check(CLI::Range(1, 256));
  cmd->add_flag("--validate", o->validate,
                "Host CPU: also run the model on the cpu backend and compare measured with modelled time per node");
  cmd->add_option("--runs", o->runs, "--validate: measured rounds (median; each one plain and one profiled run)")
      ->check(CLI::Range(1, 10000));
  cmd->add_flag("--json", o->json, "Print results as JSON");
  cmd->add_flag("--nodes", o->nodes, "Also print the per-node table (first device, first batch)");
  cmd->add_option("--report", o->report, "Write a self-contained HTML report");
  return [o]() {
    const auto t0 = std::chrono::steady_clock::now();
    if (!o->dataflow.empty()) o->sim.dataflow = sim::parse_dataflow(o->dataflow);
    sim::validate(o->sim);
    sim::SweepRequest request;
    request.catalog_dir = o->dir;
    request.devices = split_list(o->devices);
    request.batches.clear();
    for (auto& b : split_list(o->batches)) {
      char* end = nullptr;
      const long long v = std::strtoll(b.c_str(), &end, 10);
      DUET_CHECK(end && *end == '\0' && v > 0, "--batch expects positive integers, got '", b, "'");
      request.batches.push_back(v);
    }
    if (!o->precisions.empty()) request.precisions = o->precisions;
    for (auto& s : o->sets) request.overrides.push_back(sim::parse_override(s));
    request.options = o->sim;
    request.input_shapes = parse_shape_bindings(o->shapes);
    request.progress = progress_display("simulate");
    const bool onnx = !ends_with(o->input, ".csv");
    const sim::Sweep sweep = onnx ? sim::sweep_model(*[&] {
      auto model = onnx_io::load_model(o->input);
      ir::verify(*model->graph);
      return model;
    }(), request)
                                  : sim::sweep_topology(sim::read_topology_csv(o->input), request);
    const std::vector<sim::Device>& devices = sweep.devices;
    const std::vector<int64_t>& batches = request.batches;
    std::vector<sim::SimResult> results;
    for (auto& p : sweep.points) results.push_back(p.result);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::optional<sim::HostValidation> validation;
    if (o->validate) {
      DUET_CHECK(onnx, "--validate runs an ONNX model, not a topology CSV");
      DUET_CHECK(devices.size() == 1 && devices.front().cpu, "--validate compares the host CPU model: give --device host");
      DUET_CHECK(batches.size() == 1 && batches.front() == 1, "--validate runs batch 1 (set other shapes with --shape)");
      DUET_CHECK(request.precisions.size() == 1, "--validate compares one precision");
      sim::SimOptions vo = o->sim;
      vo.precision = request.precisions.front();
      validation = measure::validate_host(o->input, request.input_shapes, devices.front(), vo, {o->runs, 2});
    }
    const sim::SweepPoint& first = sweep.points.front();

    const std::string title = "duet simulate " + o->input;
    if (!o->report.empty())
      report::write_report(o->report, sim::html_report(title, results, validation ? &*validation : nullptr),
                           sim::report_data(results));
    if (o->json) {
      nlohmann::json j{{"input", o->input}, {"modelled", true}, {"precision", request.precisions.front()},
                       {"precisions", request.precisions},
                       {"auto_cast", o->sim.auto_cast}, {"auto_cast_type", o->sim.auto_cast_type},
                       {"seconds", elapsed}, {"results", nlohmann::json::array()}};
      for (auto& p : sweep.points) {
        nlohmann::json r = sim::to_json(p.result);
        r["default_precision"] = p.precision;
        j["results"].push_back(r);
      }
      if (validation) j["validation"] = sim::to_json(*validation);
      print_json(j, 2);
      return 0;
    }
    std::cout << "All figures modelled (not measured)" << (validation ? ", except the validation below" : "") << ". "
              << first.nodes << " nodes";
    if (first.unknown_cost_nodes) std::cout << " (" << first.unknown_cost_nodes << " left out: shapes unknown)";
    std::cout << ", precision";
    for (auto& p : request.precisions) std::cout << " " << p;
    if (o->sim.auto_cast != "none") std::cout << ", auto-cast " << o->sim.auto_cast << " to " << o->sim.auto_cast_type;
    std::cout << "\n"
              << std::left << std::setw(18) << "device" << std::setw(18) << "precision" << std::right << std::setw(7) << "batch"
              << std::setw(12) << "latency ms"
              << std::setw(13) << "infer/s" << std::setw(13) << "mJ/infer" << std::setw(9) << "compute" << std::setw(9) << "on-chip"
              << std::setw(8) << "DRAM" << std::setw(10) << "transfer" << std::setw(10) << "$/1M" << std::setw(7) << "host" << "\n";
    for (auto& p : sweep.points) {
      const sim::SimResult& r = p.result;
      const double e = r.energy.total() > 0 ? r.energy.total() : 1;
      auto pct = [&](double v) { std::ostringstream s; s << std::fixed << std::setprecision(1) << 100 * v / e << "%"; return s.str(); };
      std::ostringstream cost;
      if (r.cost_per_million_usd) cost << std::setprecision(3) << *r.cost_per_million_usd; else cost << "-";
      std::cout << std::left << std::setw(18) << r.device_id << std::setw(18) << p.precision.substr(0, 17) << std::right
                << std::setw(7) << r.batch << std::setw(12)
                << std::setprecision(4) << r.latency_s * 1e3 << std::setw(13) << r.throughput_per_s << std::setw(13)
                << r.energy_per_inference_j * 1e3 << std::setw(9) << pct(r.energy.compute_j) << std::setw(9) << pct(r.energy.on_chip_j)
                << std::setw(8) << pct(r.energy.dram_j) << std::setw(10) << pct(r.energy.transfer_j) << std::setw(10) << cost.str()
                << std::setw(7) << r.host_nodes << "\n";
    }
    // Where each device's layers turn compute-bound (roofline, at the first batch's shapes).
    std::cout << "compute-bound from batch (roofline; layers: median / max):\n";
    for (size_t d = 0; d < devices.size(); ++d) {
      const auto& r = results[d * request.precisions.size() * batches.size()];
      std::vector<int64_t> b;
      int never = 0;
      for (auto& n : r.nodes) {
        if (n.on_host) continue;
        if (n.compute_bound_batch > 0) b.push_back(n.compute_bound_batch); else ++never;
      }
      std::sort(b.begin(), b.end());
      std::cout << "  " << std::left << std::setw(18) << r.device_id << std::right;
      if (!b.empty()) std::cout << b[b.size() / 2] << " / " << b.back();
      if (never) std::cout << (b.empty() ? "" : ", ") << never << " never (memory-bound at any batch)";
      std::cout << "\n";
    }
    if (o->nodes) {
      const auto& r = results.front();
      std::cout << "\nnodes on " << r.device_id << " at batch " << r.batch << ":\n"
                << std::left << std::setw(28) << "node" << std::setw(14) << "op" << std::setw(6) << "prec" << std::right
                << std::setw(11) << "time us" << std::setw(9) << "bound" << std::setw(12) << "FLOP/B" << std::setw(11) << "uJ"
                << std::setw(10) << "cycles" << "  placement\n";
      for (auto& n : r.nodes) {
        std::cout << std::left << std::setw(28) << n.name.substr(0, 27) << std::setw(14) << n.op.substr(0, 13) << std::setw(6)
                  << n.precision << std::right << std::setw(11) << std::setprecision(4) << n.time_s * 1e6 << std::setw(9) << n.bound
                  << std::setw(12) << n.intensity << std::setw(11) << n.energy.total() * 1e6 << std::setw(10)
                  << (n.systolic_cycles >= 0 ? std::to_string(n.systolic_cycles) : "-") << "  "
                  << (n.on_host ? "host (" + n.fallback_reason + ")" : r.device_id) << "\n";
      }
    }
    if (validation) print_validation(std::cout, *validation);
    std::cout << "simulated " << first.nodes << " nodes x " << devices.size() << " devices x " << request.precisions.size()
              << " precisions x " << batches.size() << " batches in " << std::setprecision(3) << elapsed * 1e3 << " ms"
              << (o->report.empty() ? "" : "; report: " + o->report) << "\n";
    return 0;
  };
}

}  // namespace duet::cli
