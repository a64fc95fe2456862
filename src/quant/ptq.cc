#include "duet/quant/ptq.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <sstream>

#include "duet/core/error.h"
#include "duet/core/process.h"
#include "duet/ops/registry.h"
#include "scheme.h"

namespace duet::quant {

namespace {

using Clock = std::chrono::steady_clock;

std::function<void(size_t, size_t)> stage(const Recipe& r, const std::string& name) {
  if (!r.progress) return {};
  return [progress = r.progress, name](size_t done, size_t total) { progress(name, done, total); };
}

// AWQ: per input channel s = mean|x|^alpha (normalized); the alpha with the
// smallest measured output error wins (alpha 0 is plain round-to-nearest).
std::unique_ptr<ir::Model> search_awq(const ir::Model& prepared, const Plan& plan, const Recipe& r,
                                      const SampleSource& calib, const SampleSource& eval_data, QuantReport& report) {
  RunOptions pass = r.run;
  pass.progress = stage(r, "channel statistics");
  const auto mean_abs = channel_statistics(prepared, smoothable_tensors(prepared, plan), calib, pass, ChannelStat::MeanAbs);
  Evaluator eval(prepared, eval_data, r.max_eval, r.run);
  double best = std::numeric_limits<double>::infinity();
  std::unique_ptr<ir::Model> best_model;
  for (double alpha : r.awq_alphas) {
    auto candidate = clone_model(prepared);
    const int n = smooth_activations(*candidate, plan, mean_abs, alpha, true);
    const double e = eval.compare(*quantize_model(*candidate, plan_quantization(*candidate, r.options), {}, r.options).model).error;
    report.awq_trace.emplace_back(alpha, e);
    if (e < best) best = e, report.smooth_alpha = alpha, best_model = std::move(candidate), report.smoothed = n;
  }
  return best_model;
}

// A loss against FP32 beyond what a user would accept unknowingly: more than
// one point of a task metric, or five of plain agreement (a CTC recognizer's
// frames move by a few percent while its text stays right). Names the
// activation ranges that cost the most on their own.
void warn_if_large_loss(QuantReport& report) {
  if (!report.comparison) return;
  const Comparison& c = report.held_out ? *report.held_out : *report.comparison;
  const bool task = report.task_metric != "agreement";
  if (c.task_drop_points <= (task ? 1.0 : 5.0)) return;
  std::vector<Evaluator::TensorSqnr> weakest = report.sqnr;
  std::sort(weakest.begin(), weakest.end(), [](auto& a, auto& b) { return a.isolated_db < b.isolated_db; });
  std::ostringstream w;
  w.precision(3);
  w << "the quantized model loses " << c.task_drop_points << " points of " << report.task_description << " against FP32 (measured on "
    << (report.held_out ? report.held_out_samples : report.evaluation_samples) << " samples)";
  if (!weakest.empty()) {
    w << "; the activation ranges that cost the most alone:";
    for (size_t i = 0; i < std::min<size_t>(3, weakest.size()); ++i)
      w << (i ? ", " : " ") << weakest[i].tensor << " (" << weakest[i].isolated_db << " dB)";
  }
  w << "; try another --method, --max-accuracy-drop or --exclude-nodes";
  report.warnings.push_back(w.str());
}

}  // namespace

PtqResult quantize_post_training(const ir::Model& model, const Recipe& r, const SampleSource& calib, const SampleSource* eval_in,
                                 const SampleSource* held_out) {
  QuantizeOptions qo = r.options;
  check_quantizable(qo.precision);  // before any work: one clear error
  DUET_CHECK(!r.awq || scheme::int4_weights(qo.precision),
             "--awq searches INT4 weight scales: use it with an INT4 weight-only precision (w4a16, or --weights int4 "
             "--activations none)");
  DUET_CHECK(calib.count > 0, "no calibration samples");
  const SampleSource& eval_data = eval_in ? *eval_in : calib;

  PtqResult out;
  QuantReport& report = out.report;
  report.smooth_alpha = r.smooth;
  report.calibration_samples = calib.count;

  auto prepared = prepare_for_quantization(model, qo);
  Plan plan = plan_quantization(*prepared, qo);
  if (r.awq) {
    prepared = search_awq(*prepared, plan, r, calib, eval_data, report);
    plan = plan_quantization(*prepared, qo);
  }
  if (r.smooth > 0 && scheme::quantizes_activations(qo.precision)) {
    RunOptions pass = r.run;
    pass.progress = stage(r, "channel statistics");
    const auto amax = channel_statistics(*prepared, smoothable_tensors(*prepared, plan), calib, pass);
    report.smoothed = smooth_activations(*prepared, plan, amax, r.smooth);
    plan = plan_quantization(*prepared, qo);
  }
  DUET_CHECK(!plan.nodes.empty(), "no node to quantize (op types: ", [&] {
    std::string s;
    for (auto& t : qo.op_types) s += (s.empty() ? "" : ",") + t;
    return s;
  }(), ")");
  if (r.bias_correction) {  // per-channel input means, after any smoothing
    RunOptions pass = r.run;
    pass.progress = stage(r, "channel means");
    qo.input_means = channel_statistics(*prepared, smoothable_tensors(*prepared, plan), calib, pass, ChannelStat::Mean);
  }
  if (r.gptq) {  // X^T X of each MatMul/Gemm data input with a constant 2-D weight, after any smoothing
    std::map<std::string, int64_t> inputs;
    for (const auto& name : plan.nodes) {
      const ir::Node* n = nullptr;
      for (auto& node : prepared->graph->nodes)
        if (node->name == name) n = node.get();
      if (!n || (n->op_type != "MatMul" && n->op_type != "Gemm") || n->attr_int("transA", 0) != 0) continue;
      const ops::MatrixTraits* traits = ops::matrix_traits(*n);
      const Tensor* w = n->inputs.size() > 1 ? prepared->graph->constant(n->inputs[1]) : nullptr;
      if (!traits || traits->weight_input != 1 || !w || w->rank() != 2) continue;
      const ops::WeightAxes axes = traits->weight_axes(*n, 2);
      if (axes.reduce >= 0) inputs[n->inputs[0]->name] = w->dim(static_cast<int>(axes.reduce));
    }
    DUET_CHECK(!inputs.empty(), "--rounding gptq rounds MatMul/Gemm weights; the plan has no MatMul or Gemm with a constant 2-D weight");
    RunOptions pass = r.run;
    pass.progress = stage(r, "GPTQ statistics");
    qo.gptq_grams = input_gram(*prepared, inputs, calib, pass);
    report.rounding = "gptq";
  }
  for (auto& [name, _] : qo.overrides)
    DUET_CHECK(std::find(plan.activations.begin(), plan.activations.end(), name) != plan.activations.end(), "--override: '",
               name, "' is not an activation tensor that gets quantized");

  report.options = qo;
  report.plan = plan;
  std::map<std::string, Range> ranges;
  if (!plan.activations.empty()) {
    const auto t0 = Clock::now();
    RunOptions pass = r.run;
    pass.progress = stage(r, "calibrating");
    out.observers = calibrate(*prepared, plan.activations, calib, pass);
    ranges = choose_ranges(out.observers, qo);
    report.calibration_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  report.peak_rss_mb = peak_rss_mb();

  Evaluator eval(*prepared, eval_data, r.max_eval, r.run, r.budget_metric, r.task);
  report.evaluation_samples = eval.samples();
  report.task_metric = r.task.name();
  report.task_description = r.task.description();
  report.task_lower_is_better = r.task.lower_is_better();
  report.fp32_task_value = eval.fp32_task_value();
  if (r.auto_method && !out.observers.empty())
    ranges = choose_ranges_by_error(*prepared, plan, out.observers, qo, eval, &report.chosen_method, stage(r, "choosing ranges"));
  std::set<std::string>& keep_float = out.kept_float;
  if (r.sensitivity || r.accuracy_budget) {
    report.sensitivity = sensitivity(*prepared, plan, ranges, qo, eval, stage(r, "sensitivity"));
    if (r.accuracy_budget) {
      report.budget = r.accuracy_budget;
      report.budget_metric = r.budget_metric == Metric::Argmax ? "argmax"
                             : r.budget_metric == Metric::Task ? r.task.name() + " drop in points"
                                                               : "l2";
      keep_float = choose_float_nodes(*prepared, plan, ranges, qo, eval, report.sensitivity, *r.accuracy_budget,
                                      &report.budget_error, &report.budget_trace);
    }
  }
  out.quantized = quantize_model(*prepared, plan, ranges, qo, {}, keep_float);
  report.precision = out.quantized.precision;
  report.rounding_error = out.quantized.rounding;
  report.ranges = ranges;
  report.comparison = eval.compare(*out.quantized.model);
  if (!ranges.empty()) report.sqnr = eval.tensor_sqnr(*prepared, out.quantized, ranges, qo);
  if (held_out) {
    Evaluator measure(*prepared, *held_out, held_out->count, r.run, Metric::L2, r.task);
    report.held_out = measure.compare(*out.quantized.model);
    report.held_out_samples = measure.samples();
    report.fp32_held_out_value = measure.fp32_task_value();
  }
  warn_if_large_loss(report);
  return out;
}

}  // namespace duet::quant
