// duet quantize MODEL --calib DIR -o OUT.onnx: post-training quantization.
// Parses the flags into a quant::Recipe, calls quant::quantize_post_training
// (quant/ptq.h: calibration, SmoothQuant/AWQ, bias correction, sensitivity,
// the accuracy budget, measured comparison), writes the QDQ model and reports.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <sstream>
#include <unistd.h>

#include "commands.h"
#include "duet/core/error.h"
#include "duet/core/html.h"
#include "duet/eval/metrics.h"
#include "duet/onnx/onnx_io.h"
#include "duet/quant/ptq.h"
#include "duet/quant/report.h"
#include "duet/report/chart.h"

namespace duet::cli {


namespace {

std::set<std::string> split_list(const std::vector<std::string>& items) {
  std::set<std::string> out;
  for (const auto& item : items) {
    std::stringstream ss(item);
    for (std::string s; std::getline(ss, s, ',');)
      if (!s.empty()) out.insert(s);
  }
  return out;
}

// The activation ranges that cost the most on their own (isolated SQNR: a
// tensor against its own quantize-dequantize), beside the min-max extent the
// calibration saw: a range far inside it is clipping values that carry much
// of the signal, which a histogram method can do where a few large values
// matter (KL divergence weighs values by count, not by energy).
void print_weakest_ranges(const quant::QuantReport& report, const std::map<std::string, quant::Observer>& observers,
                          const std::string& method) {
  std::vector<quant::Evaluator::TensorSqnr> weakest = report.sqnr;
  if (weakest.empty()) return;
  std::sort(weakest.begin(), weakest.end(), [](auto& a, auto& b) { return a.isolated_db < b.isolated_db; });
  weakest.resize(std::min<size_t>(weakest.size(), 3));
  std::cout << "weakest activation ranges (SQNR of the tensor alone, measured):\n";
  for (const auto& t : weakest) {
    std::cout << "  " << t.tensor << ": " << std::setprecision(3) << t.isolated_db << " dB";
    auto r = report.ranges.find(t.tensor);
    auto o = observers.find(t.tensor);
    if (r != report.ranges.end() && o != observers.end())
      std::cout << ", range [" << r->second.lo << ", " << r->second.hi << "] of observed [" << o->second.min() << ", "
                << o->second.max() << "]";
    std::cout << "\n";
  }
  std::cout << std::setprecision(6);
  if (weakest.front().isolated_db < 20 && method != "minmax")
    std::cout << "  (under 20 dB: " << method << " clipped values that carry much of that tensor's signal; "
              << "--method mse or auto, --override TENSOR=LO:HI or --accuracy-budget)\n";
}

// --weights/--activations/--per-tensor/--block-size, the flags from before
// --precision, as the one precision they name: int8/int8 is int8, fp8/fp8
// fp8, int8/none w8a16, int4/none w4a16 with the block; weight scales per
// channel unless --per-tensor (INT4: per block). Pairs no precision names
// (INT8 with FP8, FP8 weights over float activations, INT4 with quantized
// activations) are one error, as are flags the pair has no use for.
std::string precision_of_flags(const std::string& weights, const std::string& activations, bool per_tensor,
                               int block_size, bool block_size_given) {
  const std::string pair = weights + "/" + activations;
  std::string text = pair == "int8/int8"   ? "int8"
                     : pair == "fp8/fp8"   ? "fp8"
                     : pair == "int8/none" ? "w8a16"
                     : pair == "int4/none" ? "w4a16"
                                           : "";
  if (text.empty())
    fail("--weights ", weights, " --activations ", activations, " names no precision: use int8/int8, fp8/fp8, "
         "int8/none or int4/none, or --precision (duet emulate --list)");
  const numerics::Precision preset = numerics::parse_precision(text);
  if (weights == "int4") {
    DUET_CHECK(!per_tensor, "--per-tensor: INT4 weights are scaled per block of --block-size values");
    if (block_size != preset.block) text += ",block=" + std::to_string(block_size);
    return text;
  }
  DUET_CHECK(!block_size_given, "--block-size applies to --weights int4 only");
  // Only where the preset's weight scaling differs (fp8's is per tensor): the text stays the preset's name otherwise.
  const char* scaling = per_tensor ? "tensor" : "channel";
  if (numerics::scaling_name(preset.w.scaling) != std::string(scaling)) text += ",w=" + preset.w.format.name + "/" + scaling;
  return text;
}

}  // namespace

Runner add_quantize(CLI::App& app) {
  struct Options {
    std::string model, calib, eval, held_out, output, report, preprocess, method = "percentile", weights = "int8", activations = "int8";
    std::string backend = "cpu", metric = "l2", task = "agreement", precision, rounding = "nearest";
    bool per_tensor = false, symmetric = false, quantize_outputs = false, reduce_range = false, awq = false, bias_correction = false, json = false, sensitivity = false;
    std::vector<std::string> exclude, exclude_nodes, op_types, overrides;
    double budget = -1, max_drop = -1, percentile = 99.999, smooth = 0;
    int block_size = 32, threads = 2;
    size_t max_calib = 0, max_eval = 16;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("quantize", "Post-training quantization: calibrate, write a QDQ model, measure it against FP32");
  cmd->add_option("model", o->model, "ONNX model (FP32)")->required();
  cmd->add_option("--calib", o->calib, "Calibration samples: test_data_set_*/input_*.pb folders, .npy/.pb files or images")->required();
  cmd->add_option("-o,--output", o->output, "Quantized model to write (.onnx)")->required();
  cmd->add_option("--method", o->method, "Calibration: percentile (default: --percentile of the values inside the range), minmax, ema, entropy "
                  "(TensorRT KL), mse, or auto (per tensor, the candidate with the smallest measured output error on the "
                  "evaluation samples)")
      ->check(CLI::IsMember({"minmax", "ema", "percentile", "entropy", "mse", "auto"}));
  cmd->add_option("--percentile", o->percentile, "percentile method: share of values kept inside the range, in %")
      ->check(CLI::Range(50.0, 100.0));
  cmd->add_flag("--per-tensor", o->per_tensor, "One weight scale per tensor (default: per output channel)");
  cmd->add_option("--weights", o->weights, "Weight format: int8 (default), int4 (MatMul/Gemm, blocked; with --activations none) or fp8 "
                  "(E4M3FN, with --activations fp8); with --activations it names one precision (int8, w8a16, w4a16, fp8)")
      ->check(CLI::IsMember({"int8", "int4", "fp8"}));
  auto* block_size = cmd->add_option("--block-size", o->block_size, "INT4 block size along the reduced axis")
                         ->check(CLI::IsMember({32, 64, 128}));
  cmd->add_option("--activations", o->activations, "Activation format: int8 (default), fp8 (E4M3FN) or none (weight-only)")
      ->check(CLI::IsMember({"int8", "fp8", "none"}));
  cmd->add_option("--precision", o->precision,
                  "What to quantize to, in the one precision vocabulary (duet emulate --list): int8 (default scheme), "
                  "w8a16 or w4a16 (weight-only), fp8, or a spec such as x=int8/tensor,w=int8/tensor; "
                  "replaces --weights, --activations, --per-tensor and --block-size")
      ->excludes("--weights")
      ->excludes("--activations")
      ->excludes("--per-tensor")
      ->excludes("--block-size");
  cmd->add_flag("--quantize-outputs", o->quantize_outputs,
                 "Also quantize every quantized node's output (ONNX Runtime's placement; default: only inputs of quantized nodes)");
  cmd->add_option("--smooth", o->smooth,
                  "Migrate activation outliers into the weights (SmoothQuant) with this alpha before calibrating; 0: off")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--bias-correction", o->bias_correction,
                 "Correct each Conv's bias for the mean output shift its weight rounding causes (per-channel input means)");
  cmd->add_option("--rounding", o->rounding,
                  "Weight rounding: nearest (default) or gptq (MatMul/Gemm weights, INT8 or INT4: second-order error "
                  "compensation against the layer's inputs on the calibration data; per-layer error in the report)")
      ->check(CLI::IsMember({"nearest", "gptq"}));
  cmd->add_flag("--awq", o->awq,
                 "INT4: activation-aware scales (AWQ-style): search alpha in s = mean|x|^alpha by measured output error");
  cmd->add_flag("--reduce-range", o->reduce_range,
                 "7-bit INT8 weights ([-63, 63]): integer kernels stay exact on x86 CPUs without VNNI");
  cmd->add_flag("--symmetric", o->symmetric, "INT8 activations symmetric (zero point 0) instead of UINT8 with a zero point");
  cmd->add_option("--op-types", o->op_types, "Op types to quantize (default Conv,ConvTranspose,MatMul,Gemm)");
  cmd->add_option("--exclude", o->exclude, "Op types to leave in FP32 (comma-separated or repeated)");
  cmd->add_option("--exclude-nodes", o->exclude_nodes, "Node names to leave in FP32");
  cmd->add_option("--override", o->overrides, "Fix a tensor's range instead of calibrating it: NAME=LO:HI (repeatable)");
  cmd->add_option("--accuracy-budget", o->budget,
                  "Largest relative L2 output error allowed (e.g. 0.02): the most sensitive nodes stay FP32 until it holds "
                  "(-1, the default: no budget)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            const double b = std::strtod(v.c_str(), nullptr);
            return b == -1 || (b >= 0 && b <= 10) ? std::string() : "must be from 0 to 10 (or -1: none), got " + v;
          },
          "BUDGET"));
  cmd->add_option("--budget-metric", o->metric,
                  "What --accuracy-budget bounds: l2 (relative L2 output error, default) or argmax (share of output rows "
                  "whose argmax changes: classifiers, CTC recognizers)")
      ->check(CLI::IsMember({"l2", "argmax"}));
  cmd->add_option("--metric", o->task,
                  "Task metric measured on the evaluation samples, FP32 beside quantized: agreement (with FP32, default), "
                  "top1[,labels=A,B,...] (labels beside the samples), cer,keys=FILE[,spaces=ignore] (CTC recognizers; reference text "
                  "beside the samples) or boxes (text detectors: box F1 against the \"x y w h\" lines beside the samples)");
  cmd->add_option("--max-accuracy-drop", o->max_drop,
                  "Points of --metric the quantized model may lose against FP32: the most sensitive nodes stay FP32 until "
                  "it holds")
      ->check(CLI::Range(0.0, 100.0))
      ->excludes("--accuracy-budget");
  cmd->add_flag("--sensitivity", o->sensitivity, "Rank nodes by the output error when quantized alone (implied by --accuracy-budget)");
  cmd->add_option("--eval", o->eval, "Evaluation samples (default: the first calibration samples)");
  cmd->add_option("--held-out", o->held_out,
                  "Held-out samples: the final model measured on all of them (task metric and L2), no choice made on them");
  cmd->add_option("--max-calib", o->max_calib, "Use at most this many calibration samples (0: all)");
  cmd->add_option("--max-eval", o->max_eval, "Evaluation samples used for sensitivity and the comparison");
  cmd->add_option("--preprocess", o->preprocess, "Image preprocessing spec for image folders, e.g. resize=48x320,keep_ratio,pad=right,scale=1/255,mean=0.5,std=0.5,order=bgr (io/preprocess.h)");
  add_backend_option(cmd, o->backend, "Backend for calibration and evaluation runs: cpu (default) or reference");
  cmd->add_option("--threads", o->threads, "Intra-op threads")->check(CLI::Range(1, 256));
  cmd->add_option("--report", o->report, "Write an HTML report (plots of sensitivity, SQNR and the output comparison)");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  return [o, block_size]() {
    const auto t_start = std::chrono::steady_clock::now();
    quant::Recipe recipe;
    quant::QuantizeOptions& qo = recipe.options;
    qo.precision = numerics::parse_precision(
        !o->precision.empty() ? o->precision
                              : precision_of_flags(o->weights, o->activations, o->per_tensor, o->block_size, block_size->count() > 0));
    quant::check_quantizable(qo.precision);  // before the model and the samples load
    auto model = onnx_io::load_model(o->model);
    recipe.auto_method = o->method == "auto";
    qo.calibration.method = recipe.auto_method ? quant::Method::Percentile : quant::parse_method(o->method);
    qo.calibration.percentile = o->percentile;
    qo.symmetric_activations = o->symmetric;
    qo.quantize_outputs = o->quantize_outputs;
    qo.reduce_range = o->reduce_range;
    if (!o->op_types.empty()) qo.op_types = split_list(o->op_types);
    qo.exclude_op_types = split_list(o->exclude);
    qo.exclude_nodes = split_list(o->exclude_nodes);
    for (const auto& spec : o->overrides) {
      const NamedRange given = parse_named_range("--override", spec);
      quant::Range r;
      r.lo = static_cast<float>(given.lo);
      r.hi = static_cast<float>(given.hi);
      DUET_CHECK(r.lo <= 0 && r.hi >= 0 && r.lo < r.hi, "--override '", spec, "': the range must contain 0 (LO <= 0 <= HI, LO < HI)");
      qo.overrides[given.name] = r;
    }
    recipe.smooth = o->smooth;
    recipe.awq = o->awq;
    recipe.bias_correction = o->bias_correction;
    recipe.gptq = o->rounding == "gptq";
    recipe.sensitivity = o->sensitivity;
    recipe.task = eval::parse_metric(o->task);
    if (o->budget >= 0) recipe.accuracy_budget = o->budget;
    recipe.budget_metric = o->metric == "argmax" ? quant::Metric::Argmax : quant::Metric::L2;
    if (o->max_drop >= 0) {
      recipe.accuracy_budget = o->max_drop;
      recipe.budget_metric = quant::Metric::Task;
    }
    recipe.max_eval = o->max_eval;
    recipe.run.threads = o->threads;
    recipe.run.backend = o->backend;
    recipe.progress = progress_display("quantize");

    quant::SampleSource calib = quant::sample_folder(o->calib, *model->graph, o->preprocess);
    if (o->max_calib && calib.count > o->max_calib) calib.count = o->max_calib;
    std::optional<quant::SampleSource> eval;
    if (!o->eval.empty()) eval = quant::sample_folder(o->eval, *model->graph, o->preprocess);
    std::optional<quant::SampleSource> held_out;
    if (!o->held_out.empty()) held_out = quant::sample_folder(o->held_out, *model->graph, o->preprocess);
    quant::PtqResult result =
        quant::quantize_post_training(*model, recipe, calib, eval ? &*eval : nullptr, held_out ? &*held_out : nullptr);
    quant::QuantReport& report = result.report;
    report.model = o->model;
    report.output = o->output;
    const quant::QuantizedModel& q = result.quantized;
    onnx_io::save_model(*q.model, o->output);
    if (!o->report.empty()) duet::report::write_report(o->report, quant::html_report(report), quant::report_data(report));
    for (const auto& w : report.warnings) note("quantize", w, LogLevel::Warning);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    if (o->json) {
      auto j = quant::to_json(report);
      j["seconds"] = seconds;
      print_json(j, 2);
      return 0;
    }
    int quantized = 0;
    for (auto& [_, p] : q.precision) quantized += p != "fp32";
    std::cout << "wrote " << o->output << ": " << quantized << " of " << q.precision.size() << " nodes quantized ("
              << "precision " << qo.precision.str() << ", "
              << (recipe.auto_method ? std::string("auto") : quant::method_name(qo.calibration.method)) << " calibration on "
              << calib.count << " samples)\n";
    std::cout << "measured on " << report.evaluation_samples << " evaluation samples (FP32 vs quantized):\n";
    for (auto& c : report.comparison->outputs)
      std::cout << "  " << c.name << ": relative L2 error " << c.rel_l2 << ", SQNR " << c.sqnr_db << " dB, argmax agreement "
                << 100 * c.argmax_agree << "% of " << c.rows << " rows\n";
    if (recipe.task.kind != eval::MetricKind::Agreement) {
      const double fp32 = 100 * report.fp32_task_value, got = 100 * report.comparison->task_value;
      std::cout << "  " << report.task_description << ": FP32 " << format_number(fp32) << "%, quantized " << format_number(got) << "% (drop "
                << format_number(report.comparison->task_drop_points, 3) << " points)\n";
    }
    if (!report.rounding_error.empty()) {
      double nearest = 0, gptq = 0;
      for (auto& [_, e] : report.rounding_error) nearest += e.nearest, gptq += e.gptq;
      const double n = static_cast<double>(report.rounding_error.size());
      std::cout << "GPTQ rounding of " << report.rounding_error.size() << " layer(s): mean relative output error "
                << format_number(nearest / n, 3) << " to nearest -> " << format_number(gptq / n, 3)
                << " (each layer on the calibration inputs)\n";
    }
    if (report.held_out)
      std::cout << "held out, " << report.held_out_samples << " samples: " << report.task_description << ": FP32 "
                << format_number(100 * report.fp32_held_out_value) << "%, quantized "
                << format_number(100 * report.held_out->task_value) << "% (drop "
                << format_number(report.held_out->task_drop_points, 3) << " points); relative L2 "
                << format_number(report.held_out->rel_l2, 3) << "\n";
    if (report.budget)
      std::cout << "accuracy budget " << *report.budget << " (" << report.budget_metric << "): error " << report.budget_error
                << " with " << result.kept_float.size() << " node(s) kept in FP32\n";
    if (!report.sensitivity.empty()) {
      std::cout << "most sensitive nodes:";
      for (size_t i = 0; i < std::min<size_t>(5, report.sensitivity.size()); ++i)
        std::cout << " " << report.sensitivity[i].first << " (" << report.sensitivity[i].second << ")";
      std::cout << "\n";
    }
    print_weakest_ranges(report, result.observers, recipe.auto_method ? "auto" : quant::method_name(qo.calibration.method));
    std::cout << "calibration peak RSS " << report.peak_rss_mb << " MB; total " << seconds << " s\n";
    return 0;
  };
}

}  // namespace duet::cli
