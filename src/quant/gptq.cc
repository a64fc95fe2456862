#include "duet/quant/gptq.h"

#include <algorithm>
#include <cmath>

#include "duet/core/error.h"

namespace duet::quant {

namespace {

// Lower Cholesky factor of a symmetric positive-definite n x n matrix (in place); false if not positive definite.
bool cholesky(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
    for (int64_t k = j + 1; k < n; ++k) a[j * n + k] = 0;
  }
  return true;
}

// Upper factor U with H^-1 = U^T U: GPTQ's row i of U gives how the error of input i spreads over inputs > i.
std::vector<double> inverse_upper_factor(std::vector<double> h, int64_t n) {
  DUET_CHECK(cholesky(h, n), "GPTQ: the inputs' Hessian is not positive definite");
  // L^-1 by forward substitution, then H^-1 = L^-T L^-1.
  std::vector<double> li(n * n, 0.0);
  for (int64_t c = 0; c < n; ++c) {
    li[c * n + c] = 1.0 / h[c * n + c];
    for (int64_t i = c + 1; i < n; ++i) {
      double s = 0;
      for (int64_t k = c; k < i; ++k) s += h[i * n + k] * li[k * n + c];
      li[i * n + c] = -s / h[i * n + i];
    }
  }
  std::vector<double> inv(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t k = i; k < n; ++k) s += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = inv[j * n + i] = s;
    }
  DUET_CHECK(cholesky(inv, n), "GPTQ: the inverse Hessian is not positive definite");
  std::vector<double> u(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) u[j * n + i] = inv[i * n + j];
  return u;
}

// (dW H dW^T) summed over rows: the squared output error of a weight change on the calibration inputs.
double output_energy(const std::vector<double>& dw, int64_t rows, int64_t k, const std::vector<double>& h) {
  double total = 0;
  std::vector<double> t(k);
  for (int64_t r = 0; r < rows; ++r) {
    const double* d = dw.data() + r * k;
    for (int64_t i = 0; i < k; ++i) {
      double s = 0;
      for (int64_t j = 0; j < k; ++j) s += h[i * k + j] * d[j];
      t[i] = s;
    }
    for (int64_t i = 0; i < k; ++i) total += d[i] * t[i];
  }
  return total;
}

}  // namespace

GptqResult gptq_round(const float* w, int64_t rows, int64_t k, const std::vector<double>& gram, const GptqOptions& o) {
  DUET_CHECK(rows > 0 && k > 0 && static_cast<int64_t>(gram.size()) == k * k, "GPTQ: the Hessian is ", gram.size(),
             " values for ", k, " inputs");
  DUET_CHECK(o.block == 0 || !o.per_tensor, "GPTQ: blocked scales are per row");
  // Damped Hessian; an input that never moved (zero diagonal) gets a unit diagonal and its weights do not matter.
  std::vector<double> h = gram;
  double mean_diag = 0;
  for (int64_t i = 0; i < k; ++i) mean_diag += h[i * k + i] / static_cast<double>(k);
  if (!(mean_diag > 0)) mean_diag = 1;
  for (int64_t i = 0; i < k; ++i) {
    if (h[i * k + i] <= 0) h[i * k + i] = 1;
    h[i * k + i] += o.damp * mean_diag;
  }
  const std::vector<double> u = inverse_upper_factor(h, k);

  const int64_t blocks = o.block ? (k + o.block - 1) / o.block : 1;
  const int64_t scales_per_row = o.block ? blocks : 1;
  GptqResult r;
  r.q.assign(rows * k, 0);
  r.scales.assign(o.per_tensor ? 1 : rows * scales_per_row, 1.0f);
  const float qabs = std::max(std::fabs(o.qmin), o.qmax);
  const float block_den = o.qmax;  // blocked scales map the largest |w| to qmax, as round-to-nearest does
  if (!o.block) {
    float all = 0;
    for (int64_t r0 = 0; r0 < rows; ++r0) {
      float amax = 0;
      for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(w[r0 * k + i]));
      all = std::max(all, amax);
      if (!o.per_tensor) r.scales[r0] = amax > 0 ? amax / qabs : 1.0f;
    }
    if (o.per_tensor) r.scales[0] = all > 0 ? all / qabs : 1.0f;
  }
  auto quantize = [&](double x, float s) {
    return static_cast<int8_t>(std::clamp(std::nearbyint(static_cast<float>(x) / s), o.qmin, o.qmax));
  };
  // Round-to-nearest with the same scale rule, for the comparison (blocked scales from the original weights).
  std::vector<double> dw_nearest(rows * k);
  for (int64_t r0 = 0; r0 < rows; ++r0)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t i0 = b * (o.block ? o.block : k), i1 = std::min(k, i0 + (o.block ? o.block : k));
      float s = r.scales[o.per_tensor ? 0 : r0 * scales_per_row + (o.block ? b : 0)];
      if (o.block) {
        float amax = 0;
        for (int64_t i = i0; i < i1; ++i) amax = std::max(amax, std::fabs(w[r0 * k + i]));
        s = amax > 0 ? amax / block_den : 1.0f;
      }
      for (int64_t i = i0; i < i1; ++i) dw_nearest[r0 * k + i] = quantize(w[r0 * k + i], s) * static_cast<double>(s) - w[r0 * k + i];
    }

  std::vector<double> work(w, w + rows * k);
  std::vector<double> dw(rows * k);
  for (int64_t r0 = 0; r0 < rows; ++r0) {
    double* row = work.data() + r0 * k;
    float s = r.scales[o.per_tensor ? 0 : r0 * scales_per_row];
    for (int64_t i = 0; i < k; ++i) {
      if (o.block && i % o.block == 0) {  // the block's scale from the weights as updated so far
        float amax = 0;
        for (int64_t j = i; j < std::min(k, i + o.block); ++j) amax = std::max(amax, static_cast<float>(std::fabs(row[j])));
        s = amax > 0 ? amax / block_den : 1.0f;
        r.scales[r0 * scales_per_row + i / o.block] = s;
      }
      const int8_t q = quantize(row[i], s);
      r.q[r0 * k + i] = q;
      const double err = (row[i] - q * static_cast<double>(s)) / u[i * k + i];
      for (int64_t j = i + 1; j < k; ++j) row[j] -= err * u[i * k + j];
      dw[r0 * k + i] = q * static_cast<double>(s) - w[r0 * k + i];
    }
  }
  std::vector<double> w64(w, w + rows * k);
  const double signal = output_energy(w64, rows, k, gram);
  r.relative_error = signal > 0 ? std::sqrt(output_energy(dw, rows, k, gram) / signal) : 0;
  r.nearest_relative_error = signal > 0 ? std::sqrt(output_energy(dw_nearest, rows, k, gram) / signal) : 0;
  return r;
}

}  // namespace duet::quant
