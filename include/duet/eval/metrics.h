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
//              ppocr_keys_v1.txt is read); spaces=ignore drops spaces from
//              both texts first.
//   boxes      a text detector's probability map ([1, 1, H, W]) after the
//              standard DB post-processing — threshold the map, 8-connected
//              components, each one's axis-aligned box kept when its mean
//              probability reaches box_threshold, expanded by the unclip
//              offset area x ratio / perimeter — matched one to one at IoU >=
//              iou against the reference boxes (one "x y w h [text]" line per
//              box): F1 of the matches, summed over samples (precision and
//              recall from the same counts).
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

enum class MetricKind { Agreement, Top1, Cer, Boxes };

struct TaskMetric {
  MetricKind kind = MetricKind::Agreement;
  std::vector<std::string> labels;  // top1: class names in output order; cer: the CTC keys (index 1..)
  std::string keys_path;            // cer: where the keys came from
  bool ignore_spaces = false;       // cer,spaces=ignore: spaces removed from both texts before the edit distance
  // boxes: DB post-processing (PaddleOCR's defaults) and the match threshold.
  double threshold = 0.3, box_threshold = 0.6, unclip_ratio = 1.5, iou = 0.5;

  std::string name() const;          // "top1", "cer", "agreement"
  bool needs_references() const { return kind != MetricKind::Agreement; }
  // What `value` means, for reports: "top-1 accuracy", "character error rate", "agreement with FP32".
  std::string description() const;
  bool lower_is_better() const { return kind == MetricKind::Cer; }
};

// "agreement" | "top1[,labels=A,B,...]" | "cer,keys=FILE[,spaces=ignore]" |
// "boxes[,threshold=T,box_threshold=B,unclip=R,iou=I]". One clear error otherwise.
// spaces=ignore: for recognizers that drop or add the spaces between words
// (PP-OCR's Chinese recognizer on Latin text), whose CER would count them.
TaskMetric parse_metric(const std::string& text);

// The reference text of a sample (see above); throws naming the file when absent.
std::string reference_text(const std::string& sample_path);

// CTC greedy decode of one [1, T, C] (or [T, C]) probability/logit tensor.
std::string ctc_greedy_decode(const Tensor& scores, const std::vector<std::string>& keys);

// Text boxes, axis-aligned, in pixels of the probability map.
struct Box {
  double x = 0, y = 0, w = 0, h = 0;
};
double iou(const Box& a, const Box& b);
// DB post-processing of one probability map ([1, 1, H, W], [1, H, W] or [H, W]).
std::vector<Box> detect_boxes(const Tensor& probability, const TaskMetric& metric);
// Reference boxes: one "x y w h [text]" line per box (what the renderer writes for pages).
std::vector<Box> parse_boxes(const std::string& text);
// Greedy one-to-one matching by IoU (largest first) at >= threshold: the number matched.
int64_t match_boxes(const std::vector<Box>& predicted, const std::vector<Box>& reference, double threshold);

// The classes a CTC greedy decode emits from scores [T, C] (row-major):
// each step's argmax, repeats merged, blanks (0) dropped.
std::vector<int64_t> ctc_greedy_path(const float* scores, int64_t steps, int64_t classes);

// The characters (UTF-8 sequences) of a string, in order.
std::vector<std::string> utf8_characters(const std::string& s);

// Levenshtein distance between the UTF-8 code point sequences of a and b, or
// between two sequences of labels.
int64_t edit_distance(const std::string& a, const std::string& b);
int64_t edit_distance(const std::vector<int64_t>& a, const std::vector<int64_t>& b);
int64_t code_points(const std::string& s);

// Accumulates a metric over samples; one Accumulator per model evaluated.
class Accumulator {
 public:
  explicit Accumulator(const TaskMetric& metric) : metric_(metric) {}
  // outputs: the model's outputs for one sample; reference: the FP32 outputs
  // (agreement) — may be empty for the others; text: the sample's reference (top1, cer).
  void add(const std::vector<Tensor>& outputs, const std::vector<Tensor>& reference, const std::string& text);
  size_t samples() const { return samples_; }
  double value() const;  // top1: accuracy; cer: CER; boxes: F1; agreement: the agreement
  double score() const;  // higher is better: value, or 1 - CER
  // boxes: the counts behind F1 (matched, predicted, reference boxes).
  int64_t matched() const { return matched_; }
  int64_t predicted() const { return predicted_; }
  int64_t references() const { return references_; }

 private:
  TaskMetric metric_;
  size_t samples_ = 0;
  double num_ = 0, den_ = 0;
  int64_t matched_ = 0, predicted_ = 0, references_ = 0;
};

}  // namespace duet::eval
