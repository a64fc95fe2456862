// Host-CPU kernel model: what a node of the optimized graph costs on this CPU
// when the oneDNN cpu backend runs it. A roofline whose ceilings are the rates
// oneDNN's own kernels reach here, each measured by `duet calibrate-host`
// (measure/host_calibration.h) at a given thread count and written to devices/host.toml
// ([cpu_kernels]); nothing in it is typed in or fitted to a model.
//
//   time = primitive overhead + max(compute, memory)
//   compute: GEMM-shaped Conv/ConvTranspose at the measured oneDNN conv rate,
//            MatMul/Gemm at the measured oneDNN matmul rate, output channels
//            padded to the SIMD width (oneDNN's blocked layouts); depthwise /
//            grouped convs at the measured depthwise rate; everything else at
//            the measured FMA peak (its FLOPs are few: memory decides)
//   memory:  bytes read and written over the streaming bandwidth of the
//            smallest cache level (L2 per thread, L3, DRAM) that holds the
//            node's working set, measured with a chain of oneDNN eltwise
//            primitives over a ring of tensors spanning that level
//   view ops (Reshape, Squeeze, Unsqueeze, Flatten, Identity) move no bytes.
#pragma once
#include <string>
#include <vector>

#include "duet/sim/workload.h"

namespace duet::sim {

// One memory level as the CPU's kernels see it: bytes per second streamed by a
// oneDNN eltwise primitive whose working set fits in `capacity_bytes`.
struct CpuLevel {
  std::string name;
  double capacity_bytes = 0;  // 0: unbounded (DRAM)
  double bytes_per_s = 0;
};

// Rates measured at one thread count.
struct CpuKernelRates {
  int threads = 1;
  double fma_flops = 0;        // FP32 FMA loop (runtime/peaks.h)
  double conv_flops = 0;       // oneDNN 3x3 convolution, 64 -> 64 channels, 56x56
  double matmul_flops = 0;     // oneDNN matmul 512 x 512 x 512
  double depthwise_flops = 0;  // oneDNN 3x3 depthwise convolution, 64 channels, 56x56
  double deconv_flops = 0;     // oneDNN 2x2 stride-2 deconvolution, 24 -> 24 channels, 160x160 (0: use conv_flops)
  double transcendental_per_s = 0;  // elements/s of a oneDNN logistic (exp-based) eltwise, L1-resident
  double overhead_s = 0;       // oneDNN eltwise on 64 floats: execute + wait
  std::vector<CpuLevel> levels;  // nearest first; the last is DRAM
};

struct CpuKernelModel {
  int simd_floats = 8;  // FP32 lanes of the vector unit oneDNN uses (8: AVX2, 16: AVX-512)
  std::vector<CpuKernelRates> by_threads;  // ascending thread counts
  std::string source;
  // Rates measured at the largest thread count <= threads (the smallest when none is).
  const CpuKernelRates& rates(int threads) const;
};

// Which ceiling a node meets.
enum class CpuOpClass { Conv, Deconv, MatMul, Depthwise, Transcendental, View, Other };
CpuOpClass classify_cpu_op(const WorkItem& item);
const char* cpu_op_class_name(CpuOpClass c);

struct CpuNodeCost {
  CpuOpClass op_class = CpuOpClass::Other;
  double flops = 0;        // with output channels padded to the SIMD width
  double bytes = 0;        // read + written (weights, activations)
  std::string level;       // memory level holding the working set
  double compute_s = 0, memory_s = 0, overhead_s = 0;
  double time_s() const { return overhead_s + (compute_s > memory_s ? compute_s : memory_s); }
};

// Storage size of one weight element and of one activation element (4 for FP32).
CpuNodeCost cpu_node_cost(const CpuKernelModel& model, const WorkItem& item, double weight_bytes_per,
                          double activation_bytes_per, int threads);

}  // namespace duet::sim
