// duet bench MODEL: measured latency of a model on this machine — warm-up
// runs, then median/min/max over --runs, throughput, and the process's peak
// RSS. Inputs are seeded uniform [0, 1) tensors of the model's input shapes
// (bind unknown dimensions with --shape).
#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>

#include "commands.h"
#include "duet/io/tensor_file.h"
#include "duet/io/file.h"
#include "duet/core/process.h"
#include "duet/onnx/onnx_io.h"
#include "duet/runtime/session.h"

namespace duet::cli {

std::map<std::string, Dims> parse_shape_bindings(const std::vector<std::string>& specs);  // cmd_info.cc
int run_gemm_bench(int64_t m, int64_t n, int64_t k, const std::string& dtype, int threads, int runs, bool json);  // cmd_bench_gemm.cc

Runner add_bench(CLI::App& app) {
  struct Options {
    std::string model;
    std::vector<std::string> shapes;
    std::string backend = "cpu";
    std::string precision = "fp32";
    int threads = 1, runs = 20, warmup = 3;
    double duration = 0;
    std::vector<std::string> inputs, ranges;
    std::string export_times;
    int64_t m = 1024, n = 1024, k = 1024;
    std::string dtype = "fp32";
    bool json = false, profile = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("bench", "Measure a model's latency on this machine (median of several runs)");
  cmd->add_option("model", o->model, "ONNX model file, or 'gemm' for a oneDNN GEMM against the measured peak")->required();
  cmd->add_option("--m", o->m, "gemm: rows of A and C")->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  cmd->add_option("--n", o->n, "gemm: columns of B and C")->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  cmd->add_option("--k", o->k, "gemm: the reduction length")->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  cmd->add_option("--dtype", o->dtype, "gemm: fp32, bf16 (FP32 accumulation) or int8 (u8 x s8 -> s32)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  cmd->add_option("--shape", o->shapes, "Bind an input shape, NAME=1x3x640x640 (repeatable)");
  add_backend_option(cmd, o->backend, "cpu (graph optimizer + oneDNN, default) or reference");
  cmd->add_option("--threads", o->threads, "Intra-op threads")->check(CLI::Range(1, 256));
  cmd->add_option("--precision", o->precision, "fp32; bf16 (cpu backend: Conv/ConvTranspose/MatMul inputs rounded to BF16, FP32 accumulation; native with AVX512-BF16, emulated elsewhere); int8 (a QDQ model from duet quantize: integer kernels on the cpu backend)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  cmd->add_option("--runs", o->runs, "Timed runs")->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", o->warmup, "Untimed runs first")->check(CLI::Range(0, 1000));
  cmd->add_option("--duration", o->duration, "Keep timing until this many seconds have passed too (at least --runs runs)")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("-i,--input", o->inputs, "Time on real inputs, NAME=FILE (.npy or .pb; repeatable); the rest are seeded");
  cmd->add_option("--range", o->ranges,
                  "Seed this input in [LO, HI), NAME=LO:HI (repeatable; default [0, 1) for floats, [0, rows) for token ids "
                  "that index an embedding, else [0, 2))");
  cmd->add_option("--export-times", o->export_times, "Write every timed run's milliseconds as JSON to this file");
  cmd->add_flag("--profile", o->profile, "Also time every node: per-node time and the share per op type");
  cmd->add_flag("--json", o->json, "Print as JSON");
  return [o]() {
    if (o->model == "gemm") return run_gemm_bench(o->m, o->n, o->k, o->dtype, o->threads, o->runs, o->json);
    std::shared_ptr<ir::Model> model = onnx_io::load_model(o->model);
    runtime::SessionOptions options;
    options.threads = o->threads;
    options.backend = o->backend;
    options.precision = parse_precision(o->precision, o->backend, *model->graph);
    options.profile = o->profile;
    const auto shapes = parse_shape_bindings(o->shapes);
    std::map<std::string, Tensor> given;
    for (const std::string& spec : o->inputs) {
      const auto eq = spec.find('=');
      DUET_CHECK(eq != std::string::npos && eq > 0, "--input expects NAME=FILE, got '", spec, "'");
      DUET_CHECK(given.emplace(spec.substr(0, eq), io::load_tensor_file(spec.substr(eq + 1))).second, "input '",
                 spec.substr(0, eq), "' given twice");
    }
    std::map<std::string, std::pair<double, double>> ranges;
    for (const std::string& spec : o->ranges) {
      const NamedRange r = parse_named_range("--range", spec);
      DUET_CHECK(ranges.emplace(r.name, std::make_pair(r.lo, r.hi)).second, "--range: '", r.name, "' given twice");
    }
    const std::map<std::string, Tensor> feeds = runtime::seeded_feeds(*model->graph, shapes, given, ranges);
    const auto t0 = std::chrono::steady_clock::now();
    runtime::prepare_model(*model, options);
    runtime::Session session(model, options);
    const double setup_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (int i = 0; i < o->warmup; ++i) session.run(feeds);
    session.reset_node_times();
    std::vector<double> ms;
    const Progress progress = progress_display("bench");
    const auto timing = std::chrono::steady_clock::now();
    while (int(ms.size()) < o->runs ||
           (std::chrono::duration<double>(std::chrono::steady_clock::now() - timing).count() < o->duration && ms.size() < 1000000)) {
      const auto s = std::chrono::steady_clock::now();
      session.run(feeds);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
      if (progress) {  // the runs planned: --runs, or as many as --duration's remaining time holds at the rate so far
        const double so_far = std::chrono::duration<double>(std::chrono::steady_clock::now() - timing).count();
        const double more = o->duration > so_far ? (o->duration - so_far) / (so_far / double(ms.size())) : 0;
        progress("timed runs", ms.size(), std::max<size_t>(size_t(o->runs), ms.size() + size_t(more)));
      }
    }
    if (progress) progress("timed runs", ms.size(), ms.size());
    const int runs = int(ms.size());
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    // Percentiles between order statistics (NumPy's default, linear).
    auto percentile = [&](double p) {
      const double at = p / 100 * double(sorted.size() - 1);
      const size_t lo = size_t(at), hi = std::min(lo + 1, sorted.size() - 1);
      return sorted[lo] + (at - double(lo)) * (sorted[hi] - sorted[lo]);
    };
    const double median = percentile(50);
    double mean = 0, var = 0;
    for (double t : ms) mean += t / runs;
    for (double t : ms) var += (t - mean) * (t - mean) / std::max(runs - 1, 1);
    const double stddev = std::sqrt(var);
    if (!o->export_times.empty()) io::write_file_atomically(o->export_times, nlohmann::json(ms).dump() + "\n", "run times");
    const size_t partitions = session.partitions().size();
    size_t claimed = 0;
    std::set<const ir::Node*> in_partition;
    for (auto& p : session.partitions()) {
      claimed += p.size();
      in_partition.insert(p.begin(), p.end());
    }
    std::map<std::string, int> on_reference;  // op types left to the reference kernels
    std::map<std::string, std::string> why;   // op type -> the first such node's refusal, per backend
    for (auto& n : model->graph->nodes) {
      auto r = session.refusals().find(n.get());
      if (r == session.refusals().end()) continue;
      on_reference[n->op_type]++;
      if (why.count(n->op_type)) continue;
      for (auto& [backend, reason] : r->second) why[n->op_type] += (why[n->op_type].empty() ? "" : "; ") + backend + ": " + reason;
    }
    struct NodeRow {
      std::string label, op;
      double ms;
    };
    std::vector<NodeRow> rows;
    std::map<std::string, double> per_op;
    double profiled = 0;
    for (auto& [node, total] : session.node_times()) {
      const double ms_per_run = total / runs;
      rows.push_back({node->label(), node->op_type, ms_per_run});
      per_op[node->op_type] += ms_per_run;
      profiled += ms_per_run;
    }
    std::sort(rows.begin(), rows.end(), [](const NodeRow& a, const NodeRow& b) { return a.ms > b.ms; });
    if (o->json) {
      nlohmann::json j = {{"model", o->model}, {"backend", o->backend}, {"precision", o->precision}, {"threads", o->threads},
                          {"runs", runs}, {"median_ms", median}, {"min_ms", sorted.front()},
                          {"max_ms", sorted.back()}, {"mean_ms", mean}, {"stddev_ms", stddev},
                          {"p50_ms", median}, {"p90_ms", percentile(90)}, {"p95_ms", percentile(95)}, {"p99_ms", percentile(99)},
                          {"times_ms", ms}, {"throughput_per_s", 1000.0 / median},
                          {"cpu", cpu_model_name()}, {"real_inputs", !given.empty()},
                          {"omp_wait_policy", std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "default"},
                          {"setup_ms", setup_ms}, {"peak_rss_mb", peak_rss_mb()}, {"nodes", model->graph->nodes.size()},
                          {"partitions", partitions}, {"nodes_in_partitions", claimed},
                          {"reference_ops", on_reference}, {"reference_reasons", why},
                          {"partition_backends", session.partition_backends()}, {"measured", true}};
      if (o->profile) {
        nlohmann::json nodes = nlohmann::json::array();
        for (auto& r : rows) nodes.push_back({{"node", r.label}, {"op", r.op}, {"ms", r.ms}});
        j["profile"] = {{"nodes", nodes}, {"per_op_ms", per_op}, {"profiled_ms", profiled}};
      }
      print_json(j, 2);
      return 0;
    }
    std::cout << std::fixed << std::setprecision(2) << o->model << " (" << o->backend << " backend, "
              << (o->precision != "fp32" ? o->precision + " precision, " : "") << o->threads
              << " thread" << (o->threads > 1 ? "s" : "") << ", measured)\n"
              << "  latency median " << median << " ms, min " << sorted.front() << " ms, max " << sorted.back()
              << " ms over " << runs << " runs\n"
              << "  mean " << mean << " ms, sd " << stddev << " ms; p90 " << percentile(90) << " ms, p95 " << percentile(95)
              << " ms, p99 " << percentile(99) << " ms" << (given.empty() ? " (seeded inputs)" : " (real inputs)") << "\n"
              << "  throughput " << 1000.0 / median << " inferences/s\n"
              << "  setup " << setup_ms << " ms; peak RSS " << peak_rss_mb() << " MB\n"
              << "  " << model->graph->nodes.size() << " nodes after optimization, " << claimed << " in " << partitions
              << " backend partition" << (partitions == 1 ? "" : "s") << "\n";
    if (!on_reference.empty()) {
      std::cout << "  on reference kernels:";
      for (auto& [op, count] : on_reference) std::cout << " " << op << "×" << count;
      std::cout << "\n";
      for (auto& [op, reason] : why) std::cout << "    " << op << ": " << reason << "\n";
    }
    if (o->profile) {
      std::vector<std::pair<std::string, double>> ops(per_op.begin(), per_op.end());
      std::sort(ops.begin(), ops.end(), [](auto& a, auto& b) { return a.second > b.second; });
      std::cout << "  profile (ms per run, measured; backend primitives charged to their node):\n";
      for (auto& [op, ms] : ops)
        std::cout << "    " << std::left << std::setw(22) << op << std::right << std::setw(9) << ms << " ms "
                  << std::setw(6) << std::setprecision(1) << 100 * ms / profiled << "%\n" << std::setprecision(2);
      std::cout << "  slowest nodes:\n";
      for (size_t i = 0; i < rows.size() && i < 10; ++i)
        std::cout << "    " << std::setw(9) << rows[i].ms << " ms  " << rows[i].label << "\n";
    }
    return 0;
  };
}

}  // namespace duet::cli
