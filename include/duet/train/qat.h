// Quantization-aware training: com.duet FakeQuantize nodes on the weights (per
// output channel by default, symmetric) and optionally the input activations
// (per tensor, asymmetric UINT8 from moving-average min/max, PyTorch's default
// QAT observer) of Conv, ConvTranspose, Gemm and MatMul; their gradients are
// straight-through (train::add_gradients), with learned step sizes (LSQ) as an
// option. After training, `export_qdq` turns each FakeQuantize into a
// standard QuantizeLinear -> DequantizeLinear pair (INT8/INT4 weights, UINT8
// activations) that runs in Duet and ONNX Runtime.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "duet/ir/graph.h"
#include "duet/ops/registry.h"

namespace duet::train {

struct QatOptions {
  int weight_bits = 8;           // 8 or 4 (signed, symmetric: [-(2^(b-1)-1), 2^(b-1)-1])
  bool activations = true;       // also fake-quantize the matrix ops' float inputs (UINT8)
  bool per_channel = true;       // weight scales per output channel
  bool lsq = false;              // weight scales are trainable (learned step size)
  std::set<std::string> ops = ::duet::ops::matrix_op_types();  // Conv, ConvTranspose, Gemm, MatMul
};

// One fake-quantized tensor. Weight scales (without LSQ) and activation
// scales / zero points are graph inputs the trainer feeds every step:
// "qat_scale:<tensor>", "qat_zp:<tensor>"; activations report their batch
// range as graph outputs "qat_min:<tensor>", "qat_max:<tensor>". With LSQ the
// weight scale is an initializer "qat_scale:<tensor>" (trainable).
struct QatTensor {
  std::string tensor;
  bool weight = false;
  int64_t axis = -1;        // per-channel axis of a weight; -1 per tensor
  int64_t qmin = 0, qmax = 0;
};

constexpr const char* kQatScalePrefix = "qat_scale:";
constexpr const char* kQatZeroPointPrefix = "qat_zp:";
constexpr const char* kQatMinPrefix = "qat_min:";
constexpr const char* kQatMaxPrefix = "qat_max:";

// Inserts the FakeQuantize nodes (weights: the matrix ops' initializer inputs
// 1; activations: input 0). Returns the fake-quantized tensors.
std::vector<QatTensor> insert_fake_quant(ir::Model& model, const QatOptions& options);

// Per-channel (axis >= 0) or per-tensor symmetric scales max|w| / qmax.
Tensor weight_scales(const Tensor& w, const QatTensor& q);

// Replaces every FakeQuantize by QuantizeLinear -> DequantizeLinear with the
// given scales / zero points as initializers (raising the opset to 13, or 21
// for INT4). Throws naming a FakeQuantize whose scale is missing.
void export_qdq(ir::Model& model, const std::map<std::string, Tensor>& scales,
                const std::map<std::string, Tensor>& zero_points);

}  // namespace duet::train
