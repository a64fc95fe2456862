// Post-training quantization: which nodes get quantized, the QDQ rewrite
// (QuantizeLinear/DequantizeLinear pairs, the ONNX form that ONNX Runtime and
// TensorRT consume), and the quantization of weights and biases.
//
//   prepared = prepare_for_quantization(model, options)   // folds, opset >= 13
//   plan     = plan_quantization(*prepared, options)      // nodes, tensors to calibrate
//   ranges   = calibrate(...) (calibrate.h)               // tensor -> [lo, hi]
//   qmodel   = quantize_model(*prepared, plan, ranges, options)
//
// Scheme (QuantizeOptions::precision, the int8 preset by default, and the
// other defaults in QuantizeOptions):
//  - activations: UINT8 with a zero point over the calibrated range (asymmetric),
//    or INT8 with zero point 0 (symmetric), or FP8 E4M3FN with a per-tensor
//    scale amax/448; the activation inputs of every quantized node are
//    quantized, one Q/DQ pair per tensor shared by all quantized readers. An
//    output gets its own pair only with quantize_outputs: where it feeds a
//    quantized node that node's input pair already quantizes it, and where it
//    feeds float ops (HardSwish, Sigmoid, the graph output) a pair adds error
//    and saves nothing (an integer kernel can write float there);
//  - weights: INT8 symmetric in [-127, 127], per output channel (Conv axis 0,
//    ConvTranspose axis 1, MatMul the last axis, Gemm by transB) or per tensor;
//    INT4 weight-only for MatMul/Gemm in blocks of 32/64/128 along the reduced
//    axis (DequantizeLinear block_size, opset 21); FP8 E4M3FN per channel or
//    per tensor;
//  - Conv/ConvTranspose bias: INT32 with scale s_x·s_w[c] (kept float when it
//    would overflow);
//  - rounding half to even, as QuantizeLinear does.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "duet/ir/graph.h"
#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/ops/registry.h"
#include "duet/quant/observer.h"

namespace duet::quant {

// Throws one duet::Error line, pointing to `duet emulate`, unless a QDQ model
// can state `precision`: INT8 weights and activations (int8: weights per
// channel or per tensor, activations per tensor), INT8 weight-only (w8a16,
// per channel or per tensor), INT4 weight-only in blocks of 32, 64 or 128
// (w4a16), FP8 E4M3 weights and activations (fp8; weights per channel or per
// tensor), all dense. The accumulator, output format and input rounding are
// left to the device that runs the model: a QDQ model does not state them.
void check_quantizable(const numerics::Precision& precision);

struct QuantizeOptions {
  RangeOptions calibration;
  // What the quantized nodes compute, in the one precision vocabulary
  // (numerics/precision.h): the weights' format and scale granularity (and
  // INT4 block), whether activations are quantized (not for weight-only
  // precisions) and to what. check_quantizable() says which a QDQ model states.
  numerics::Precision precision = numerics::parse_precision("int8");
  // INT8 activations with zero point 0 instead of UINT8 with one: both are
  // 8-bit products (the int8 precision); the QDQ model's choice of grid.
  bool symmetric_activations = false;
  // 7-bit weights in [-63, 63]: on x86 without VNNI, u8 x s8 products go
  // through VPMADDUBSW, whose 16-bit pair sums saturate for |w| > 64; the cpu
  // backend runs such convs in float (exact) unless the weights fit 7 bits.
  bool reduce_range = false;
  // Activation scales computed at run time from each tensor (max |x| / 127,
  // symmetric INT8): no calibration ranges; what the emulator's int8
  // (x=int8/tensor) computes and what dynamic-quantization runtimes do.
  // Static-scale engines (TensorRT, fused QDQ kernels) need calibrated ranges.
  bool dynamic_activations = false;
  bool quantize_outputs = false;       // also a Q/DQ pair on every quantized node's output (ONNX Runtime's placement)
  std::set<std::string> op_types = ops::matrix_op_types();  // Conv, ConvTranspose, Gemm, MatMul
  std::set<std::string> exclude_op_types;
  std::set<std::string> exclude_nodes;    // node names
  std::map<std::string, Range> overrides; // tensor name -> range, replacing calibration
  // Bias correction (Nagel et al. 2019): mean input per channel of a Conv's
  // data tensor (name -> values); the Conv's bias absorbs -sum_c (W_q - W) mu_c,
  // the mean shift its INT8 weight rounding causes.
  std::map<std::string, std::vector<float>> input_means;
  // GPTQ rounding (gptq.h): a MatMul/Gemm data tensor -> X^T X over the
  // calibration data (input_gram); the 2-D INT8 or INT4 weights of the nodes
  // reading it are rounded by GPTQ against it instead of to nearest.
  std::map<std::string, std::vector<double>> gptq_grams;
};

// Standard-ONNX clean-up that quantization wants (constant folding, no-op
// removal, BatchNorm and per-channel affine folding into Conv weights: the
// folded weights are what gets quantized), every node named, the default
// opset raised to what the precision needs (13; FP8 19; INT4 21). Checks the
// precision first (check_quantizable).
std::unique_ptr<ir::Model> prepare_for_quantization(const ir::Model& model, const QuantizeOptions& options);

struct Plan {
  std::vector<std::string> nodes;        // names of the nodes to quantize, graph order
  std::vector<std::string> activations;  // float tensors whose range calibration must find
  std::vector<std::string> skipped;      // "node: why" for candidates left in float
};

Plan plan_quantization(const ir::Model& prepared, const QuantizeOptions& options);

// SmoothQuant-style migration of activation outliers into the weights: for a
// tensor x read only as the data input of planned Conv/MatMul nodes with
// constant weights, x' = x / s (per input channel, an explicit Mul) and
// W' = W * s along the weights' input-channel axis, so the product is
// unchanged and x' has balanced channels for per-tensor activation scales.
// s_c = amax_x[c]^alpha / amax_w[c]^(1 - alpha); depthwise convs (one input
// channel per group) use alpha = 1: their per-output-channel weight scales
// absorb s exactly. `channel_amax`: tensor -> max |x| per channel (channel
// axis 1 for Conv inputs, the last axis for MatMul), from channel_statistics().
// Returns the tensors smoothed; re-plan afterwards (readers now read x').
// awq: s_c = stat_x[c]^alpha normalized by their geometric mean, where
// channel_amax holds mean |x| per channel (ChannelStat::MeanAbs) (no weight
// term; alpha 0 leaves the model as it is) — the activation-aware scaling
// that `duet quantize --weights int4 --awq` searches over alpha.
int smooth_activations(ir::Model& prepared, const Plan& plan, const std::map<std::string, std::vector<float>>& channel_amax,
                       double alpha, bool awq = false);

// The tensors smooth_activations() can handle, with their channel axis.
std::map<std::string, int> smoothable_tensors(const ir::Model& prepared, const Plan& plan);

struct QuantizedModel {
  std::unique_ptr<ir::Model> model;
  // Activation tensor of the prepared model -> the name of its dequantized
  // copy in the quantized model (what quantized readers see).
  std::map<std::string, std::string> dequantized;
  std::map<std::string, std::string> precision;  // node name -> its numerics::Precision text ("int8", ...) or "fp32"
  // GPTQ-rounded nodes: the layer's relative output error on the calibration
  // inputs, ||(W_q - W) X|| / ||W X||, rounded to nearest and by GPTQ.
  struct Rounding {
    double nearest = 0, gptq = 0;
  };
  std::map<std::string, Rounding> rounding;
};

// The integer grid an activation range maps to (INT8 symmetric or UINT8
// asymmetric): QuantizeLinear(x) = clamp(round(x / scale) + zero_point, qmin, qmax).
struct ActivationGrid {
  float scale = 1, zero_point = 0, qmin = 0, qmax = 255;
};
ActivationGrid activation_grid(const Range& r, bool symmetric);

// The QDQ model. `only`: quantize just these planned nodes (empty: all of
// plan.nodes; used by sensitivity analysis); `keep_float`: planned nodes
// to leave in float (the accuracy budget's choice).
QuantizedModel quantize_model(const ir::Model& prepared, const Plan& plan, const std::map<std::string, Range>& ranges,
                              const QuantizeOptions& options, const std::set<std::string>& only = {},
                              const std::set<std::string>& keep_float = {});

using onnx_io::clone_model;

}  // namespace duet::quant
