#include "duet/measure/validate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/runtime/session.h"
#include "duet/sim/workload.h"

namespace duet::measure {

using namespace sim;


namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double load_average() {
  std::ifstream f("/proc/loadavg");
  double l = -1;
  return (f >> l) ? l : -1;
}

}  // namespace

HostValidation validate_host(const std::string& model_path, const std::map<std::string, Dims>& shapes, const Device& host,
                             const SimOptions& options, const ValidationOptions& v) {
  DUET_CHECK(host.cpu, "device '", host.id, "' has no measured kernel rates ([cpu_kernels]): run `duet calibrate-host`");
  DUET_CHECK(v.runs >= 1, "validation needs at least one run, got ", v.runs);
  runtime::SessionOptions so;
  so.backend = "cpu";
  so.threads = options.threads;

  // The graph the backend runs; a second, identical copy is simulated (shape
  // inference for the simulator rewrites value types).
  std::shared_ptr<ir::Model> model = onnx_io::load_model(model_path);
  const std::map<std::string, Tensor> feeds = runtime::seeded_feeds(*model->graph, shapes);
  runtime::prepare_model(*model, so);
  std::shared_ptr<ir::Model> simulated = onnx_io::load_model(model_path);
  runtime::prepare_model(*simulated, so);
  std::map<std::string, Dims> bound = shapes;
  for (auto& [name, t] : feeds) bound[name] = t.dims();
  const Workload w = workload_from_model(*simulated, 1, bound);
  const SimResult sim = simulate(w, host, &host, options);

  // Plain runs first, then profiled runs, each phase after its own warm-up
  // (the two sessions hold their own packed weights and arenas).
  const auto& nodes = model->graph->nodes;
  std::map<const ir::Node*, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i].get()] = i;
  std::vector<double> totals;
  std::vector<std::vector<double>> per_node(nodes.size());
  {
    runtime::Session plain(model, so);
    for (int i = 0; i < v.warmup; ++i) plain.run(feeds);
    for (int r = 0; r < v.runs; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      plain.run(feeds);
      totals.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  so.profile = true;
  runtime::Session profiled(model, so);
  for (int i = 0; i < v.warmup; ++i) profiled.run(feeds);
  for (int r = 0; r < v.runs; ++r) {
    profiled.reset_node_times();
    profiled.run(feeds);
    std::vector<double> ms(nodes.size(), 0);
    for (auto& [node, t] : profiled.node_times())
      if (auto it = index.find(node); it != index.end()) ms[it->second] += t;
    for (size_t i = 0; i < nodes.size(); ++i) per_node[i].push_back(ms[i] * 1e-3);
  }

  HostValidation out;
  out.model = model_path;
  out.device_id = host.id;
  out.threads = options.threads;
  out.runs = v.runs;
  out.measured_total_s = median(totals);
  out.predicted_total_s = sim.latency_s;
  out.load_average = load_average();
  std::vector<const NodeResult*> predicted(nodes.size(), nullptr);
  for (auto& n : sim.nodes) {
    DUET_CHECK(n.node_index >= 0 && size_t(n.node_index) < nodes.size() && nodes[size_t(n.node_index)]->op_type == n.op,
               "validation: simulated node '", n.name, "' does not match the measured graph");
    predicted[size_t(n.node_index)] = &n;
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    ValidationRow row;
    row.name = nodes[i]->name.empty() ? nodes[i]->op_type + "_" + std::to_string(i) : nodes[i]->name;
    row.op = nodes[i]->op_type;
    row.measured_s = median(per_node[i]);
    row.measured = row.measured_s > 0;
    if (predicted[i]) {
      row.modelled = true;
      row.predicted_s = predicted[i]->time_s;
      row.cpu_class = predicted[i]->cpu_class;
    }
    if (!row.modelled && !row.measured) continue;
    out.measured_nodes_s += row.measured_s;
    out.rows.push_back(row);
  }
  return out;
}

}  // namespace duet::measure
