#include "duet/quant/observer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "duet/core/error.h"

namespace duet::quant {

Method parse_method(const std::string& name) {
  if (name == "minmax") return Method::MinMax;
  if (name == "ema") return Method::Ema;
  if (name == "percentile") return Method::Percentile;
  if (name == "entropy" || name == "kl") return Method::Entropy;
  if (name == "mse") return Method::Mse;
  fail("unknown calibration method '", name, "' (minmax, ema, percentile, entropy, mse)");
}

std::string method_name(Method m) {
  switch (m) {
    case Method::MinMax: return "minmax";
    case Method::Ema: return "ema";
    case Method::Percentile: return "percentile";
    case Method::Entropy: return "entropy";
    case Method::Mse: return "mse";
  }
  return "?";
}

void Observer::observe(const Tensor& t, const std::string& what) {
  DUET_CHECK(t.dtype() == DType::Float32, what, ": calibration observes float32 tensors, got ", t.describe());
  observe(t.data<float>(), t.numel(), what);
}

void Observer::observe(const float* x, int64_t n, const std::string& what) {
  if (n == 0) return;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) fail(std::isnan(x[i]) ? "NaN" : "Inf", " in ", what, " (element ", i, ")");
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (count_ == 0) {
    min_ = lo, max_ = hi;
    ema_min_ = lo, ema_max_ = hi;
  } else {
    min_ = std::min(min_, lo), max_ = std::max(max_, hi);
  }
  if (batches_ > 0) {
    ema_min_ += 0.01 * (lo - ema_min_);
    ema_max_ += 0.01 * (hi - ema_max_);
  }
  ++batches_;
  count_ += n;
  const double magnitude = std::max(std::fabs(lo), std::fabs(hi));
  if (range_ == 0 && magnitude > 0) range_ = magnitude;
  widen_to(magnitude);
  const double per_bin = range_ > 0 ? kBins / range_ : 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::fabs(x[i]);
    const int b = std::min(kBins - 1, static_cast<int>(a * per_bin));
    (x[i] < 0 ? neg_ : pos_)[b] += 1;
  }
}

// Doubles the histogram range, merging bin pairs, until it holds `magnitude`.
void Observer::widen_to(double magnitude) {
  while (magnitude > range_) {
    for (auto* h : {&pos_, &neg_}) {
      for (int i = 0; i < kBins / 2; ++i) (*h)[i] = (*h)[2 * i] + (*h)[2 * i + 1];
      std::fill(h->begin() + kBins / 2, h->end(), 0.0);
    }
    range_ *= 2;
  }
}

std::vector<double> Observer::magnitude_histogram() const {
  std::vector<double> h(kBins);
  for (int i = 0; i < kBins; ++i) h[i] = pos_[i] + neg_[i];
  return h;
}

namespace {

constexpr int kSearchBins = 2048;

// The histogram cut after its last non-empty bin and merged to at most
// kSearchBins bins; `width` receives the new bin width.
std::vector<double> coarsen(const std::vector<double>& hist, double bin_width, double& width) {
  int used = static_cast<int>(hist.size());
  while (used > 0 && hist[used - 1] == 0) --used;
  const int group = std::max(1, (used + kSearchBins - 1) / kSearchBins);
  std::vector<double> out((used + group - 1) / group);
  for (int i = 0; i < used; ++i) out[i / group] += hist[i];
  width = bin_width * group;
  return out;
}

// Gives empty bins a small mass taken evenly from the others (on counts, as
// TensorRT and ONNX Runtime do). False when there is nothing to smooth from.
bool smooth(std::vector<double>& p) {
  constexpr double eps = 1e-4;
  size_t zeros = 0;
  for (double v : p) zeros += v == 0;
  const size_t nonzeros = p.size() - zeros;
  if (nonzeros == 0) return false;
  const double eps1 = eps * static_cast<double>(zeros) / static_cast<double>(nonzeros);
  for (double& v : p) v = v == 0 ? eps : v - eps1;
  for (double v : p) if (v <= 0) return false;
  return true;
}

double kl_divergence(const std::vector<double>& p, const std::vector<double>& q) {
  double sp = 0, sq = 0;
  for (size_t i = 0; i < p.size(); ++i) sp += p[i], sq += q[i];
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double a = p[i] / sp, b = q[i] / sq;
    kl += a * std::log(a / b);
  }
  return kl;
}

}  // namespace

float Observer::entropy_threshold(const std::vector<double>& full, int levels) const {
  double w = 0;
  const std::vector<double> h = coarsen(full, range_ / kBins, w);
  const int nb = static_cast<int>(h.size());
  if (nb <= levels) return static_cast<float>(nb * w);
  std::vector<double> tail(nb + 1, 0.0);  // tail[i] = sum h[i:]
  for (int i = nb - 1; i >= 0; --i) tail[i] = tail[i + 1] + h[i];
  double best = std::numeric_limits<double>::infinity();
  int best_i = nb;
  std::vector<double> p, q;
  for (int i = levels; i <= nb; ++i) {
    p.assign(h.begin(), h.begin() + i);
    p[i - 1] += tail[i];  // outliers folded into the last kept bin
    // Q: the first i bins merged into `levels` bins, each spread evenly over
    // the bins of its group that held data.
    q.assign(i, 0.0);
    const int merged = i / levels;
    for (int j = 0; j < levels; ++j) {
      const int start = j * merged, stop = j == levels - 1 ? i : start + merged;
      double sum = 0;
      int nonzero = 0;
      for (int k = start; k < stop; ++k) sum += h[k], nonzero += h[k] != 0;
      if (nonzero == 0) continue;
      for (int k = start; k < stop; ++k) if (h[k] != 0) q[k] = sum / nonzero;
    }
    if (!smooth(p) || !smooth(q)) continue;
    const double kl = kl_divergence(p, q);
    if (kl < best) best = kl, best_i = i;
  }
  return static_cast<float>(best_i * w);
}

float Observer::mse_threshold(const std::vector<double>& full, int levels) const {
  double w = 0;
  const std::vector<double> h = coarsen(full, range_ / kBins, w);
  const int nb = static_cast<int>(h.size());
  double best = std::numeric_limits<double>::infinity();
  int best_k = nb;
  for (int k = 1; k <= nb; ++k) {
    const double t = k * w, step = t / (levels - 1);
    double err = 0;
    for (int b = 0; b < nb; ++b) {
      const double c = (b + 0.5) * w;
      err += h[b] * (c < t ? step * step / 12 : (c - t) * (c - t));
    }
    if (err < best) best = err, best_k = k;
  }
  return static_cast<float>(best_k * w);
}

float Observer::percentile_threshold(const std::vector<double>& h, double keep_outside) const {
  const double w = range_ / kBins;
  double outside = 0;
  for (int b = kBins - 1; b >= 0; --b) {
    if (outside + h[b] > keep_outside) return static_cast<float>((b + 1) * w);
    outside += h[b];
  }
  return 0.0f;
}

Range Observer::range(const RangeOptions& o) const {
  if (known_) return *known_;
  if (count_ == 0) return {};
  const float lo = std::min(min_, 0.0f), hi = std::max(max_, 0.0f);
  if (range_ == 0) return {0, 0};
  // Few values per sample (a pooled or squeeze-excitation vector, per-channel
  // gates): each value is its own feature, not a draw from one distribution,
  // and clipping one clips that channel outright. Histogram methods keep the
  // full range there.
  const bool histogram_method = o.method == Method::Percentile || o.method == Method::Entropy || o.method == Method::Mse;
  if (histogram_method && count_ < o.min_values_per_sample * batches_) return {lo, hi};
  switch (o.method) {
    case Method::MinMax: return {lo, hi};
    case Method::Ema: return {std::min(static_cast<float>(ema_min_), 0.0f), std::max(static_cast<float>(ema_max_), 0.0f)};
    case Method::Percentile: {
      const double outside = (100.0 - o.percentile) / 100.0 * static_cast<double>(count_);
      return {std::max(lo, -percentile_threshold(neg_, outside)), std::min(hi, percentile_threshold(pos_, outside))};
    }
    case Method::Entropy:
    case Method::Mse: {
      auto search = [&](const std::vector<double>& h, int levels) {
        return o.method == Method::Entropy ? entropy_threshold(h, levels) : mse_threshold(h, levels);
      };
      if (min_ >= 0) return {0, std::min(hi, search(pos_, o.levels_unsigned))};
      if (max_ <= 0) return {std::max(lo, -search(neg_, o.levels_unsigned)), 0};
      if (o.levels_unsigned > o.levels_signed) {
        // Asymmetric grid: each side searched on its own histogram with the
        // share of the levels its min-max extent would get.
        const int lp = std::clamp(static_cast<int>(std::lround(o.levels_unsigned * hi / (hi - lo))), 2, o.levels_unsigned - 2);
        return {std::max(lo, -search(neg_, o.levels_unsigned - lp)), std::min(hi, search(pos_, lp))};
      }
      const float t = search(magnitude_histogram(), o.levels_signed);
      return {std::max(lo, -t), std::min(hi, t)};
    }
  }
  return {lo, hi};
}

}  // namespace duet::quant
