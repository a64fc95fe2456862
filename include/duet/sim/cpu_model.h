// Host-CPU kernel model: what a node of the optimized graph costs on this CPU
// when the oneDNN cpu backend runs it. A roofline whose ceilings are the rates
// oneDNN's own kernels reach here, each measured by `duet calibrate-host`
// (measure/host_calibration.h) at a given thread count and written to devices/host.toml
// ([cpu_kernels]); nothing in it is typed in or fitted to a model.
//
//   time = primitive overhead + max(compute, memory)
//   overhead: a primitive's fixed cost where its code and data were last:
//            in a network, between two runs of a node the whole inference
//            runs, so they sit in the smallest level holding the inference's
//            footprint (weights + peak live activations), surely at the level
//            before's capacity, less surely as the footprint fills the
//            (shared) level; measured per level for a tiny elementwise, matrix
//            and copy primitive after streaming a buffer that pushes them out
//            to that level (on Zen 4: a 1x1 conv 0.5 us hot, 5-9 us after
//            64 MiB streamed)
//   compute: GEMM-shaped Conv/ConvTranspose at the measured oneDNN conv rate
//            (3x3 convolutions the backend's Winograd kernels take: at their
//            measured rate, in direct-convolution FLOPs),
//            MatMul/Gemm at the measured oneDNN matmul rate, output channels
//            padded to the SIMD width (oneDNN's blocked layouts); depthwise /
//            grouped convs: their taps at the measured depthwise tap rate,
//            plus a measured cost per output and per fused post-op kind on
//            vectors of simd_floats channels, with their own measured
//            compute/memory overlap; everything else at
//            the measured FMA peak (its FLOPs are few: memory decides), and
//            as its family's measured primitive (binary, eltwise, copy,
//            transpose, softmax, layernorm, pool) at two sizes, which already
//            streams its data: no overlap to add when memory is farther
//   memory:  bytes read and written over the streaming bandwidth of the
//            smallest cache level (L2 per thread, L3, DRAM) that holds the
//            node's working set, measured with a chain of oneDNN eltwise
//            primitives over a ring of tensors spanning that level; as with
//            the fixed costs, a shared level holds the data less surely as
//            the working set fills it, so the time per byte moves linearly
//            from the level's to the next level's between the capacity of
//            the level before and its own; weights were last read one
//            inference ago, so they stream as from a working set no smaller
//            than the inference's footprint
//   view ops (Reshape, Squeeze, Unsqueeze, Flatten, Identity): a copy into a
//            plain tensor, as the cpu backend runs them (a 4-d input held
//            blocked or channels-last is reordered to plain first).
#pragma once
#include <map>
#include <optional>
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
  // Fixed cost of a tiny primitive whose code and data were last in this
  // level (0: not measured, the rates' hot overhead_s applies): elementwise
  // (a binary Mul on 64 floats), matrix (a 1x1 conv, 64 -> 64, on 1x1) and
  // copy (a reorder of 64 floats: views, slices, transposes).
  double overhead_s = 0, matrix_overhead_s = 0, copy_overhead_s = 0;
};

// Rates measured at one thread count.
struct CpuKernelRates {
  int threads = 1;
  double fma_flops = 0;        // FP32 FMA loop (runtime/peaks.h)
  double conv_flops = 0;       // oneDNN 3x3 convolution, 64 -> 64 channels, 56x56
  double matmul_flops = 0;     // oneDNN matmul 512 x 512 x 512
  // The same primitives on small problems (0: not measured): a 3x3 conv 32 ->
  // 32 at 16x16 and a matmul 40x120 by 120x360 (a small transformer's). Rates
  // between the two sizes follow the FLOPs geometrically.
  double conv_small_flops = 0, matmul_small_flops = 0;
  // Depthwise convolutions (oneDNN, 64 channels, 28x28, L2-resident): seconds
  // per output element beyond its kernel taps, and the rate of the taps (two
  // FLOPs each), from a 3x3 and a 5x5 timed alike. Older calibrations: no
  // per-output part, and the rate of a 3x3 on 56x56 as a whole.
  double depthwise_flops = 0;
  double depthwise_output_s = 0;
  double deconv_flops = 0;     // oneDNN 2x2 stride-2 deconvolution, 24 -> 24 channels, 160x160 (0: use conv_flops)
  double winograd_flops = 0;   // the backend's Winograd 3x3 on the conv shape, direct-convolution FLOPs (0: none)
  // The same with 16 input channels (kCpuWinogradNarrowInputs, the fewest it
  // takes; 0: not measured): a short reduction per transformed tile. Linear
  // in the input channels between 16 and 64.
  double winograd_narrow_flops = 0;
  double transcendental_per_s = 0;  // elements/s of a oneDNN logistic (exp-based) eltwise, L1-resident
  // Part of the shorter of compute and memory time hidden under the longer: a
  // 1x1 convolution streaming from L3 timed against its compute (conv rate)
  // and its memory (L3 bandwidth) time; 1 where not measured (roofline).
  double overlap = 1;
  // The same for a depthwise convolution (a 3x3 on 64 channels; 1 where not measured).
  double depthwise_overlap = 1;
  double overhead_s = 0;       // oneDNN eltwise on 64 floats: execute + wait
  // Seconds of oneDNN's primitive of each family (cpu_op_family: eltwise,
  // binary, copy, transpose, softmax, layernorm, pool) on L2-resident tensors
  // of kCpuFamilySmall and kCpuFamilyLarge elements, net of overhead_s
  // (cpu_family_seconds reads between them). Missing: bandwidth only.
  std::map<std::string, std::pair<double, double>> element_s;
  // Seconds per output element that each post-op kind (ops::post_op_name)
  // adds to the primitive it is fused into: a depthwise convolution timed with
  // and without it (missing: free).
  std::map<std::string, double> post_op_s;
  std::vector<CpuLevel> levels;  // nearest first; the last is DRAM
};

// Which convolutions the cpu backend runs with its Winograd F(2x2, 3x3)
// kernels (backends/cpu/winograd.h, written by calibrate-host): 3x3, stride
// 1, no dilation or groups, FP32, no post-op but ReLU, and these shapes.
struct CpuWinogradRule {
  int64_t channel_multiple = 8, min_input_channels = 16, min_output_size = 12;
  int64_t panel_channels = 16;  // output channels computed in panels this wide (work padded to it)
};

struct CpuKernelModel {
  int simd_floats = 8;  // FP32 lanes of the vector unit oneDNN uses (8: AVX2, 16: AVX-512)
  // Channels of the blocked layout oneDNN's convolutions choose here, to which
  // 4-d activations are padded (8: nChw8c on AVX2; 1: channels-last, which
  // its brgemm convolutions pick on AVX-512). 0: not measured, simd_floats.
  int channel_block = 0;
  int block() const { return channel_block > 0 ? channel_block : simd_floats; }
  int deconv_channel_block = 0;  // the same for oneDNN's deconvolution (0: block())
  std::optional<CpuWinogradRule> winograd;  // absent: the backend has no Winograd kernels here
  std::vector<CpuKernelRates> by_threads;  // ascending thread counts
  std::string source;
  // Rates measured at the largest thread count <= threads (the smallest when none is).
  const CpuKernelRates& rates(int threads) const;
};

// Elements of the two problems each element family is timed on.
constexpr double kCpuFamilySmall = 4800, kCpuFamilyLarge = 76800;
// A family's seconds on `elements`: piecewise linear through zero and its two
// measured points, the last slope beyond (never falling).
double cpu_family_seconds(const std::pair<double, double>& measured, double elements);

// FLOPs of the problems the conv and matmul rates are measured on.
constexpr double kCpuConvFlops = 2.0 * 64 * 64 * 9 * 56 * 56, kCpuSmallConvFlops = 2.0 * 32 * 32 * 9 * 16 * 16;
constexpr double kCpuMatMulFlops = 2.0 * 512 * 512 * 512, kCpuSmallMatMulFlops = 2.0 * 40 * 120 * 360;
// Input channels of the two Winograd problems (3x3, 64 outputs, 56x56), and their FLOPs.
constexpr int64_t kCpuWinogradInputs = 64, kCpuWinogradNarrowInputs = 16;
constexpr double winograd_calibration_flops(int64_t inputs) { return 2.0 * double(inputs) * 64 * 9 * 56 * 56; }

// A tensor in the plain (row-major) layout, as CpuNodeCost::output_block.
constexpr int kCpuPlainLayout = -1;

// Which ceiling a node meets.
enum class CpuOpClass { Conv, Winograd, Deconv, MatMul, Depthwise, Transcendental, View, Other };
CpuOpClass classify_cpu_op(const WorkItem& item);
// True where the backend runs `item` (FP32) with its Winograd kernels.
bool runs_winograd(const CpuWinogradRule& rule, const WorkItem& item);
const char* cpu_op_class_name(CpuOpClass c);
// The family of elementwise and data-movement work whose measured primitive
// applies to `item` (CpuKernelRates::element_s), or "" for none.
std::string cpu_op_family(const WorkItem& item);

struct CpuNodeCost {
  CpuOpClass op_class = CpuOpClass::Other;
  double flops = 0;        // with output channels padded to the SIMD width
  double bytes = 0;        // read + written (weights, activations)
  std::string level;       // memory level holding the working set
  double compute_s = 0, memory_s = 0, overhead_s = 0;
  // The part of the shorter of compute and memory that the longer hides
  // (CpuKernelRates::overlap; 1: the plain roofline).
  double overlap = 1;
  int output_block = -1;   // the layout the node writes: a channel block, 1 channels-last, kCpuPlainLayout
  double time_s() const {
    const double longer = compute_s > memory_s ? compute_s : memory_s, shorter = compute_s > memory_s ? memory_s : compute_s;
    return overhead_s + longer + (1 - overlap) * shorter;
  }
};

// Storage size of one weight element and of one activation element (4 for FP32).
// `footprint_bytes`: what one inference touches (cpu_footprint_bytes), which
// decides the level a primitive's fixed cost is paid from. `input_blocks`:
// the output_block of each activation input's producer (as item.producers;
// kCpuPlainLayout for model inputs; missing or 0: the convolution layout).
CpuNodeCost cpu_node_cost(const CpuKernelModel& model, const WorkItem& item, double weight_bytes_per,
                          double activation_bytes_per, int threads, double footprint_bytes = 0,
                          const std::vector<int>& input_blocks = {});

// Bytes one inference of `w` touches: all weights and the largest sum of
// activations live at once (the backend's arena reuses the rest).
double cpu_footprint_bytes(const Workload& w, double weight_bytes_per, double activation_bytes_per);

}  // namespace duet::sim
