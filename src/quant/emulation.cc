#include "duet/quant/emulation.h"

#include <chrono>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/ops/registry.h"
#include "duet/passes/optimize.h"
#include "duet/runtime/session.h"

namespace duet::quant {

SampleSource seeded_samples(const ir::Graph& graph, const std::map<std::string, Dims>& shapes) {
  auto feeds = std::make_shared<std::map<std::string, Tensor>>(runtime::seeded_feeds(graph, shapes));
  SampleSource s;
  s.count = 1;
  s.load = [feeds](size_t) { return *feeds; };
  s.name = [](size_t) { return std::string("seeded random inputs"); };
  return s;
}

EmulationResult emulate_precisions(const ir::Model& input, const EmulationRequest& request, const SampleSource& data) {
  std::vector<numerics::Precision> precisions;
  for (const std::string& text : request.precisions) precisions.push_back(numerics::parse_precision(text));
  DUET_CHECK(!precisions.empty(), "emulate: no precision given");
  for (const std::string& op : request.rewrite.exclude_op_types)
    DUET_CHECK(ops::matrix_op_types().count(op) && ops::Registry::builtin().find("com.duet", "Emulated" + op),
               "emulate: --exclude-op takes Conv, MatMul or Gemm, got '", op, "'");
  std::unique_ptr<ir::Model> model = onnx_io::clone_model(input);
  runtime::check_supported(*model);
  passes::OptimizeOptions fold;
  fold.fuse = false;
  passes::optimize(*model, fold);

  Evaluator eval(*model, data, request.max_samples, request.run, Metric::L2, request.task);
  EmulationResult out;
  out.samples = eval.samples();
  out.fp32_task_value = eval.fp32_task_value();
  for (size_t i = 0; i < precisions.size(); ++i) {
    if (request.progress) request.progress(precisions[i].str(), i, precisions.size());
    EmulatedPrecision r;
    r.precision = precisions[i];
    std::unique_ptr<ir::Model> emulated = onnx_io::clone_model(*model);
    r.rewrite = passes::emulate_datapath(*emulated, r.precision, request.rewrite);
    const auto t0 = std::chrono::steady_clock::now();
    r.comparison = eval.compare(*emulated);
    r.ms_per_sample = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
                      static_cast<double>(eval.samples());
    if (request.keep_models) r.model = std::move(emulated);
    out.precisions.push_back(std::move(r));
  }
  if (request.progress && !precisions.empty()) request.progress(precisions.back().str(), precisions.size(), precisions.size());
  return out;
}

}  // namespace duet::quant
