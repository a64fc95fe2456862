#include "duet/quant/report.h"

#include "duet/core/html.h"
#include "duet/report/chart.h"
#include "scheme.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace duet::quant {

namespace {

std::string esc(const std::string& s) { return html_escape(s); }

// The activations' QDQ grid, which the precision text leaves open (8-bit
// products either way): UINT8 with a zero point or INT8 symmetric.
std::string activations_in_words(const QuantizeOptions& o) {
  if (!scheme::quantizes_activations(o.precision)) return "float (weight-only)";
  if (scheme::fp8_activations(o.precision)) return "FP8 E4M3FN, one scale per tensor";
  return o.symmetric_activations ? "INT8 symmetric (zero point 0)" : "UINT8 asymmetric (with a zero point)";
}

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string fmt(double v, int prec = 4) {
  if (!std::isfinite(v)) return v > 0 ? "inf" : "-inf";  // NaN too prints -inf, as it always did
  return format_number(v, prec);
}

// The most sensitive nodes (at most 40), most sensitive first.
report::Chart sensitivity_chart(const QuantReport& r) {
  report::Chart c{.title = "Output error with only this node quantized (measured)", .kind = report::Kind::Bar};
  c.x.label = "node";
  c.y.label = "relative L2 output error (measured)";
  report::Series s{.name = "sensitivity", .color = "#c05030"};
  for (size_t i = 0; i < std::min<size_t>(40, r.sensitivity.size()); ++i) {
    c.categories.push_back(r.sensitivity[i].first);
    s.y.push_back(r.sensitivity[i].second);
  }
  // Sensitivities often span decades: a log axis keeps the small ones visible.
  const auto [lo, hi] = std::minmax_element(s.y.begin(), s.y.end());
  c.y.log = lo != s.y.end() && *lo > 0 && *hi > 100 * *lo;
  c.series = {s};
  c.width = 900;
  return c;
}

// SQNR per activation tensor in graph order: the tensor's own quantization noise and what accumulates along the graph.
report::Chart sqnr_chart(const QuantReport& r) {
  report::Chart c{.title = "Per-tensor SQNR (measured)", .kind = report::Kind::Line};
  c.x.label = "activation tensor, in graph order";
  c.y.label = "SQNR dB (measured)";
  report::Series isolated{.name = "own quantization noise", .color = "#999"};
  report::Series accumulated{.name = "accumulated in the quantized model", .color = "#2060c0"};
  for (size_t i = 0; i < r.sqnr.size(); ++i) {
    for (auto* s : {&isolated, &accumulated}) {
      s->x.push_back(static_cast<double>(i + 1));
      s->labels.push_back(r.sqnr[i].tensor);
    }
    isolated.y.push_back(r.sqnr[i].isolated_db);
    accumulated.y.push_back(r.sqnr[i].accumulated_db);
  }
  c.series = {isolated, accumulated};
  c.width = 900;
  c.height = 320;
  return c;
}

}  // namespace

nlohmann::json to_json(const QuantReport& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["output"] = r.output;
  j["scheme"] = {{"method", method_name(r.options.calibration.method)},
                 {"precision", r.options.precision.str()},
                 {"precision_spec", r.options.precision.spec()},
                 {"activations", activations_in_words(r.options)},
                 {"symmetric_activations", r.options.symmetric_activations}};
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
  j["warnings"] = r.warnings;
  j["rounding"]["method"] = r.rounding;
  for (auto& [node, e] : r.rounding_error)
    j["rounding"]["layers"].push_back({{"node", node}, {"nearest_rel_error", e.nearest}, {"gptq_rel_error", e.gptq}});
  if (r.comparison) {
    j["task_metric"] = {{"metric", r.task_metric},
                        {"description", r.task_description},
                        {"fp32", r.fp32_task_value},
                        {"quantized", r.comparison->task_value},
                        {"drop_points", r.comparison->task_drop_points},
                        {"samples", r.evaluation_samples}};
    if (r.held_out)
      j["task_metric"]["held_out"] = {{"fp32", r.fp32_held_out_value},
                                      {"quantized", r.held_out->task_value},
                                      {"drop_points", r.held_out->task_drop_points},
                                      {"rel_l2", r.held_out->rel_l2},
                                      {"samples", r.held_out_samples}};
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
  o << "<h1>Quantization report</h1><p>Model <code>" << esc(r.model) << "</code> &rarr; <code>" << esc(r.output)
    << "</code>. All errors below are <b>measured</b>: both models were run on this machine.</p><table>"
    << "<tr><th>calibration</th><td>" << (r.chosen_method.empty() ? method_name(r.options.calibration.method) : "auto (per tensor: " + [&] {
         std::map<std::string, int> count;
         for (auto& [_, m] : r.chosen_method) ++count[m];
         std::string s;
         for (auto& [m, c] : count) s += (s.empty() ? "" : ", ") + m + " " + std::to_string(c);
         return s;
       }() + ")") << ", " << r.calibration_samples
    << " samples, " << fmt(r.calibration_seconds, 3) << " s, peak RSS " << fmt(r.peak_rss_mb, 4) << " MB</td></tr>"
    << "<tr><th>precision</th><td><code>" << esc(r.options.precision.str()) << "</code> ("
    << esc(r.options.precision.spec()) << ")</td></tr>"
    << "<tr><th>activations</th><td>" << activations_in_words(r.options)
    << "</td></tr><tr><th>smoothing</th><td>" << (r.smoothed ? std::to_string(r.smoothed) + " tensors, alpha " + fmt(r.smooth_alpha, 3) : std::string("off"))
    << "</td></tr><tr><th>evaluation samples</th><td>" << r.evaluation_samples << "</td></tr>";
  int quantized = 0;
  for (auto& [_, p] : r.precision) quantized += p != "fp32";
  o << "<tr><th>nodes</th><td>" << quantized << " quantized, " << r.precision.size() - quantized << " kept in FP32</td></tr>";
  if (r.budget)
    o << "<tr><th>accuracy budget</th><td>output error (" << esc(r.budget_metric) << ") &le; " << fmt(*r.budget) << ": reached " << fmt(r.budget_error)
      << " with " << r.precision.size() - quantized << " node(s) in FP32</td></tr>";
  o << "</table>";
  for (const auto& w : r.warnings) o << "<p><b>Warning:</b> " << esc(w) << "</p>";
  if (r.comparison) {
    o << "<h2>Task metric (measured)</h2><table><tr><th>metric</th><th>FP32</th><th>quantized</th><th>drop (points)</th></tr><tr><td>"
      << esc(r.task_description) << " (%, " << r.evaluation_samples << " evaluation samples)</td><td>" << fmt(100 * r.fp32_task_value)
      << "</td><td>" << fmt(100 * r.comparison->task_value) << "</td><td>" << fmt(r.comparison->task_drop_points, 3)
      << "</td></tr>";
    if (r.held_out)
      o << "<tr><td>the same on " << r.held_out_samples << " held-out samples (no choice saw them)</td><td>"
        << fmt(100 * r.fp32_held_out_value) << "</td><td>" << fmt(100 * r.held_out->task_value) << "</td><td>"
        << fmt(r.held_out->task_drop_points, 3) << "</td></tr>";
    o << "</table>";
    o << "<h2>FP32 vs quantized outputs (measured)</h2><table><tr><th>output</th><th>relative L2 error</th><th>SQNR dB</th>"
         "<th>max |error|</th><th>argmax agreement (last axis)</th></tr>";
    for (auto& c : r.comparison->outputs)
      o << "<tr><td>" << esc(c.name) << "</td><td>" << fmt(c.rel_l2) << "</td><td>" << fmt(c.sqnr_db, 3) << "</td><td>"
        << fmt(c.max_abs) << "</td><td>" << fmt(100 * c.argmax_agree, 4) << "% of " << c.rows << "</td></tr>";
    o << "</table>";
  }
  if (!r.rounding_error.empty()) {
    o << "<h2>Weight rounding: GPTQ against round-to-nearest (measured)</h2><p>Each layer's output error on the "
         "calibration inputs relative to its output, ||(W<sub>q</sub> &minus; W) X|| / ||W X||.</p><table><tr><th>node</th>"
         "<th>round to nearest</th><th>GPTQ</th></tr>";
    for (auto& [node, e] : r.rounding_error)
      o << "<tr><td>" << esc(node) << "</td><td>" << fmt(e.nearest) << "</td><td>" << fmt(e.gptq) << "</td></tr>";
    o << "</table>";
  }
  if (!r.sensitivity.empty()) o << "<h2>Sensitivity: output error with only this node quantized</h2>" << report::svg(sensitivity_chart(r));
  if (!r.budget_trace.empty()) {
    o << "<h2>Accuracy budget search</h2><table><tr><th>most sensitive nodes kept in FP32</th><th>output error</th></tr>";
    for (auto& [k, e] : r.budget_trace) o << "<tr><td>" << k << "</td><td>" << fmt(e) << "</td></tr>";
    o << "</table>";
  }
  if (!r.sqnr.empty()) o << "<h2>Per-tensor SQNR</h2>" << report::svg(sqnr_chart(r));
  o << "<h2>Precision per node</h2><table><tr><th>node</th><th>precision</th></tr>";
  for (auto& name : r.plan.nodes) o << "<tr><td>" << esc(name) << "</td><td>" << esc(r.precision.count(name) ? r.precision.at(name) : "?") << "</td></tr>";
  o << "</table>";
  return report::page("duet quantize: " + r.model, o.str());
}

nlohmann::json report_data(const QuantReport& r) {
  std::vector<report::Chart> charts;
  if (!r.sensitivity.empty()) charts.push_back(sensitivity_chart(r));
  if (!r.sqnr.empty()) charts.push_back(sqnr_chart(r));
  return report::data(charts);
}

}  // namespace duet::quant
