// Streaming calibration statistics of one tensor and the clipping ranges that
// calibration methods choose from them. Memory is fixed (two histograms of
// kBins bins), whatever the number of batches observed.
//
// Methods (how [lo, hi] is chosen):
//   minmax      the observed minimum and maximum
//   ema         moving-average min/max: per batch, m <- m + c·(batch_m - m) (c = 0.01)
//   percentile  each tail clipped so that at most (100 - p)% of all values lie outside
//   entropy     TensorRT's KL-divergence search: 2048-bin histogram of |x| (of x when
//               nothing is negative), thresholds from bin `levels` to 2048, outliers
//               folded into the last kept bin, candidate quantized to `levels` bins
//               and expanded over the non-zero bins, zero bins smoothed, minimum KL(P||Q).
//               Signed tensors: on |x| with `levels_signed` levels for a symmetric grid;
//               for an asymmetric (UINT8) grid each side on its own histogram with the
//               share of the 256 levels that its min-max extent gets
//   mse         the clipping threshold minimizing the expected squared error
//               (clipping error of the clipped mass + step²/12 for the rest)
// Ranges always contain 0 so that zero is exactly representable. Tensors with
// few values per sample keep min-max under every histogram method (see
// RangeOptions::min_values_per_sample).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "duet/core/tensor.h"

namespace duet::quant {

enum class Method { MinMax, Ema, Percentile, Entropy, Mse };

Method parse_method(const std::string& name);  // throws naming the valid ones
std::string method_name(Method m);

struct Range {
  float lo = 0, hi = 0;
};

struct RangeOptions {
  // Percentile (99.999%) by default: chosen by measurement (docs/quantization.md)
  // over the PaddleOCR recognizer, classifier and detector on held-out rendered
  // data and the zoo's image models — KL entropy clipped PP-OCRv4 rec to 93% CER.
  Method method = Method::Percentile;
  // Quantization steps on the covered side: 128 for symmetric INT8 (and for
  // each side of a signed tensor), 256 for a non-negative tensor in UINT8.
  int levels_signed = 128;
  int levels_unsigned = 256;
  double percentile = 99.999;
  // Tensors with fewer values per observed batch than this (pooled features,
  // squeeze-excitation gates, small vectors) keep their min-max range under
  // the histogram methods: their values are separate features, not samples
  // of one distribution (measured: PP-OCRv4 rec decodes nothing when its SE
  // gates are KL-clipped).
  int64_t min_values_per_sample = 4096;
};

class Observer {
 public:
  static constexpr int kBins = 8192;  // internal resolution; the KL search re-bins to 2048

  // Float32 data only; NaN or Inf throws duet::Error naming `what`.
  void observe(const Tensor& t, const std::string& what = "tensor");
  void observe(const float* data, int64_t n, const std::string& what = "tensor");

  int64_t count() const { return count_; }
  float min() const { return min_; }
  float max() const { return max_; }
  Range range(const RangeOptions& options) const;
  // The producing op bounds its output (Softmax: [0, 1]): range() returns
  // these bounds under every method. Attention probabilities near 1 are few
  // and decisive; a histogram method clips them (measured on PP-OCRv4 rec:
  // entropy cut an attention softmax to [0, 0.32], 10.9 dB on its own).
  // ONNX Runtime's quantizer fixes Softmax outputs the same way.
  void set_known_range(Range r) { known_ = r; }

  // Histogram of |x| over [0, histogram_range()] (positive and negative parts
  // summed), for reports.
  std::vector<double> magnitude_histogram() const;
  double histogram_range() const { return range_; }

 private:
  void widen_to(double magnitude);
  float entropy_threshold(const std::vector<double>& hist, int levels) const;
  float mse_threshold(const std::vector<double>& hist, int levels) const;
  float percentile_threshold(const std::vector<double>& hist, double keep_outside) const;

  int64_t count_ = 0;
  int64_t batches_ = 0;
  float min_ = 0, max_ = 0;
  double ema_min_ = 0, ema_max_ = 0;
  double range_ = 0;  // histograms cover [0, range_)
  std::optional<Range> known_;
  std::vector<double> pos_ = std::vector<double>(kBins), neg_ = std::vector<double>(kBins);
};

}  // namespace duet::quant
