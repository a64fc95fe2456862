// What `duet quantize` did, as JSON and as one self-contained HTML page
// (inline SVG): the scheme, the precision chosen per node, calibration ranges,
// per-node sensitivity, per-tensor SQNR (isolated and accumulated along the
// graph) and the FP32-vs-quantized output comparison. Every error figure is
// measured (the models were run on this machine), none is modelled.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "duet/quant/calibrate.h"
#include "duet/quant/quantize.h"

namespace duet::quant {

struct QuantReport {
  std::string model, output;
  QuantizeOptions options;
  size_t calibration_samples = 0, evaluation_samples = 0;
  double calibration_seconds = 0, peak_rss_mb = 0;
  Plan plan;
  int smoothed = 0;          // tensors whose outliers were migrated into weights
  double smooth_alpha = 0;
  std::vector<std::pair<double, double>> awq_trace;  // --awq: (alpha, output error)
  std::map<std::string, Range> ranges;
  std::map<std::string, std::string> chosen_method;  // --method auto: tensor -> method whose range won
  std::map<std::string, std::string> precision;
  std::vector<std::pair<std::string, double>> sensitivity;  // most sensitive first
  std::optional<double> budget;
  std::string budget_metric = "l2";
  double budget_error = 0;
  std::vector<std::pair<size_t, double>> budget_trace;  // (nodes kept float, error)
  std::vector<Evaluator::TensorSqnr> sqnr;
  std::optional<Comparison> comparison;  // its task_value is the quantized model's task metric
  std::string task_metric = "agreement", task_description = "agreement with FP32";
  bool task_lower_is_better = false;
  double fp32_task_value = 1;  // the task metric of the FP32 model on the evaluation samples
  // Held-out samples (no choice saw them): the final model measured on all of them.
  std::optional<Comparison> held_out;
  size_t held_out_samples = 0;
  double fp32_held_out_value = 1;
  // Measured trouble worth a user's attention (a large loss against FP32 and
  // the tensors it likely comes from), one line each.
  std::vector<std::string> warnings;
  // Weight rounding: "nearest", or "gptq" with each GPTQ-rounded layer's output error both ways.
  std::string rounding = "nearest";
  std::map<std::string, QuantizedModel::Rounding> rounding_error;
};

nlohmann::json to_json(const QuantReport& r);
std::string html_report(const QuantReport& r);
nlohmann::json report_data(const QuantReport& r);  // what html_report plots (report::data), written beside it

}  // namespace duet::quant
