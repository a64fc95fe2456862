#include "duet/sim/cpu_model.h"

#include <algorithm>
#include <cmath>

#include "duet/core/error.h"

namespace duet::sim {

const CpuKernelRates& CpuKernelModel::rates(int threads) const {
  DUET_CHECK(!by_threads.empty(), "host CPU kernel model has no measured rates: run `duet calibrate-host`");
  const CpuKernelRates* best = &by_threads.front();
  for (auto& r : by_threads)
    if (r.threads <= threads) best = &r;
  return *best;
}

CpuOpClass classify_cpu_op(const WorkItem& item) {
  const std::string& op = item.op;
  if (op == "Reshape" || op == "Squeeze" || op == "Unsqueeze" || op == "Flatten" || op == "Identity")
    return CpuOpClass::View;
  static const char* transcendental[] = {"Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Exp", "Log", "Erf", "Gelu",
                                         "Softplus", "Elu", "Selu", "Mish", "Swish", "Pow"};
  for (const char* t : transcendental)
    if (op == t) return CpuOpClass::Transcendental;
  if (item.matrix && item.conv && item.gemm.repeats > 1) return CpuOpClass::Depthwise;  // grouped, incl. ConvTranspose
  if (item.matrix && item.conv) return op == "ConvTranspose" ? CpuOpClass::Deconv : CpuOpClass::Conv;
  if (item.matrix) return CpuOpClass::MatMul;
  return CpuOpClass::Other;
}

const char* cpu_op_class_name(CpuOpClass c) {
  switch (c) {
    case CpuOpClass::Conv: return "conv";
    case CpuOpClass::Deconv: return "deconv";
    case CpuOpClass::MatMul: return "matmul";
    case CpuOpClass::Depthwise: return "depthwise";
    case CpuOpClass::Transcendental: return "exp";
    case CpuOpClass::View: return "view";
    case CpuOpClass::Other: return "other";
  }
  return "other";
}

CpuNodeCost cpu_node_cost(const CpuKernelModel& model, const WorkItem& item, double weight_bytes_per,
                          double activation_bytes_per, int threads) {
  const CpuKernelRates& r = model.rates(threads);
  CpuNodeCost c;
  c.op_class = classify_cpu_op(item);
  c.overhead_s = r.overhead_s;
  if (c.op_class == CpuOpClass::View) return c;  // metadata only

  // oneDNN keeps 4-d activations channel-blocked (nChw8c on AVX2): channels
  // are padded to the SIMD width, in memory and in a convolution's work.
  const double simd = std::max(1, model.simd_floats);
  const bool blocked = c.op_class != CpuOpClass::Other || (item.op != "Transpose" && item.op != "Shape");
  auto padded = [&](double elements, int64_t ch) {
    return blocked && ch > 0 ? elements * std::ceil(double(ch) / simd) * simd / double(ch) : elements;
  };
  c.flops = item.flops;
  double rate = r.fma_flops;
  if (c.op_class == CpuOpClass::Conv || c.op_class == CpuOpClass::Deconv) {
    const int64_t oc = item.output_channels.empty() ? 0 : item.output_channels.front();
    c.flops = padded(item.flops, oc);
    rate = c.op_class == CpuOpClass::Deconv && r.deconv_flops > 0 ? r.deconv_flops : r.conv_flops;
  } else if (c.op_class == CpuOpClass::MatMul) {
    rate = r.matmul_flops;
  } else if (c.op_class == CpuOpClass::Depthwise) {
    rate = r.depthwise_flops;
  }
  c.compute_s = rate > 0 ? c.flops / rate : 0;
  double out_elements = item.output_parts.empty() ? item.output_elements : 0;
  for (size_t i = 0; i < item.output_parts.size(); ++i)
    out_elements += padded(item.output_parts[i], i < item.output_channels.size() ? item.output_channels[i] : 0);
  if (c.op_class == CpuOpClass::Transcendental && r.transcendental_per_s > 0)
    c.compute_s = std::max(c.compute_s, out_elements / r.transcendental_per_s);

  double activations = out_elements;
  for (size_t i = 0; i < item.producer_elements.size(); ++i)
    activations += padded(item.producer_elements[i], i < item.input_channels.size() ? item.input_channels[i] : 0);
  c.bytes = item.weight_elements * weight_bytes_per + activations * activation_bytes_per;
  DUET_CHECK(!r.levels.empty(), "host CPU kernel model has no memory levels: run `duet calibrate-host`");
  const CpuLevel* level = &r.levels.back();
  for (auto& l : r.levels)
    if (l.capacity_bytes <= 0 || c.bytes <= l.capacity_bytes) { level = &l; break; }
  c.level = level->name;
  c.memory_s = level->bytes_per_s > 0 ? c.bytes / level->bytes_per_s : 0;
  return c;
}

}  // namespace duet::sim
