// duet evaluate MODEL --data DIR --metric M [--reference FP32.onnx]: how good
// a model is at its task on a sample folder — top-1 against labels, CER of a
// CTC recognizer against reference text, a text detector's box F1 — and, with
// a reference model, the same figure of the reference and the output error
// against it. One definition of each metric (eval/metrics.h) and of the
// comparison (quant::Evaluator), as quantize, emulate and plan use them; any
// ONNX model, including QDQ models written by other tools.
#include <nlohmann/json.hpp>

#include <iostream>

#include "commands.h"
#include "duet/core/html.h"
#include "duet/onnx/onnx_io.h"
#include "duet/quant/calibrate.h"

namespace duet::cli {

Runner add_evaluate(CLI::App& app) {
  struct Options {
    std::string model, data, reference, metric = "agreement", preprocess, backend = "cpu";
    size_t max_samples = 0;
    int threads = 2;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("evaluate", "Measure a model's task metric on a sample folder (top-1, CER, box F1), "
                                             "beside a reference model's");
  cmd->add_option("model", o->model, "ONNX model to measure")->required();
  cmd->add_option("--data", o->data, "Samples with their references beside them (label or text files)")->required();
  cmd->add_option("--metric", o->metric,
                  "top1[,labels=A,B,...], cer,keys=FILE[,spaces=ignore], boxes, or agreement (with --reference)");
  cmd->add_option("--reference", o->reference, "A reference model (e.g. the FP32 original): its metric, and the output error against it");
  cmd->add_option("--max-samples", o->max_samples, "Use at most this many samples (0: all)");
  cmd->add_option("--preprocess", o->preprocess, "Image preprocessing spec for image folders (as duet quantize)");
  add_backend_option(cmd, o->backend, "Backend: cpu (default) or reference");
  cmd->add_option("--threads", o->threads, "Intra-op threads")->check(CLI::Range(1, 256));
  cmd->add_flag("--json", o->json, "Print the figures as JSON");
  return [o]() {
    const eval::TaskMetric metric = eval::parse_metric(o->metric);
    DUET_CHECK(metric.kind != eval::MetricKind::Agreement || !o->reference.empty(),
               "evaluate: --metric agreement compares with a --reference model; name one, or a task metric");
    const auto model = onnx_io::load_model(o->model);
    const auto reference = o->reference.empty() ? nullptr : onnx_io::load_model(o->reference);
    const quant::SampleSource data = quant::sample_folder(o->data, *model->graph, o->preprocess);
    DUET_CHECK(data.count > 0, "evaluate: no samples in ", o->data);
    quant::RunOptions run;
    run.threads = o->threads;
    run.backend = o->backend;
    const size_t n = o->max_samples ? std::min(o->max_samples, data.count) : data.count;
    // The Evaluator measures its own model on construction; with a reference, that is the reference and the model
    // is the candidate compared with it.
    const quant::Evaluator evaluator(reference ? *reference : *model, data, n, run, quant::Metric::L2, metric);
    std::optional<quant::Comparison> against;
    if (reference) against = evaluator.compare(*model);
    const double value = against ? against->task_value : evaluator.fp32_task_value();
    if (o->json) {
      nlohmann::json j = {{"model", o->model},
                          {"data", o->data},
                          {"samples", evaluator.samples()},
                          {"figures", "measured"},
                          {"metric", metric.name()},
                          {"description", metric.description()},
                          {"value", value}};
      if (against) {
        j["reference"] = {{"model", o->reference}, {"value", evaluator.fp32_task_value()},
                          {"drop_points", against->task_drop_points}, {"rel_l2", against->rel_l2},
                          {"argmax_changed", against->argmax_changed}};
      }
      print_json(j, 2);
      return 0;
    }
    std::cout << o->model << ": " << metric.description() << " " << format_number(100 * value) << "% on " << evaluator.samples()
              << " samples (measured)\n";
    if (against)
      std::cout << "reference " << o->reference << ": " << format_number(100 * evaluator.fp32_task_value()) << "% (drop "
                << format_number(against->task_drop_points, 3) << " points); relative L2 against it "
                << format_number(against->rel_l2, 3) << "\n";
    return 0;
  };
}

}  // namespace duet::cli
