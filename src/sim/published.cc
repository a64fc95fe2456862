#include "duet/sim/published.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <tuple>

#include "duet/core/csv.h"
#include "duet/core/error.h"
#include "duet/ir/graph.h"
#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/sim/simulate.h"
#include "duet/sim/workload.h"

namespace duet::sim {

std::vector<PublishedPoint> read_published(const std::string& path) {
  std::ifstream in(path);
  DUET_CHECK(in.good(), "cannot open published measurements '", path, "'");
  std::string line;
  std::vector<std::string> header;
  std::vector<PublishedPoint> points;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = split_csv_line(line);
    if (header.empty()) {
      header = f;
      for (const char* need : {"device_id", "workload", "scenario", "batch", "precision", "metric", "value", "split", "source"})
        DUET_CHECK(std::find(header.begin(), header.end(), need) != header.end(), path, ": the header names no '", need,
                   "' column");
      continue;
    }
    const std::string where = path + ":" + std::to_string(number);
    DUET_CHECK(f.size() == header.size(), where, ": ", f.size(), " fields, the header has ", header.size());
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < f.size(); ++i) row[header[i]] = f[i];
    PublishedPoint p;
    p.device_id = row["device_id"];
    p.workload = row["workload"];
    p.scenario = row["scenario"];
    p.precision = row["precision"];
    p.metric = row["metric"];
    p.split = row["split"];
    p.device = row["device"];
    p.model = row["model"];
    p.software = row["software"];
    p.source = row["source"];
    p.notes = row["notes"];
    try {
      p.batch = row["batch"].empty() ? 0 : std::stoll(row["batch"]);
      p.value = std::stod(row["value"]);
    } catch (const std::exception&) {
      fail(where, ": batch and value must be numbers");
    }
    DUET_CHECK(p.value > 0 && p.batch >= 0, where, ": value must be positive and batch not negative");
    DUET_CHECK(p.metric == "throughput" || p.metric == "latency", where, ": metric must be throughput or latency, got '",
               p.metric, "'");
    DUET_CHECK(p.split == "fit" || p.split == "check", where, ": split must be fit or check, got '", p.split, "'");
    DUET_CHECK(!p.source.empty(), where, ": every point names its source");
    numerics::parse_precision(p.precision);
    points.push_back(std::move(p));
  }
  DUET_CHECK(!header.empty(), path, ": no header line");
  return points;
}

namespace {

// Workloads built once per (model, batch) and devices loaded once per overrides.
class Checker {
 public:
  explicit Checker(const ValidationRequest& r) : r_(r) {}

  PointCheck check(const PublishedPoint& p, const std::vector<Override>& overrides) {
    PointCheck c;
    c.point = p;
    if (p.device_id.empty()) return skip(c, "no catalog entry for this device");
    auto model = r_.workloads.find(p.workload);
    if (model == r_.workloads.end()) return skip(c, "no model given for workload '" + p.workload + "'");
    c.batch = p.metric == "latency" ? std::max<int64_t>(1, p.batch) : p.batch > 0 ? p.batch : r_.offline_batch;
    const Device& d = device(p.device_id, overrides);
    SimOptions o;
    o.precision = p.precision;
    const Device* h = host();
    const SimResult s = simulate(workload(model->second, c.batch), d, h, o);
    c.modelled = p.metric == "latency" ? s.latency_s * 1e3 : s.throughput_per_s;
    c.error = (c.modelled - p.value) / p.value;
    std::map<std::string, double> by_bound;
    for (const NodeResult& n : s.nodes) by_bound[n.bound] += n.time_s;
    double most = -1;
    for (const auto& [bound, t] : by_bound)
      if (t > most) most = t, c.bound = bound;
    return c;
  }

  const std::string& kind_of(const std::string& id) { return device(id, {}).kind; }

 private:
  static PointCheck skip(PointCheck c, const std::string& why) {
    c.skipped = why;
    return c;
  }
  const Workload& workload(const std::string& path, int64_t batch) {
    auto key = std::make_pair(path, batch);
    auto it = workloads_.find(key);
    if (it != workloads_.end()) return it->second;
    auto m = models_.find(path);
    if (m == models_.end()) m = models_.emplace(path, onnx_io::load_model(path)).first;
    return workloads_[key] = workload_from_model(*ir::clone_sharing_initializers(*m->second), batch);
  }
  const Device& device(const std::string& id, const std::vector<Override>& extra) {
    std::vector<Override> all = r_.overrides;
    if (!r_.kind_overrides.empty()) {
      auto k = r_.kind_overrides.find(find_device(r_.catalog_dir, id, r_.overrides).kind);
      if (k != r_.kind_overrides.end()) all.insert(all.end(), k->second.begin(), k->second.end());
    }
    all.insert(all.end(), extra.begin(), extra.end());
    std::string key = id;
    for (const Override& o : all) key += ";" + o.key + "=" + o.value;
    auto it = devices_.find(key);
    if (it == devices_.end()) it = devices_.emplace(key, find_device(r_.catalog_dir, id, all)).first;
    return it->second;
  }
  const Device* host() {
    if (!host_loaded_) {
      host_loaded_ = true;
      try {
        host_ = find_device(r_.catalog_dir, "host");
      } catch (const Error&) {
      }
    }
    return host_ && host_->calibrated ? &*host_ : nullptr;
  }

  const ValidationRequest& r_;
  std::map<std::string, std::unique_ptr<ir::Model>> models_;
  std::map<std::pair<std::string, int64_t>, Workload> workloads_;
  std::map<std::string, Device> devices_;
  std::optional<Device> host_;
  bool host_loaded_ = false;
};

}  // namespace

std::vector<PointCheck> check_published(const std::vector<PublishedPoint>& points, const ValidationRequest& r) {
  Checker checker(r);
  std::vector<PointCheck> out;
  for (const PublishedPoint& p : points) out.push_back(checker.check(p, {}));
  return out;
}

ErrorSummary summarize(const std::vector<PointCheck>& checks, const std::string& split) {
  std::vector<double> errors;
  for (const PointCheck& c : checks)
    if (c.skipped.empty() && (split.empty() || c.point.split == split)) errors.push_back(std::fabs(c.error));
  ErrorSummary s;
  s.points = errors.size();
  if (errors.empty()) return s;
  std::sort(errors.begin(), errors.end());
  const size_t n = errors.size();
  s.median_abs = n % 2 ? errors[n / 2] : (errors[n / 2 - 1] + errors[n / 2]) / 2;
  s.max_abs = errors.back();
  return s;
}

EfficiencyFit fit_efficiency(const std::vector<PublishedPoint>& points, const ValidationRequest& r, const std::string& kind) {
  Checker checker(r);
  std::vector<PublishedPoint> fit;
  for (const PublishedPoint& p : points)
    if (p.split == "fit" && !p.device_id.empty() && r.workloads.count(p.workload) && checker.kind_of(p.device_id) == kind)
      fit.push_back(p);
  DUET_CHECK(!fit.empty(), "no fit point on a device of kind '", kind, "' with its model given");
  EfficiencyFit best;
  double best_median = INFINITY, best_max = INFINITY;
  auto fmt = [](double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  };
  for (double kernel_us : {0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0})
    for (double matrix : {0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0})
      for (double bandwidth : {0.6, 0.7, 0.8, 0.9, 1.0})
        for (int64_t tile : {64, 128, 256}) {
          const std::vector<Override> o = {{"efficiency.kernel_us", fmt(kernel_us)},
                                           {"efficiency.matrix_fraction", fmt(matrix)},
                                           {"efficiency.bandwidth_fraction", fmt(bandwidth)},
                                           {"efficiency.tile_m", std::to_string(tile)},
                                           {"efficiency.tile_n", std::to_string(tile)}};
          ++best.candidates;
          std::vector<double> logs;
          for (const PublishedPoint& p : fit) logs.push_back(std::fabs(std::log1p(checker.check(p, o).error)));
          std::sort(logs.begin(), logs.end());
          const size_t n = logs.size();
          const double median = n % 2 ? logs[n / 2] : (logs[n / 2 - 1] + logs[n / 2]) / 2, worst = logs.back();
          if (median < best_median - 1e-12 || (median <= best_median + 1e-12 && worst < best_max)) {
            best_median = median;
            best_max = worst;
            best.parameters = o;
          }
        }
  std::vector<PointCheck> checks;
  for (const PublishedPoint& p : fit) checks.push_back(checker.check(p, best.parameters));
  best.fit = summarize(checks);
  return best;
}

}  // namespace duet::sim
