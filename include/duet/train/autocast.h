// Autocast: the mixed-precision policy as a graph pass (PyTorch's autocast
// lists as the model). Matrix ops (Conv, ConvTranspose, MatMul, Gemm) read
// their float inputs (activations, weights, bias) rounded to the low-precision
// format and write their output rounded to it, through com.duet RoundToFormat
// nodes; everything else (softmax, norms, losses, exp/log/pow, reductions)
// stays float32. Arithmetic stays float32 with float32 accumulation, which is
// exact for the products of BF16/FP16/TF32/FP8 values, so the graph computes
// what a device that multiplies in the format and accumulates in FP32 computes
// (up to summation order). The gradient of a rounding is the same rounding,
// so the backward matrix ops see low-precision gradients too.
#pragma once
#include <set>
#include <string>

#include "duet/ir/graph.h"
#include "duet/ops/registry.h"

namespace duet::train {

struct AutocastOptions {
  std::string format = "bf16";  // numerics format spec: bf16, fp16, tf32, e4m3fn, ...
  std::set<std::string> ops = ::duet::ops::matrix_op_types();  // Conv, ConvTranspose, Gemm, MatMul
  bool round_outputs = true;     // outputs in the format too (PyTorch: autocast ops return it)
  // FP8 with per-tensor delayed scaling (Transformer Engine): inputs go
  // through ScaledRoundToFormat with a scale graph input "fp8_scale:<tensor>"
  // and an amax graph output "fp8_amax:<tensor>"; their gradients are cast to
  // grad_format (e5m2) with scales "fp8_scale:<tensor>.grad" likewise.
  bool scaled = false;
  std::string grad_format = "e5m2";
};

constexpr const char* kFp8ScalePrefix = "fp8_scale:";
constexpr const char* kFp8AmaxPrefix = "fp8_amax:";

struct AutocastReport {
  int nodes = 0;     // matrix ops put in the low precision
  int roundings = 0; // RoundToFormat nodes inserted
};

AutocastReport autocast(ir::Model& model, const AutocastOptions& options);

}  // namespace duet::train
