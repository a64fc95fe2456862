#include "duet/sim/sweep.h"

#include <algorithm>
#include <filesystem>

#include "duet/core/error.h"
#include "duet/ir/graph.h"
#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/optimize.h"
#include "duet/passes/precision.h"

namespace duet::sim {

namespace {

void check(const SweepRequest& r) {
  DUET_CHECK(!r.batches.empty(), "sweep: no batch size given");
  for (int64_t b : r.batches) DUET_CHECK(b > 0, "--batch expects positive integers, got ", b);
  DUET_CHECK(!r.precisions.empty(), "sweep: no precision given");
  for (const std::string& p : r.precisions) {
    SimOptions o = r.options;
    o.precision = p;
    validate(o);
  }
}

// Runs every (device, precision, batch) point on the resolved `devices`;
// `workloads_for(device)` gives one workload per batch, in request order.
template <typename WorkloadsFor>
Sweep run(const SweepRequest& r, std::vector<Device> devices, WorkloadsFor&& workloads_for) {
  Sweep s;
  s.devices = std::move(devices);
  std::optional<Device> host;
  if (std::filesystem::exists(std::filesystem::path(r.catalog_dir) / "host.toml")) host = find_device(r.catalog_dir, "host");
  s.has_host = host && host->calibrated;
  const size_t total = s.devices.size() * r.precisions.size() * r.batches.size();
  for (size_t d = 0; d < s.devices.size(); ++d) {
    const std::vector<Workload>& workloads = workloads_for(s.devices[d]);
    for (const std::string& p : r.precisions) {
      SimOptions o = r.options;
      o.precision = p;
      for (size_t b = 0; b < r.batches.size(); ++b) {
        const Workload& w = workloads[b];
        if (r.progress) r.progress("simulating", s.points.size(), total);
        s.points.push_back({d, p, r.batches[b], simulate(w, s.devices[d], host ? &*host : nullptr, o), int(w.items.size()),
                            w.unknown_cost_nodes});
      }
    }
  }
  if (r.progress) r.progress("simulating", total, total);
  return s;
}

}  // namespace

std::vector<Device> resolve_devices(const SweepRequest& r) {
  check(r);
  std::vector<Device> devices;
  for (const std::string& id : r.devices) {
    if (id == "all") {
      for (const Device& d : load_catalog(r.catalog_dir))
        if (d.calibrated) devices.push_back(find_device(r.catalog_dir, d.id, r.overrides));
    } else {
      devices.push_back(find_device(r.catalog_dir, id, r.overrides));
    }
  }
  DUET_CHECK(!devices.empty(), "--device: no device given");
  return devices;
}

Sweep sweep_model(const ir::Model& model, const SweepRequest& r) {
  std::vector<Device> devices = resolve_devices(r);  // checks the request
  // Workloads per batch (shape inference once per batch, on its own copy of the
  // graph, shared by all devices);
  // CPUs with measured kernel rates cost the graph the cpu backend runs.
  std::vector<Workload> as_given, optimized;
  bool need_given = false, need_optimized = false;
  for (const Device& d : devices) (d.cpu ? need_optimized : need_given) = true;
  const size_t total = r.batches.size() * (size_t(need_given) + size_t(need_optimized));
  auto workload = [&](const ir::Model& m, int64_t batch) {
    if (r.progress) r.progress("workloads", as_given.size() + optimized.size(), total);
    return workload_from_model(*ir::clone_sharing_initializers(m), batch, r.input_shapes);
  };
  if (need_given) {
    auto m = onnx_io::clone_model(model);
    passes::annotate_qdq_precision(*m);  // a QDQ model is costed at the precisions it was quantized to
    for (int64_t b : r.batches) as_given.push_back(workload(*m, b));
  }
  if (need_optimized) {
    auto m = onnx_io::clone_model(model);
    passes::optimize(*m);
    for (int64_t b : r.batches) optimized.push_back(workload(*m, b));
  }
  if (r.progress) r.progress("workloads", total, total);
  return run(r, std::move(devices),
             [&](const Device& d) -> const std::vector<Workload>& { return d.cpu ? optimized : as_given; });
}

Sweep sweep_topology(const Topology& topology, const SweepRequest& r) {
  std::vector<Device> devices = resolve_devices(r);  // checks the request
  std::vector<Workload> workloads;
  for (int64_t b : r.batches) workloads.push_back(workload_from_topology(topology, b));
  return run(r, std::move(devices), [&](const Device&) -> const std::vector<Workload>& { return workloads; });
}

}  // namespace duet::sim
