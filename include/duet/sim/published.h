// Published measurements of real devices, and the simulator beside them:
// devices/validation/published.csv holds one measured point per row (MLPerf
// Inference results, vendors' performance tables), each with its source.
// `duet validate-devices` prints modelled against published for every point;
// the [efficiency] parameters of a device kind are fitted on the rows marked
// `fit` and judged on the rows marked `check`.
//
//   auto points = sim::read_published(sim::default_devices_dir() + "/validation/published.csv");
//   sim::ValidationRequest r;
//   r.workloads["resnet50"] = "resnet50.onnx";
//   for (const auto& c : sim::check_published(points, r)) ...  // c.error: (modelled - published) / published
#pragma once
#include <map>
#include <string>
#include <vector>

#include "duet/sim/device.h"

namespace duet::sim {

struct PublishedPoint {
  std::string device_id;   // catalog id; empty: the device has no catalog entry (listed, not checked)
  std::string workload;    // the model measured: resnet50, bert-large, ... (the caller supplies its ONNX file)
  std::string scenario;    // offline | singlestream | server | vendor-table
  int64_t batch = 0;       // as published; 0: not stated
  std::string precision;   // numerics::Precision text the device computed in
  std::string metric;      // throughput (samples/s per accelerator) | latency (ms)
  double value = 0;
  std::string split;       // fit | check
  std::string device, model, software, source, notes;  // as the source words them
};

// One clear error naming the file and line for a malformed row.
std::vector<PublishedPoint> read_published(const std::string& path);

struct ValidationRequest {
  std::string catalog_dir = default_devices_dir();
  std::map<std::string, std::string> workloads;  // workload name -> ONNX model file
  std::vector<Override> overrides;               // applied to every device file
  std::map<std::string, std::vector<Override>> kind_overrides;  // device kind -> applied to its devices (a fit's result)
  int64_t offline_batch = 256;                   // throughput points that state no batch
};

struct PointCheck {
  PublishedPoint point;
  int64_t batch = 0;        // the batch simulated
  double modelled = 0;      // in the point's unit (modelled)
  double error = 0;         // (modelled - published) / published
  std::string bound;        // what bounds most of the modelled time: compute, memory, overhead
  std::string skipped;      // why the point was not checked; empty when it was
};

std::vector<PointCheck> check_published(const std::vector<PublishedPoint>& points, const ValidationRequest& request);

struct ErrorSummary {
  size_t points = 0;
  double median_abs = 0, max_abs = 0;  // of |error|
};
// Over the checked points of one split ("" for all).
ErrorSummary summarize(const std::vector<PointCheck>& checks, const std::string& split = "");

// A grid search of one device kind's [efficiency] parameters on the `fit`
// points of its devices: the values with the smallest median |log(modelled /
// published)| (ties: the smaller largest one). Returns them as overrides.
struct EfficiencyFit {
  std::vector<Override> parameters;  // efficiency.kernel_us, matrix_fraction, bandwidth_fraction, tile_m, tile_n
  ErrorSummary fit;                  // on the fit points, with these parameters
  size_t candidates = 0;             // parameter sets tried
};
EfficiencyFit fit_efficiency(const std::vector<PublishedPoint>& points, const ValidationRequest& request,
                             const std::string& kind);

}  // namespace duet::sim
