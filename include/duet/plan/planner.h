// The planner: the user states the objective and the limits, Duet chooses the
// device, the batch and each matrix layer's precision (and 2:4 sparsity), and
// says what the choice costs and how accurate it is — `duet plan`.
//
//   plan::PlanRequest r;
//   r.objective = plan::Objective::Latency;
//   r.max_accuracy_drop = 1.0;                  // points of the task metric
//   r.metric = eval::parse_metric("top1,labels=0,180");
//   r.devices = {"t4", "a100"};
//   const plan::PlanResult p = plan::plan_model(model, r, quant::sample_folder(dir, *model.graph));
//
// How (every figure says whether it is measured or modelled):
//  1. The samples split in two: even-numbered ones for the search, odd ones held
//     out; the accuracy printed for a plan comes from the held-out part.
//  2. Sensitivity, measured: each matrix layer alone through each candidate
//     precision (bit-exact emulation, passes::emulate_nodes), the rest FP32; its
//     output noise power (squared relative L2 against FP32) is the layer's error.
//  3. Cost, modelled: each layer's time and energy at each precision on each
//     device and batch from the simulator (sim::simulate on the folded model).
//  4. Choice, exact: per device and batch, the trade-off between summed error and
//     summed time over every per-layer assignment (plan::trade_off, the exact
//     multiple-choice knapsack); then the finalists along it are emulated whole
//     and their task metric measured on the search samples: the fastest that
//     keeps the accuracy budget is the device's plan (a binary search along the
//     curve; the whole mixed model is re-simulated for its figures). With the
//     accuracy objective, the better of two proxy plans (summed noise, summed
//     per-layer task drop) is refined by a local search measured whole-model on
//     the search samples (PlanRequest::refine).
//  5. The host CPU is measured, never modelled: the cpu backend runs the model
//     at FP32 and at BF16 (where it computes BF16), batch 1.
//  6. Plans across devices and batches are ranked by the objective under the
//     limits; the Pareto front over (accuracy, latency, throughput, cost, energy)
//     is kept; infeasible requests name the binding limit and the nearest plan.
// Deterministic: the same inputs give the same plan and the same figures
// (measured timings of the host aside).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duet/core/progress.h"
#include "duet/eval/metrics.h"
#include "duet/ir/graph.h"
#include "duet/quant/calibrate.h"
#include "duet/sim/device.h"

namespace duet::plan {

// Accuracy: the most accurate plan (measured) within the other limits.
enum class Objective { Latency, Cost, Energy, Throughput, Accuracy };
Objective parse_objective(const std::string& s);  // latency | cost | energy | throughput | accuracy
const char* objective_name(Objective o);

// One layer's candidate: a precision, its measured error and modelled cost per (device, batch).
struct Candidate {
  std::string precision;   // numerics::Precision text; "fp32" keeps the layer as it is
  double noise = 0;        // measured: mean squared relative L2 of the outputs, this layer alone
  double task_drop = 0;    // measured: task-metric drop (points), this layer alone
};

struct MatrixLayer {
  std::string node, op;
  std::vector<Candidate> options;
};

struct PlanRequest {
  Objective objective = Objective::Latency;
  double max_accuracy_drop = 1.0;          // points (x100) of the task metric's score, held against FP32
  std::optional<double> max_latency_ms;    // per request: the batch's latency, or with arrival_rate the tail below
  // Requests arriving at this rate (Poisson, per second): a request's modelled
  // latency at `percentile` is the wait for its batch to fill (the Erlang
  // quantile of b-1 more arrivals), the mean M/D/1 wait for the device, and the
  // batch's latency; a device slower than the arrivals is infeasible.
  std::optional<double> arrival_rate;
  double percentile = 99;
  std::optional<double> min_throughput;    // inferences per second
  std::optional<double> max_power_w;       // the device's TDP
  std::optional<double> max_cost_per_million;  // USD per million inferences
  std::vector<std::string> devices = {"all"};   // catalog ids, "host", "all" (the calibrated catalog + host)
  std::vector<std::string> precisions = {"fp32", "bf16", "fp16", "fp8", "int8"};  // numerics::Precision texts
  std::vector<int64_t> batches = {1};
  bool sparsity = false;                   // also offer each precision with 2:4 sparse weights
  eval::TaskMetric metric;
  size_t max_samples = 16;                 // search samples (and held-out ones unless max_held_out is set)
  size_t max_held_out = 0;                 // held-out samples; 0: max_samples
  // The accuracy objective's measured refinement: at most this many whole
  // models emulated per device and batch in a local search around the solver's
  // plan (0: take the solver's plan as it is).
  size_t refine = 16;
  // Layers whose sensitivity was measured already (PlanResult::layers of an
  // earlier plan of the same model on the same samples): taken as they are
  // instead of measured again, so a second plan with other limits is quick.
  std::vector<MatrixLayer> measured_layers;
  std::map<std::string, Dims> input_shapes;  // bind unknown non-batch input dims for the simulator
  std::string catalog_dir = sim::default_devices_dir();
  int threads = 1;
  Progress progress;  // stages: loading samples, sensitivity, costing, planning, host
};

struct Figures {
  double score = 0;           // task metric's score, higher is better (1 - CER for cer)
  double metric_value = 0;    // the metric as people quote it (accuracy, CER, agreement)
  double drop_points = 0;     // (FP32's score - score) x 100
  size_t samples = 0;
};

struct Plan {
  std::string device, device_name;
  bool measured_latency = false;          // host: measured; catalog devices: modelled
  int64_t batch = 1;
  std::map<std::string, std::string> precision;  // matrix node -> precision text
  std::string summary;                    // "int8 ×40, bf16 ×11" or "uniform bf16"
  double latency_ms = 0, throughput = 0;
  std::optional<double> tail_latency_ms;  // with an arrival rate: the request latency at the percentile (modelled)
  std::optional<double> energy_mj;        // per inference, modelled
  std::optional<double> cost_per_million; // modelled from the catalog price
  std::string cost_source;                // the price's source and date
  double power_w = 0;
  Figures search, held_out;               // measured accuracy
  int host_fallback_nodes = 0;            // modelled: nodes the device hands to the host CPU
  std::map<std::string, int> host_fallback;  // "op: why" -> how many nodes (what the device compiler will not take)
  bool feasible = false;
  std::string rejected;                   // why a plan was not chosen ("" for the chosen one)
  bool pareto = false;
};

struct PlanResult {
  std::string model, metric, metric_description;
  Figures fp32_search, fp32_held_out;     // measured
  size_t search_samples = 0, held_out_samples = 0;
  std::vector<MatrixLayer> layers;
  std::vector<Plan> plans;                // one per device × batch (and the host's precisions)
  int chosen = -1;                        // index into plans; -1: infeasible
  std::string infeasible;                 // the binding limit, the nearest plan, how far the limit must move
  std::string objective;
  double search_s = 0;                    // wall time of the search
  double measure_s = 0;                   // of which measuring accuracy (sensitivity, finalists, held-out)
  size_t emulated_models = 0;             // whole-model emulations measured
  size_t solves = 0, solves_stopped = 0;  // per-layer solves, and those the node limit stopped (best found kept)
  double solver_gap = 0;                  // the relative optimality gap the solves settled for
  std::unique_ptr<ir::Model> folded;      // the folded FP32 model the plans annotate
};

PlanResult plan_model(const ir::Model& model, const PlanRequest& request, const quant::SampleSource& data);

// The modelled request latency at `percentile` for Poisson arrivals at `rate`
// per second into batches of `batch` served in `batch_latency_s`; infinity when
// the device cannot keep up (utilization >= 1).
double tail_latency_s(double rate, int64_t batch, double batch_latency_s, double percentile);

// Any per-node assignment (node -> precision text; nodes not named stay FP32)
// costed like a plan: every figure modelled, on a catalog device at a batch.
// What a planned model is compared against: uniform precisions, random
// assignments within a budget.
Plan cost_assignment(const PlanResult& result, const PlanRequest& request, const quant::SampleSource& data,
                     const std::string& device, int64_t batch, const std::map<std::string, std::string>& precision);

// Measures plans' accuracy (Plan::search, Plan::held_out) on the request's
// search and held-out samples, the same split the planner used.
void measure_plans(const PlanResult& result, const PlanRequest& request, const quant::SampleSource& data,
                   std::vector<Plan>& plans);

// The chosen plan's model: the folded FP32 model with every matrix node's
// precision annotation (numerics::kPrecisionAnnotation), which `duet simulate`
// costs node by node and `duet emulate` / plan verification run bit-exactly.
std::unique_ptr<ir::Model> annotated_model(const PlanResult& result, const Plan& plan);

// The plan as a device toolchain takes it: its INT8 nodes as a QDQ model with
// per-channel INT8 weights and activation scales computed at run time (max |x|
// / 127 per tensor: quant::QuantizeOptions::dynamic_activations), which is what
// the planner emulated; every other node FP32 with its precision annotation.
// ONNX Runtime runs it (the Q/DQ pairs in float); its accuracy is measured again
// on the held-out samples (`held_out`): the products are summed in FP32 rather
// than INT32, and through a deep network those last-bit differences move values
// across the next layer's rounding boundaries, so outputs drift (PP-OCRv4
// recognizer, all 51 layers INT8: relative L2 1e-7 after four layers, 0.1-0.4
// at the output; CER 0.0192 vs the emulated 0.0168 on 24 lines). The bit-exact
// form of the plan is `emulated_model`. Engines
// that need static scales (TensorRT, fused QDQ kernels) calibrate with
// `duet quantize` instead.
struct Deployable {
  std::unique_ptr<ir::Model> model;
  Figures held_out;  // measured, running the QDQ model with the cpu backend
  size_t int8_nodes = 0;
};
Deployable deployable_model(const PlanResult& result, const Plan& plan, const PlanRequest& request,
                            const quant::SampleSource& data);

// The plan as `duet run` executes it bit-exactly: each planned node rewritten to
// its com.duet Emulated* form at its precision (passes::emulate_nodes). Running
// it over the held-out samples reproduces the plan's measured accuracy.
std::unique_ptr<ir::Model> emulated_model(const PlanResult& result, const Plan& plan);

}  // namespace duet::plan
