#include "duet/core/html.h"
#include "duet/quant/report.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace duet::quant {

namespace {

std::string esc(const std::string& s) { return html_escape(s); }

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string fmt(double v, int prec = 4) {
  if (!std::isfinite(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream o;
  o.precision(prec);
  o << v;
  return o.str();
}

// Horizontal bars, one row per item (value >= 0), log scale when values span decades.
std::string bars_svg(const std::vector<std::pair<std::string, double>>& items, const std::string& unit, const std::string& colour) {
  const int row = 16, left = 260, width = 560;
  double vmax = 0;
  for (auto& [_, v] : items) if (std::isfinite(v)) vmax = std::max(vmax, v);
  if (vmax <= 0) vmax = 1;
  std::ostringstream o;
  const int h = static_cast<int>(items.size()) * row + 30;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + width + 90 << "' height='" << h << "' font-size='11'>";
  for (size_t i = 0; i < items.size(); ++i) {
    const double v = std::isfinite(items[i].second) ? items[i].second : vmax;
    const int y = static_cast<int>(i) * row + 4;
    const int w = static_cast<int>(width * std::max(0.0, v) / vmax);
    o << "<text x='" << left - 6 << "' y='" << y + 11 << "' text-anchor='end'>" << esc(items[i].first.substr(0, 40)) << "</text>"
      << "<rect x='" << left << "' y='" << y << "' width='" << std::max(w, 1) << "' height='" << row - 3 << "' fill='" << colour << "'/>"
      << "<text x='" << left + w + 4 << "' y='" << y + 11 << "'>" << fmt(items[i].second, 3) << "</text>";
  }
  o << "<text x='" << left << "' y='" << h - 6 << "'>" << esc(unit) << " (measured)</text></svg>";
  return o.str();
}

// SQNR per tensor in graph order: isolated (grey) and accumulated (blue) lines.
std::string sqnr_svg(const std::vector<Evaluator::TensorSqnr>& s) {
  if (s.empty()) return "";
  const int W = 900, H = 300, l = 50, b = 40, t = 10;
  double hi = 0;
  for (auto& x : s) for (double v : {x.isolated_db, x.accumulated_db}) if (std::isfinite(v)) hi = std::max(hi, v);
  hi = std::max(10.0, std::ceil(hi / 10) * 10);
  auto X = [&](size_t i) { return l + (W - l - 10) * (s.size() == 1 ? 0.5 : static_cast<double>(i) / (s.size() - 1)); };
  auto Y = [&](double v) { return t + (H - t - b) * (1 - std::clamp(std::isfinite(v) ? v : hi, 0.0, hi) / hi); };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-size='11'>"
    << "<line x1='" << l << "' y1='" << H - b << "' x2='" << W - 10 << "' y2='" << H - b << "' stroke='black'/>"
    << "<line x1='" << l << "' y1='" << t << "' x2='" << l << "' y2='" << H - b << "' stroke='black'/>";
  for (double v = 0; v <= hi; v += 10)
    o << "<text x='" << l - 4 << "' y='" << Y(v) + 4 << "' text-anchor='end'>" << v << "</text>";
  for (int series = 0; series < 2; ++series) {
    o << "<polyline fill='none' stroke='" << (series ? "#2060c0" : "#999") << "' stroke-width='1.5' points='";
    for (size_t i = 0; i < s.size(); ++i) o << X(i) << "," << Y(series ? s[i].accumulated_db : s[i].isolated_db) << " ";
    o << "'/>";
  }
  o << "<text x='" << l << "' y='" << H - 12 << "'>activation tensors in graph order; grey: own quantization noise, "
    << "blue: accumulated in the quantized model; SQNR dB (measured)</text></svg>";
  return o.str();
}

}  // namespace

nlohmann::json to_json(const QuantReport& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["output"] = r.output;
  j["scheme"] = {{"method", method_name(r.options.calibration.method)},
                 {"per_channel", r.options.per_channel},
                 {"weights", format_name(r.options.weights)},
                 {"activations", format_name(r.options.activations)},
                 {"symmetric_activations", r.options.symmetric_activations},
                 {"block_size", r.options.block_size}};
  j["calibration"] = {{"samples", r.calibration_samples}, {"seconds", r.calibration_seconds}, {"peak_rss_mb", r.peak_rss_mb}};
  j["evaluation_samples"] = r.evaluation_samples;
  j["smoothing"] = {{"alpha", r.smooth_alpha}, {"tensors", r.smoothed}};
  for (auto& [a, e] : r.awq_trace) j["awq_search"].push_back({{"alpha", a}, {"error", e}});
  j["precision"] = r.precision;
  int quantized = 0;
  for (auto& [_, p] : r.precision) quantized += p != "fp32";
  j["nodes_quantized"] = quantized;
  j["nodes_float"] = static_cast<int>(r.precision.size()) - quantized;
  j["skipped"] = r.plan.skipped;
  for (auto& [name, range] : r.ranges) j["ranges"][name] = {range.lo, range.hi};
  if (!r.chosen_method.empty()) {
    j["scheme"]["method"] = "auto";
    j["chosen_method"] = r.chosen_method;
  }
  for (auto& [name, e] : r.sensitivity) j["sensitivity"].push_back({{"node", name}, {"error", e}});
  if (r.budget) {
    j["accuracy_budget"] = {{"budget", *r.budget}, {"error", r.budget_error}};
    for (auto& [k, e] : r.budget_trace) j["accuracy_budget"]["trace"].push_back({{"kept_float", k}, {"error", e}});
  }
  for (auto& s : r.sqnr)
    j["tensor_sqnr_db"].push_back({{"tensor", s.tensor}, {"isolated", finite_or_null(s.isolated_db)}, {"accumulated", finite_or_null(s.accumulated_db)}});
  if (r.comparison) {
    j["comparison"]["error"] = r.comparison->error;
    j["comparison"]["rel_l2"] = r.comparison->rel_l2;
    j["comparison"]["argmax_changed"] = r.comparison->argmax_changed;
    for (auto& o : r.comparison->outputs)
      j["comparison"]["outputs"].push_back({{"name", o.name}, {"rel_l2", o.rel_l2}, {"sqnr_db", finite_or_null(o.sqnr_db)},
                                            {"max_abs", o.max_abs}, {"argmax_agreement", o.argmax_agree}, {"rows", o.rows}});
  }
  return j;
}

std::string html_report(const QuantReport& r) {
  std::ostringstream o;
  o << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>duet quantize: " << esc(r.model) << "</title>"
    << "<style>body{font-family:sans-serif;margin:20px;max-width:1000px}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}</style></head><body>"
    << "<h1>Quantization report</h1><p>Model <code>" << esc(r.model) << "</code> &rarr; <code>" << esc(r.output)
    << "</code>. All errors below are <b>measured</b>: both models were run on this machine.</p><table>"
    << "<tr><th>calibration</th><td>" << (r.chosen_method.empty() ? method_name(r.options.calibration.method) : "auto (per tensor: " + [&] {
         std::map<std::string, int> count;
         for (auto& [_, m] : r.chosen_method) ++count[m];
         std::string s;
         for (auto& [m, c] : count) s += (s.empty() ? "" : ", ") + m + " " + std::to_string(c);
         return s;
       }() + ")") << ", " << r.calibration_samples
    << " samples, " << fmt(r.calibration_seconds, 3) << " s, peak RSS " << fmt(r.peak_rss_mb, 4) << " MB</td></tr>"
    << "<tr><th>weights</th><td>" << format_name(r.options.weights) << (r.options.per_channel ? ", per channel" : ", per tensor")
    << (r.options.weights == WeightFormat::Int4 ? ", block " + std::to_string(r.options.block_size) : "") << "</td></tr>"
    << "<tr><th>activations</th><td>" << format_name(r.options.activations)
    << (r.options.activations == ActivationFormat::Int8 ? (r.options.symmetric_activations ? " symmetric" : " asymmetric (uint8)") : "")
    << "</td></tr><tr><th>smoothing</th><td>" << (r.smoothed ? std::to_string(r.smoothed) + " tensors, alpha " + fmt(r.smooth_alpha, 3) : std::string("off"))
    << "</td></tr><tr><th>evaluation samples</th><td>" << r.evaluation_samples << "</td></tr>";
  int quantized = 0;
  for (auto& [_, p] : r.precision) quantized += p != "fp32";
  o << "<tr><th>nodes</th><td>" << quantized << " quantized, " << r.precision.size() - quantized << " kept in FP32</td></tr>";
  if (r.budget)
    o << "<tr><th>accuracy budget</th><td>output error (" << esc(r.budget_metric) << ") &le; " << fmt(*r.budget) << ": reached " << fmt(r.budget_error)
      << " with " << r.precision.size() - quantized << " node(s) in FP32</td></tr>";
  o << "</table>";
  if (r.comparison) {
    o << "<h2>FP32 vs quantized outputs (measured)</h2><table><tr><th>output</th><th>relative L2 error</th><th>SQNR dB</th>"
         "<th>max |error|</th><th>argmax agreement (last axis)</th></tr>";
    for (auto& c : r.comparison->outputs)
      o << "<tr><td>" << esc(c.name) << "</td><td>" << fmt(c.rel_l2) << "</td><td>" << fmt(c.sqnr_db, 3) << "</td><td>"
        << fmt(c.max_abs) << "</td><td>" << fmt(100 * c.argmax_agree, 4) << "% of " << c.rows << "</td></tr>";
    o << "</table>";
  }
  if (!r.sensitivity.empty()) {
    o << "<h2>Sensitivity: output error with only this node quantized</h2>";
    std::vector<std::pair<std::string, double>> items(r.sensitivity.begin(), r.sensitivity.begin() + std::min<size_t>(40, r.sensitivity.size()));
    o << bars_svg(items, "relative L2 output error", "#c05030");
  }
  if (!r.budget_trace.empty()) {
    o << "<h2>Accuracy budget search</h2><table><tr><th>most sensitive nodes kept in FP32</th><th>output error</th></tr>";
    for (auto& [k, e] : r.budget_trace) o << "<tr><td>" << k << "</td><td>" << fmt(e) << "</td></tr>";
    o << "</table>";
  }
  if (!r.sqnr.empty()) o << "<h2>Per-tensor SQNR</h2>" << sqnr_svg(r.sqnr);
  o << "<h2>Precision per node</h2><table><tr><th>node</th><th>precision</th></tr>";
  for (auto& name : r.plan.nodes) o << "<tr><td>" << esc(name) << "</td><td>" << esc(r.precision.count(name) ? r.precision.at(name) : "?") << "</td></tr>";
  o << "</table></body></html>\n";
  return o.str();
}

}  // namespace duet::quant
