// Post-training quantization as one library call: the whole recipe that
// `duet quantize` runs, as a value.
//
//   quant::Recipe recipe;                       // entropy ranges, per-channel INT8 weights
//   recipe.accuracy_budget = 0.01;              // keep the most sensitive nodes FP32 until it holds
//   quant::SampleSource calib = quant::sample_folder("calib/", *model->graph);
//   quant::PtqResult r = quant::quantize_post_training(*model, recipe, calib);
//   onnx_io::save_model(*r.quantized.model, "model_int8.onnx");
//
// Steps, in order: prepare (fold, opset), plan; AWQ's alpha search (INT4,
// measured output error per alpha) or SmoothQuant migration; bias-correction
// means; streaming calibration (observers, memory flat in the sample count);
// ranges by the method, or per tensor by measured error (`auto_method`);
// sensitivity and the accuracy budget; the QDQ model; its comparison with
// FP32 and per-tensor SQNR. Every error figure is measured.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "duet/core/progress.h"
#include "duet/quant/calibrate.h"
#include "duet/quant/quantize.h"
#include "duet/quant/report.h"

namespace duet::quant {

struct Recipe {
  QuantizeOptions options;             // precision, op types, exclusions, range overrides
  bool auto_method = false;            // per tensor, the candidate range with the smallest measured output error
  double smooth = 0;                   // SmoothQuant alpha (0: off; not with weight-only)
  bool awq = false;                    // INT4: activation-aware scales, alpha searched by measured error
  std::vector<double> awq_alphas = {0.0, 0.25, 0.5, 0.75, 1.0};
  bool bias_correction = false;        // Conv biases absorb the mean shift of their weight rounding
  bool gptq = false;                   // MatMul/Gemm weights rounded by GPTQ against their inputs' X^T X (gptq.h)
  bool sensitivity = false;            // rank nodes by their error when quantized alone (implied by a budget)
  std::optional<double> accuracy_budget;  // in the unit of budget_metric (Task: points of `task`)
  Metric budget_metric = Metric::L2;
  eval::TaskMetric task;               // measured on the evaluation samples beside FP32 (agreement by default)
  size_t max_eval = 16;                // evaluation samples for the choices and the comparison
  RunOptions run;                      // threads, backend of the calibration and evaluation runs
  Progress progress;  // stages: channel statistics, channel means, calibrating, sensitivity...
};

struct PtqResult {
  QuantizedModel quantized;  // the QDQ model, with each node's precision
  QuantReport report;        // what was done and measured (report.h: JSON and HTML)
  std::map<std::string, Observer> observers;  // what calibration saw, per activation tensor
  std::set<std::string> kept_float;           // planned nodes the accuracy budget kept in float
};

// `eval`: evaluation samples (nullptr: the first calibration samples), which
// the choices (auto ranges, AWQ, the budget) are made on; `held_out`: samples
// no choice sees, all of them measured once on the final model (the figure to
// quote). Throws
// duet::Error with one line for a recipe that cannot apply (a precision a
// QDQ model cannot state (check_quantizable), AWQ without INT4 weights,
// nothing to quantize, an override naming a tensor that is not quantized).
PtqResult quantize_post_training(const ir::Model& model, const Recipe& recipe, const SampleSource& calibration,
                                 const SampleSource* eval = nullptr, const SampleSource* held_out = nullptr);


}  // namespace duet::quant
