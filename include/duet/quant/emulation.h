// What precisions cost a model in accuracy, measured: the model's matrix ops
// run through each numerics::Precision bit-exactly (passes::emulate_datapath)
// and the outputs compared with FP32 on the same samples. `duet emulate` is a
// thin front end over it.
//
//   quant::EmulationRequest r;
//   r.precisions = {"bf16", "fp8", "int8,sparsity=2:4"};
//   const auto data = quant::sample_folder("samples/", *model->graph);
//   for (const auto& p : quant::emulate_precisions(*model, r, data).precisions)
//     std::cout << p.precision.str() << ": rel L2 " << p.comparison.rel_l2 << "\n";
//
// The model is first folded as a device compiler does before casting weights
// (constants, BatchNorm and per-channel affine steps into the convolutions;
// no op fusion). Every figure is measured on this CPU.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "duet/core/progress.h"
#include "duet/numerics/precision.h"
#include "duet/passes/emulate.h"
#include "duet/quant/calibrate.h"

namespace duet::quant {

struct EmulationRequest {
  std::vector<std::string> precisions = {"bf16", "fp16", "fp8", "int8"};  // numerics::Precision texts
  passes::EmulateOptions rewrite;  // op types / nodes kept in FP32 (op types: matrix ops with an emulated form)
  size_t max_samples = 8;
  eval::TaskMetric task;           // measured beside FP32's (Comparison::task_value); agreement by default
  RunOptions run;                  // executor of the FP32 parts
  bool keep_models = false;        // keep each emulated model (EmulatedPrecision::model)
  Progress progress;  // stage: the precision being emulated; done of total precisions
};

struct EmulatedPrecision {
  numerics::Precision precision;
  passes::EmulateReport rewrite;  // nodes emulated, nodes kept FP32 with the reason
  Comparison comparison;          // against FP32, per output (measured)
  double ms_per_sample = 0;       // measured, emulated (not the device's speed)
  std::unique_ptr<ir::Model> model;  // with keep_models
};

struct EmulationResult {
  size_t samples = 0;
  double fp32_task_value = 1;  // the request's task metric of FP32 on the samples
  std::vector<EmulatedPrecision> precisions;
};

// One clear error for an unknown precision, op type or model.
EmulationResult emulate_precisions(const ir::Model& model, const EmulationRequest& request, const SampleSource& data);

// One sample of seeded random inputs (runtime::seeded_feeds) for models without data.
SampleSource seeded_samples(const ir::Graph& graph, const std::map<std::string, Dims>& shapes = {});

}  // namespace duet::quant
