// Task metrics: how good a model's outputs are at its job, not only how close
// they are to FP32's. One definition for every workflow that measures accuracy
// (the planner, quantization, emulation):
//
//   top1       class index (argmax of the first output's last axis) against the
//              sample's label; labels name the classes in output order
//              (labels=0,180 for PaddleOCR's direction classifier).
//   cer        character error rate of a CTC recognizer's greedy decode against
//              the sample's reference text: edit distance / reference length,
//              summed over samples (keys=FILE: one character per line, index 0
//              is the CTC blank and the last index a space, as PaddleOCR's
//              ppocr_keys_v1.txt is read).
//   agreement  with FP32: for outputs with several classes on the last axis the
//              share of rows whose argmax is FP32's; otherwise 1 - mean relative L2.
//
// A sample's reference is the text file beside it: in a test_data_set folder
// text.txt (or label.txt); beside a tensor or image file, the same name with
// .txt — what ../shared/tools/render_ocr_inputs.py writes.
//
// Every score is "higher is better" in [0, 1] (cer reports 1 - CER as its score
// and CER itself as `value`); drops between two models are in points (x100).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "duet/core/tensor.h"

namespace duet::eval {

enum class MetricKind { Agreement, Top1, Cer };

struct TaskMetric {
  MetricKind kind = MetricKind::Agreement;
  std::vector<std::string> labels;  // top1: class names in output order; cer: the CTC keys (index 1..)
  std::string keys_path;            // cer: where the keys came from

  std::string name() const;          // "top1", "cer", "agreement"
  bool needs_references() const { return kind != MetricKind::Agreement; }
  // What `value` means, for reports: "top-1 accuracy", "character error rate", "agreement with FP32".
  std::string description() const;
  bool lower_is_better() const { return kind == MetricKind::Cer; }
};

// "agreement" | "top1[,labels=A,B,...]" | "cer,keys=FILE". One clear error otherwise.
TaskMetric parse_metric(const std::string& text);

// The reference text of a sample (see above); throws naming the file when absent.
std::string reference_text(const std::string& sample_path);

// CTC greedy decode of one [1, T, C] (or [T, C]) probability/logit tensor.
std::string ctc_greedy_decode(const Tensor& scores, const std::vector<std::string>& keys);

// Levenshtein distance between the UTF-8 code point sequences of a and b.
int64_t edit_distance(const std::string& a, const std::string& b);
int64_t code_points(const std::string& s);

// Accumulates a metric over samples; one Accumulator per model evaluated.
class Accumulator {
 public:
  explicit Accumulator(const TaskMetric& metric) : metric_(metric) {}
  // outputs: the model's outputs for one sample; reference: the FP32 outputs
  // (agreement) — may be empty for the others; text: the sample's reference (top1, cer).
  void add(const std::vector<Tensor>& outputs, const std::vector<Tensor>& reference, const std::string& text);
  size_t samples() const { return samples_; }
  double value() const;  // top1: accuracy; cer: CER; agreement: the agreement
  double score() const;  // higher is better: value, or 1 - CER

 private:
  TaskMetric metric_;
  size_t samples_ = 0;
  double num_ = 0, den_ = 0;
};

}  // namespace duet::eval
