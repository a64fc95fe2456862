#include "duet/sim/cpu_model.h"

#include <algorithm>
#include <cmath>
#include <map>

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
    case CpuOpClass::Winograd: return "winograd";
    case CpuOpClass::Deconv: return "deconv";
    case CpuOpClass::MatMul: return "matmul";
    case CpuOpClass::Depthwise: return "depthwise";
    case CpuOpClass::Transcendental: return "exp";
    case CpuOpClass::View: return "view";
    case CpuOpClass::Other: return "other";
  }
  return "other";
}

namespace {

// The first level (nearest first) whose capacity holds `bytes`; the last (DRAM) otherwise.
size_t level_holding(const std::vector<CpuLevel>& levels, double bytes) {
  for (size_t i = 0; i < levels.size(); ++i)
    if (levels[i].capacity_bytes <= 0 || bytes <= levels[i].capacity_bytes) return i;
  return levels.size() - 1;
}

// A tiny primitive's fixed cost when one inference touches `footprint` bytes.
// Its state sits in the first level that holds the footprint, but that level
// is shared (the last level cache with other cores and tenants): taking the
// share left to this inference as uniform over the level's capacity, the
// state survives with the chance that the footprint fits it, so between the
// capacity of the level before (this level's measured cost) and this level's
// own capacity (the next level's cost) the cost moves linearly with the
// footprint. (Measured against one step at the capacity and a geometric
// blend: rec's per-node median error 39.5% and 29.6%, this 28.2%; det 24.9%,
// 25.1%, 23.8%.) 0: the levels carry no measured costs.
enum class CpuPrimitiveKind { Elementwise, Matrix, Copy };

// Seconds per byte streamed by a primitive whose working set is `bytes`. As
// with the fixed costs, a shared level holds the data surely at the level
// before's capacity (this level's bandwidth) and less surely as the working
// set fills it: the time per byte moves linearly to the next level's.
double seconds_per_byte(const std::vector<CpuLevel>& levels, double bytes) {
  const size_t i = level_holding(levels, bytes);
  const double here = 1 / levels[i].bytes_per_s;
  if (i == 0 || i + 1 >= levels.size()) return here;
  const double below = levels[i - 1].capacity_bytes, cap = levels[i].capacity_bytes;
  if (cap <= below) return here;
  const double t = std::clamp((bytes - below) / (cap - below), 0.0, 1.0);
  return (1 - t) * here + t / levels[i + 1].bytes_per_s;
}

double footprint_overhead(const std::vector<CpuLevel>& levels, double footprint, CpuPrimitiveKind kind) {
  auto cost = [&](size_t i) {
    const CpuLevel& l = levels[i];
    return kind == CpuPrimitiveKind::Matrix ? l.matrix_overhead_s
           : kind == CpuPrimitiveKind::Copy && l.copy_overhead_s > 0 ? l.copy_overhead_s
                                                                    : l.overhead_s;
  };
  if (levels.empty() || cost(0) <= 0) return 0;
  const size_t i = level_holding(levels, footprint);
  const double below = i > 0 ? levels[i - 1].capacity_bytes : 0, cap = levels[i].capacity_bytes;
  if (i + 1 >= levels.size() || cap <= 0 || below <= 0 || footprint <= below || cost(i + 1) <= 0 || cost(i) <= 0)
    return cost(i);
  const double t = (footprint - below) / (cap - below);
  return cost(i) + t * (cost(i + 1) - cost(i));
}

// A rate measured on a small and on a large problem, for `flops` between
// them: geometric in the FLOPs' logarithm; outside, the nearer one.
double size_rate(double small_flops, double small_rate, double large_flops, double large_rate, double flops) {
  if (small_rate <= 0 || small_flops <= 0 || large_flops <= small_flops) return large_rate;
  if (flops <= small_flops) return small_rate;
  if (flops >= large_flops) return large_rate;
  const double t = std::log(flops / small_flops) / std::log(large_flops / small_flops);
  return small_rate * std::pow(large_rate / small_rate, t);
}

double winograd_rate(const CpuKernelRates& r, int64_t input_channels) {
  if (r.winograd_narrow_flops <= 0) return r.winograd_flops;
  const double t = std::clamp(double(input_channels - kCpuWinogradNarrowInputs) / double(kCpuWinogradInputs - kCpuWinogradNarrowInputs),
                              0.0, 1.0);
  return r.winograd_narrow_flops + t * (r.winograd_flops - r.winograd_narrow_flops);
}

}  // namespace

double cpu_family_seconds(const std::pair<double, double>& measured, double elements) {
  const auto [small, large] = measured;
  if (elements <= kCpuFamilySmall) return small * elements / kCpuFamilySmall;
  return small + (elements - kCpuFamilySmall) * std::max(large - small, 0.0) / (kCpuFamilyLarge - kCpuFamilySmall);
}

std::string cpu_op_family(const WorkItem& item) {
  static const std::map<std::string, std::string> family = {
      {"Add", "binary"}, {"Sub", "binary"}, {"Mul", "binary"}, {"Div", "binary"}, {"Max", "binary"}, {"Min", "binary"},
      {"Relu", "eltwise"}, {"Clip", "eltwise"}, {"LeakyRelu", "eltwise"}, {"HardSigmoid", "eltwise"},
      {"HardSwish", "eltwise"}, {"Abs", "eltwise"}, {"Neg", "eltwise"}, {"Sqrt", "eltwise"}, {"Cast", "eltwise"},
      {"BatchNormalization", "eltwise"}, {"PRelu", "eltwise"},
      {"Transpose", "transpose"}, {"Concat", "copy"}, {"Slice", "copy"}, {"Split", "copy"}, {"Pad", "copy"},
      {"Reshape", "copy"}, {"Squeeze", "copy"}, {"Unsqueeze", "copy"}, {"Flatten", "copy"}, {"Identity", "copy"},
      {"Softmax", "softmax"}, {"LogSoftmax", "softmax"}, {"LayerNormalization", "layernorm"},
      {"GlobalAveragePool", "pool"}, {"GlobalMaxPool", "pool"}, {"AveragePool", "pool"}, {"MaxPool", "pool"},
      {"ReduceMean", "pool"}, {"ReduceSum", "pool"}, {"ReduceMax", "pool"}};
  auto it = family.find(item.op);
  return it == family.end() ? std::string() : it->second;
}

bool runs_winograd(const CpuWinogradRule& rule, const WorkItem& item) {
  if (!item.conv || item.conv_kernel != std::vector<int64_t>{3, 3} || item.conv_strides != std::vector<int64_t>{1, 1} ||
      item.conv_dilations != std::vector<int64_t>{1, 1} || item.conv_group != 1 || item.conv_output_spatial.size() != 2)
    return false;
  if (!(item.post_ops.empty() || (item.post_ops.size() == 1 && item.post_ops[0] == "Relu(0)"))) return false;
  const int64_t in = item.input_channels.empty() ? 0 : item.input_channels.front();
  const int64_t out = item.output_channels.empty() ? 0 : item.output_channels.front();
  return in % rule.channel_multiple == 0 && out % rule.channel_multiple == 0 && in >= rule.min_input_channels &&
         item.conv_output_spatial[0] >= rule.min_output_size && item.conv_output_spatial[1] >= rule.min_output_size;
}

CpuNodeCost cpu_node_cost(const CpuKernelModel& model, const WorkItem& item, double weight_bytes_per,
                          double activation_bytes_per, int threads, double footprint_bytes,
                          const std::vector<int>& input_blocks) {
  const CpuKernelRates& r = model.rates(threads);
  CpuNodeCost c;
  c.op_class = classify_cpu_op(item);
  if (c.op_class == CpuOpClass::Conv && model.winograd && r.winograd_flops > 0 && weight_bytes_per == 4 &&
      activation_bytes_per == 4 && runs_winograd(*model.winograd, item))
    c.op_class = CpuOpClass::Winograd;
  DUET_CHECK(!r.levels.empty(), "host CPU kernel model has no memory levels: run `duet calibrate-host`");
  const bool convolution = c.op_class == CpuOpClass::Conv || c.op_class == CpuOpClass::Depthwise ||
                           c.op_class == CpuOpClass::Winograd || c.op_class == CpuOpClass::Deconv;
  const bool matrix = convolution || c.op_class == CpuOpClass::MatMul;
  const std::string family = cpu_op_family(item);
  const CpuPrimitiveKind kind = matrix ? CpuPrimitiveKind::Matrix
                                : family == "copy" || family == "transpose" || c.op_class == CpuOpClass::View
                                    ? CpuPrimitiveKind::Copy
                                    : CpuPrimitiveKind::Elementwise;
  const double level_overhead = footprint_overhead(r.levels, footprint_bytes, kind);
  c.overhead_s = level_overhead > 0 ? level_overhead : r.overhead_s;
  c.overlap = c.op_class == CpuOpClass::Depthwise ? r.depthwise_overlap : r.overlap;

  // 4-d activations are held channel-blocked (nChw8c: oneDNN on AVX2, the
  // Winograd kernels) or channels-last (block 1: brgemm convolutions on
  // AVX-512); channels are padded to the block, in memory and in a
  // convolution's work. A convolution reorders an input held in another
  // layout into its own first (the backend's as_layout); elementwise work
  // keeps its input's layout; the rest writes plain tensors.
  auto padded = [](double elements, int64_t ch, int block) {
    return block > 1 && ch > 0 ? elements * std::ceil(double(ch) / block) * block / double(ch) : elements;
  };
  auto input_block = [&](size_t i) { return i < input_blocks.size() && input_blocks[i] != 0 ? input_blocks[i] : model.block(); };
  int own = kCpuPlainLayout;  // the layout this node writes
  if (c.op_class == CpuOpClass::Winograd) own = int(model.winograd->channel_multiple);
  else if (c.op_class == CpuOpClass::Deconv) own = model.deconv_channel_block > 0 ? model.deconv_channel_block : model.block();
  else if (convolution) own = model.block();
  else if (c.op_class != CpuOpClass::MatMul && c.op_class != CpuOpClass::View && item.op != "Transpose" && item.op != "Shape")
    own = item.input_channels.empty() || item.input_channels.front() <= 0 ? kCpuPlainLayout : input_block(0);
  // A unary elementwise primitive on a blocked tensor with fewer channels
  // than the block (det's 1-channel head in nChw16c) gets oneDNN's reference
  // code; the backend runs it on a plain copy instead.
  const bool unary = (family == "eltwise" || c.op_class == CpuOpClass::Transcendental) && item.producer_elements.size() == 1;
  const int64_t ch0 = item.input_channels.empty() ? 0 : item.input_channels.front();
  const bool to_plain = unary && ch0 > 0 && own > 1 && ch0 < own;
  if (to_plain) own = kCpuPlainLayout;
  c.output_block = own;
  c.flops = item.flops;
  double rate = r.fma_flops;
  if (c.op_class == CpuOpClass::Conv || c.op_class == CpuOpClass::Deconv || c.op_class == CpuOpClass::Winograd) {
    const int64_t oc = item.output_channels.empty() ? 0 : item.output_channels.front();
    c.flops = padded(item.flops, oc, c.op_class == CpuOpClass::Winograd ? int(model.winograd->panel_channels) : own);
    rate = c.op_class == CpuOpClass::Deconv && r.deconv_flops > 0 ? r.deconv_flops
           : c.op_class == CpuOpClass::Winograd                    ? winograd_rate(r, ch0)
                                                                   : size_rate(kCpuSmallConvFlops, r.conv_small_flops,
                                                                               kCpuConvFlops, r.conv_flops, c.flops);
  } else if (c.op_class == CpuOpClass::MatMul) {
    rate = size_rate(kCpuSmallMatMulFlops, r.matmul_small_flops, kCpuMatMulFlops, r.matmul_flops, c.flops);
  } else if (c.op_class == CpuOpClass::Depthwise) {
    rate = r.depthwise_flops;
  }
  c.compute_s = rate > 0 ? c.flops / rate : 0;
  if (c.op_class == CpuOpClass::Depthwise) {
    // Besides its taps (the rate above), a depthwise kernel pays per output
    // (store, bias, loop) and per fused post-op, on vectors of simd_floats
    // channels. GEMM-shaped convolutions get no post-op cost: it hides under
    // the memory time the model adds to them in full (with it, rec's and
    // det's 1x1 convolutions came out 6-23% above their measured times).
    double per_output = r.depthwise_output_s;
    for (const std::string& op : item.post_ops)
      if (auto p = r.post_op_s.find(op.substr(0, op.find('('))); p != r.post_op_s.end()) per_output += p->second;
    c.compute_s += padded(item.output_elements, item.output_channels.empty() ? 0 : item.output_channels.front(), model.simd_floats) *
                   per_output;
  }
  double out_elements = item.output_parts.empty() ? item.output_elements : 0;
  for (size_t i = 0; i < item.output_parts.size(); ++i)
    out_elements += padded(item.output_parts[i], i < item.output_channels.size() ? item.output_channels[i] : 0, own);
  if (c.op_class == CpuOpClass::Transcendental && r.transcendental_per_s > 0)
    c.compute_s = std::max(c.compute_s, out_elements / r.transcendental_per_s);
  // Elementwise and data-movement primitives: their family's measured
  // primitive (pooling and reductions count what they read).
  if (auto f = r.element_s.find(family); f != r.element_s.end() && !convolution) {
    double in_elements = 0;
    for (size_t i = 0; i < item.producer_elements.size(); ++i)
      in_elements += padded(item.producer_elements[i], i < item.input_channels.size() ? item.input_channels[i] : 0, input_block(i));
    c.compute_s = std::max(c.compute_s, cpu_family_seconds(f->second, family == "pool" ? in_elements : out_elements));
    c.overlap = 1;  // the primitive streams as it computes: memory farther than L2 shows as the longer of the two
  }

  double activations = out_elements;
  for (size_t i = 0; i < item.producer_elements.size(); ++i) {
    const int64_t ch = i < item.input_channels.size() ? item.input_channels[i] : 0;
    const int held = input_block(i);
    activations += padded(item.producer_elements[i], ch, held);
    // Reordered first: read as held (counted above), written and read again
    // as wanted. A convolution wants its own layout; a view (a copy, in this
    // backend) and a unary op moved to plain, the plain one.
    // A binary op takes its second operand in the first's layout.
    const int wanted = convolution ? own : i == 1 && family == "binary" ? input_block(0) : kCpuPlainLayout;
    const bool reordered = (convolution || c.op_class == CpuOpClass::View || to_plain) && i == 0;
    const bool matched = i == 1 && family == "binary" && item.producer_elements.size() == 2 &&
                         item.producer_elements[1] == item.producer_elements[0];
    if ((reordered || matched) && ch > 0 && held != wanted) activations += 2 * padded(item.producer_elements[i], ch, wanted);
  }
  const double weight_bytes = item.weight_elements * weight_bytes_per;
  c.bytes = weight_bytes + activations * activation_bytes_per;
  const size_t at = level_holding(r.levels, c.bytes);
  const CpuLevel* level = &r.levels[at];
  // Weights stream from the farther of the node's level and the footprint's.
  const CpuLevel* weights_from = &r.levels[std::max(at, level_holding(r.levels, footprint_bytes))];
  c.level = (weights_from != level && weight_bytes > c.bytes - weight_bytes ? weights_from : level)->name;
  c.memory_s = (c.bytes - weight_bytes) * seconds_per_byte(r.levels, c.bytes) +
               weight_bytes * seconds_per_byte(r.levels, std::max(c.bytes, footprint_bytes));
  return c;
}

double cpu_footprint_bytes(const Workload& w, double weight_bytes_per, double activation_bytes_per) {
  // Each item's output lives from the item to its last reader.
  std::vector<size_t> last(w.items.size());
  for (size_t i = 0; i < w.items.size(); ++i) last[i] = i;
  double weights = 0;
  for (size_t i = 0; i < w.items.size(); ++i) {
    weights += w.items[i].weight_elements;
    for (int p : w.items[i].producers)
      if (p >= 0 && size_t(p) < w.items.size()) last[size_t(p)] = std::max(last[size_t(p)], i);
  }
  std::vector<double> delta(w.items.size() + 1, 0);
  for (size_t i = 0; i < w.items.size(); ++i) {
    delta[i] += w.items[i].output_elements;
    delta[last[i] + 1] -= w.items[i].output_elements;
  }
  double live = 0, peak = 0;
  for (size_t i = 0; i < w.items.size(); ++i) peak = std::max(peak, live += delta[i]);
  return weights * weight_bytes_per + peak * activation_bytes_per;
}

}  // namespace duet::sim
