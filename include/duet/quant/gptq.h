// GPTQ rounding of a matrix op's weights (Frantar et al. 2022, "GPTQ: accurate
// post-training quantization for generative pre-trained transformers"): the
// weights of one output channel are rounded one input at a time, in order, and
// each rounding error is spread over the inputs not yet rounded in proportion
// to the inverse Hessian H = X^T X of the layer's inputs on the calibration
// data — second-order error compensation instead of round-to-nearest. The
// layer's own output error on the calibration inputs, ||(W_q - W) X||, is
// what it lowers; the figures compare it with round-to-nearest per layer.
//
//   auto grams = quant::input_gram(prepared, {{"x", 120}}, calib);   // calibrate.h
//   quant::GptqOptions g{.qmin = -8, .qmax = 7, .block = 32};
//   quant::GptqResult r = quant::gptq_round(w_rows, N, K, grams.at("x").gram, g);
//
// Layout: `w` holds N rows (output channels) of K inputs each (the reduced
// axis), row-major; the caller transposes MatMul's [K, N] weights.
#pragma once
#include <cstdint>
#include <vector>

namespace duet::quant {

struct GptqOptions {
  float qmin = -127, qmax = 127;  // the integer grid (INT8 [-127, 127], INT4 [-8, 7])
  // 0: one scale per row, from the row's max |w| before any update (per channel);
  // B: one scale per row and block of B inputs, from the updated weights as the
  // block starts (INT4 blocks), as GPTQ's grouped variant does.
  int block = 0;
  bool per_tensor = false;  // one scale for the whole matrix (block 0 only)
  double damp = 0.01;       // added to H's diagonal, times its mean: keeps H invertible
};

struct GptqResult {
  std::vector<int8_t> q;       // N x K codes
  std::vector<float> scales;   // N (per row), 1 (per tensor) or N x ceil(K / block), row-major
  // Output error on the calibration inputs relative to the output itself,
  // ||(W_q - W) X|| / ||W X|| from H: GPTQ's, and round-to-nearest's with the same scales rule.
  double relative_error = 0, nearest_relative_error = 0;
};

// `gram`: K x K, row-major, sum over calibration rows of x x^T (input_gram).
GptqResult gptq_round(const float* w, int64_t rows, int64_t k, const std::vector<double>& gram, const GptqOptions& options);

}  // namespace duet::quant
