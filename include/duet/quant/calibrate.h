// Calibration and accuracy measurement for post-training quantization.
//
// calibrate() runs the prepared FP32 model over the calibration samples with
// the tensors to observe exposed as extra outputs, one sample at a time, and
// streams each into its Observer: memory does not grow with the sample count.
// Evaluator keeps the FP32 outputs of a (small) evaluation set and measures
// candidate models against them; sensitivity() quantizes one node at a time;
// choose_float_nodes() walks that ranking once to meet an accuracy budget.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "duet/core/tensor.h"
#include "duet/eval/metrics.h"
#include "duet/ir/graph.h"
#include "duet/quant/observer.h"
#include "duet/quant/quantize.h"

namespace duet::quant {

// Samples loaded lazily by index (input name -> tensor).
struct SampleSource {
  size_t count = 0;
  std::function<std::map<std::string, Tensor>(size_t)> load;
  std::function<std::string(size_t)> name;  // for messages
};

// Samples from a folder (test_data_set_*/input_*.pb folders, .npy/.pb files,
// or images with an io::Preprocess spec), loaded lazily by index.
SampleSource sample_folder(const std::string& dir, const ir::Graph& graph, const std::string& preprocess = "");

struct RunOptions {
  int threads = 1;
  std::string backend = "cpu";  // "cpu" (oneDNN, Q/DQ on reference kernels) or "reference"
  std::function<void(size_t done, size_t total)> progress;
};

std::map<std::string, Observer> calibrate(const ir::Model& prepared, const std::vector<std::string>& tensors,
                                          const SampleSource& data, const RunOptions& run = {});

// One statistic per channel (tensor -> channel axis) over the samples, in one
// streaming pass with memory = channels: Max |x| (smooth_activations), MeanAbs
// (AWQ's activation statistic) or the signed Mean (bias correction).
enum class ChannelStat { Max, MeanAbs, Mean };
std::map<std::string, std::vector<float>> channel_statistics(const ir::Model& prepared, const std::map<std::string, int>& tensors,
                                                             const SampleSource& data, const RunOptions& run = {},
                                                             ChannelStat stat = ChannelStat::Max);

// Ranges per tensor by the options' method, with the level counts the
// activation format implies.
// X^T X of each tensor's rows (the last axis, of length K, is one input
// vector; every other index is a row), summed over the samples: K x K,
// row-major — the Hessian GPTQ rounds a reader's weights against (gptq.h).
// Memory: K^2 doubles per tensor, flat in the sample count.
std::map<std::string, std::vector<double>> input_gram(const ir::Model& prepared, const std::map<std::string, int64_t>& tensors,
                                                      const SampleSource& data, const RunOptions& run = {});

std::map<std::string, Range> choose_ranges(const std::map<std::string, Observer>& observers, const QuantizeOptions& options);

class Evaluator;

// Per activation tensor, the range among the methods' candidates (min-max,
// percentile, entropy, MSE) that gives the smallest measured output error when
// only the nodes reading that tensor are quantized: `duet quantize --method
// auto`. `chosen` receives tensor -> method name.
std::map<std::string, Range> choose_ranges_by_error(const ir::Model& prepared, const Plan& plan,
                                                    const std::map<std::string, Observer>& observers,
                                                    const QuantizeOptions& options, const Evaluator& eval,
                                                    std::map<std::string, std::string>* chosen,
                                                    const std::function<void(size_t, size_t)>& progress = {});

// How far a candidate's outputs are from FP32's, per graph output, over the
// evaluation samples.
struct OutputComparison {
  std::string name;
  double rel_l2 = 0;         // mean over samples of ||y_q - y|| / ||y||
  double sqnr_db = 0;        // 10 log10(sum y^2 / sum (y_q - y)^2) over all samples
  double max_abs = 0;        // largest |y_q - y|
  double argmax_agree = 1;   // fraction of rows (last axis) whose argmax is unchanged
  int64_t rows = 0;
};

// What accuracy budgets bound. L2: mean relative L2 error over outputs.
// Argmax: share of rows (last axis, outputs with more than one column) whose
// argmax changed, plus 1e-3 x the L2 figure to order nodes that change none
// (classifiers, CTC recognizers: the decision is the argmax). Task: the drop
// of the evaluator's task metric (eval/metrics.h: top-1 against labels, CER
// against reference text) in points against FP32, plus 1e-3 x the L2 figure.
enum class Metric { L2, Argmax, Task };

struct Comparison {
  std::vector<OutputComparison> outputs;
  double error = 0;  // by the evaluator's metric: the number accuracy budgets bound
  double rel_l2 = 0, argmax_changed = 0;
  // The evaluator's task metric on these outputs: its value (accuracy, CER or
  // agreement), and the drop of its score against FP32 in points (x100).
  double task_value = 0, task_drop_points = 0;
};

class Evaluator {
 public:
  // `task`: what the comparisons also measure (agreement with FP32 unless a
  // metric that reads each sample's reference, whose absence is one error).
  Evaluator(const ir::Model& fp32, const SampleSource& data, size_t max_samples, RunOptions run, Metric metric = Metric::L2,
            eval::TaskMetric task = {});
  size_t samples() const { return feeds_.size(); }
  const eval::TaskMetric& task() const { return task_; }
  double fp32_task_value() const { return fp32_value_; }  // the task metric of FP32 itself
  Comparison compare(const ir::Model& candidate) const;

  // SQNR (dB) per activation tensor of the plan: "isolated" = the tensor's own
  // quantization noise (x vs Q/DQ(x) with its range), "accumulated" = the
  // quantized model's dequantized tensor vs FP32 (noise of everything upstream).
  struct TensorSqnr {
    std::string tensor;
    double isolated_db = 0, accumulated_db = 0;
  };
  std::vector<TensorSqnr> tensor_sqnr(const ir::Model& prepared, const QuantizedModel& quantized,
                                      const std::map<std::string, Range>& ranges, const QuantizeOptions& options) const;

 private:
  std::map<std::string, Tensor> run_exposing(const ir::Model& model, const std::vector<std::string>& names,
                                             const std::map<std::string, Tensor>& feeds) const;
  RunOptions run_;
  Metric metric_;
  eval::TaskMetric task_;
  double fp32_value_ = 0, fp32_score_ = 0;
  std::vector<std::string> texts_;  // each sample's reference (task metrics that read one)
  std::vector<std::map<std::string, Tensor>> feeds_;
  std::vector<std::vector<Tensor>> reference_;  // FP32 outputs per sample
  std::vector<std::string> output_names_;
};

// Output error when only that node is quantized, per planned node, most
// sensitive first.
std::vector<std::pair<std::string, double>> sensitivity(const ir::Model& prepared, const Plan& plan,
                                                        const std::map<std::string, Range>& ranges,
                                                        const QuantizeOptions& options, const Evaluator& eval,
                                                        const std::function<void(size_t, size_t)>& progress = {});

// The fewest most-sensitive nodes to keep in float so that the quantized
// model's error is <= budget: one walk along the ranking (exponential then
// binary search over the prefix length). `error_out` receives the chosen
// model's error; `trace` the (kept-float count, error) pairs measured.
std::set<std::string> choose_float_nodes(const ir::Model& prepared, const Plan& plan, const std::map<std::string, Range>& ranges,
                                         const QuantizeOptions& options, const Evaluator& eval,
                                         const std::vector<std::pair<std::string, double>>& ranking, double budget,
                                         double* error_out, std::vector<std::pair<size_t, double>>* trace);

}  // namespace duet::quant
